//! Keyset pages on the domain side: a list query fetches one row more than the page holds, and
//! [`Page::from_rows`] turns that into the page and whether more follow. The HTTP layer owns the
//! limit rule, the cursor codec and the `next` link (`tenantry_http::pagination`).

/// One page of a list, in the list's order, and whether more rows follow it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    /// How many rows to ask the database for, for a page of `limit`: one more, to learn whether
    /// another page follows without counting.
    pub fn fetch_limit(limit: i64) -> i64 {
        limit.saturating_add(1)
    }

    /// The page of at most `limit` items from rows fetched with [`Page::fetch_limit`], each
    /// converted with `convert`.
    pub fn from_rows<R, E>(
        rows: &[R],
        limit: i64,
        mut convert: impl FnMut(&R) -> Result<T, E>,
    ) -> Result<Self, E> {
        let limit = usize::try_from(limit).unwrap_or(0);
        // Sized once: the profile of the list load showed the growth of this vector.
        let mut items = Vec::with_capacity(rows.len().min(limit));
        for row in rows.iter().take(limit) {
            items.push(convert(row)?);
        }
        Ok(Self {
            items,
            has_more: rows.len() > limit,
        })
    }

    /// The last item: where the next page starts.
    pub fn last(&self) -> Option<&T> {
        self.items.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_extra_row_means_more_follow() {
        let rows = [1, 2, 3];
        let page = Page::from_rows(&rows, 2, |r| Ok::<_, ()>(*r * 10)).unwrap_or(Page {
            items: vec![],
            has_more: false,
        });
        assert_eq!(page.items, [10, 20]);
        assert!(page.has_more);
        let page = Page::from_rows(&rows, 3, |r| Ok::<_, ()>(*r)).ok();
        assert_eq!(page.map(|p| p.has_more), Some(false));
        assert_eq!(Page::<i32>::fetch_limit(20), 21);
    }
}
