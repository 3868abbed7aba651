//! Domains: the hosts that route to a company (`public.domains`).
use crate::db::DbError;
use crate::ids::CompanyId;
use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub domain: String,
    pub is_primary: bool,
    pub created_at: DateTime<Utc>,
}
/// A company's domains, the primary first, then by name.
pub async fn of_company(
    db: &impl GenericClient,
    company: CompanyId,
) -> Result<Vec<Domain>, DbError> {
    let rows = db
        .query(
            "select domain, is_primary, created_at from public.domains \
              where company_id = $1 order by is_primary desc, domain",
            &[&company],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Domain {
                domain: r.try_get(0)?,
                is_primary: r.try_get(1)?,
                created_at: r.try_get(2)?,
            })
        })
        .collect()
}
