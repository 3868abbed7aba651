//! The statements every tenant resource shares, written once: one keyset page of a list, lock a
//! row for a change, delete a row with its audit entry. A resource declares its table, columns,
//! id and errors once ([`table!`]); table and columns are constants of the code, never request
//! text.

use tenantry_public::db::DbError;
use tenantry_public::Page;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::audit::{Acting, Action, Audited, Entry};
use crate::binding::{SchemaSql, TenantConn, TenantDb};
use crate::ordering::{Order, SortColumn, Window};
use deadpool_postgres::GenericClient;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tenantry_public::db::Db;
use tenantry_public::SchemaName;

/// A tenant table whose rows are one domain type (declared with [`table!`]).
pub trait Table: Audited + for<'r> TryFrom<&'r Row, Error = DbError> {
    /// The table, unqualified (the connection's `search_path` is the tenant's schema alone).
    const TABLE: &'static str;
    /// The columns the type is read from.
    const COLUMNS: &'static str;
    const COLUMN_COUNT: usize;
    /// What deleting a row is audited as.
    const DELETED: Action;
    /// The row's typed id.
    type Id: ToSql + Sync + Send;
    /// The resource's error, which says "no such row in this organization" with
    /// [`Table::not_found`].
    type Failure: From<DbError>;
    fn not_found() -> Self::Failure;
}

/// Declares a row type's [`Table`]: its table, id, delete action and not-found error, and its
/// columns, once: they make the module's `COLUMNS` (the select list every query of the table
/// uses) and the row's `TryFrom<&Row>`, which reads each field from its column's position.
macro_rules! table {
    ($row:ty, $table:literal, id: $id:ty, deleted: $deleted:ident,
     not_found: $error:ident :: $variant:ident,
     $vis:vis columns: [$first:ident $(, $col:ident)* $(,)?]) => {
        /// The columns every query of the table returns, in the order its rows are read.
        $vis const COLUMNS: &str = concat!(stringify!($first) $(, ", ", stringify!($col))*);
        /// How many columns [`COLUMNS`] names.
        #[allow(dead_code)]
        $vis const COLUMN_COUNT: usize = [stringify!($first) $(, stringify!($col))*].len();

        impl $crate::rows::Table for $row {
            const TABLE: &'static str = $table;
            const COLUMNS: &'static str = COLUMNS;
            const COLUMN_COUNT: usize = COLUMN_COUNT;
            const DELETED: $crate::audit::Action = $crate::audit::Action::$deleted;
            type Id = $id;
            type Failure = $error;
            fn not_found() -> $error {
                $error::$variant
            }
        }

        impl TryFrom<&tokio_postgres::Row> for $row {
            type Error = tenantry_public::db::DbError;

            fn try_from(row: &tokio_postgres::Row) -> Result<Self, Self::Error> {
                // Fields are evaluated in the order written, which is the columns' order.
                let mut column = 0_usize;
                let mut next = || {
                    column += 1;
                    column - 1
                };
                Ok(Self {
                    $first: row.try_get(next())?,
                    $($col: row.try_get(next())?,)*
                })
            }
        }
    };
}
pub(crate) use table;

/// The parameters of a statement, owned (so a list's filters can be computed from its filter
/// value and outlive it).
pub type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// A table that lists with filters and keyset pages ([`page`]).
pub trait Listed: Table {
    /// What a list may be filtered by.
    type Filter;
    /// The columns it may be ordered by.
    type Sort: SortColumn;
    /// The filters as SQL on parameters `$1` to `$n`, [`Listed::params`] in that order.
    const FILTERS: &'static str;
    fn params(filter: &Self::Filter) -> Params;
}

/// A listed table whose rows are also exported whole ([`export`]).
pub trait Exported: Listed {
    /// What an export is audited as.
    const EXPORTED: Action;
    /// The column naming the user whose email each exported row carries.
    const USER_COLUMN: &'static str;
}

fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

/// One page of the rows `filter` selects, in `window`: the keyset and the limit take the
/// parameters after the filters'.
pub async fn page<T: Listed>(
    db: &impl TenantDb,
    filter: &T::Filter,
    window: &Window<T::Sort, T::Id>,
) -> Result<Page<T>, DbError> {
    let params = T::params(filter);
    let n = params.len();
    let (keyset, order_by) = window.order.keyset_sql(n + 1, n + 2);
    let sql = format!(
        "select {} from {} where {} and {keyset} order by {order_by} limit ${}",
        T::COLUMNS,
        T::TABLE,
        T::FILTERS,
        n + 3
    );
    let keyset = window.order.keyset_params(window.after.as_ref())?;
    let fetch = Page::<T>::fetch_limit(window.limit);
    let mut all = refs(&params);
    all.extend([keyset.value(), keyset.id(), &fetch]);
    let client = db.client();
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &all).await?;
    Page::from_rows(&rows, window.limit, |r| T::try_from(r))
}

/// One page as [`page`] reads it, as the first query of a new bound connection
/// ([`TenantConn::acquire_read`]: binding and query in one round trip, the statement named after
/// `schema` and kept per connection, so its plan survives tenant rotation). The connection comes
/// back for whatever the caller reads next.
pub async fn first_page<T: Listed>(
    db: &Db,
    schema: &SchemaName,
    filter: &T::Filter,
    window: &Window<T::Sort, T::Id>,
) -> Result<(TenantConn, Page<T>), DbError> {
    let params = T::params(filter);
    let n = params.len();
    let (keyset, order_by) = window.order.keyset_sql(n + 1, n + 2);
    let template = format!(
        "select {} from {{schema}}.{} where {} and {keyset} order by {order_by} limit ${}",
        T::COLUMNS,
        T::TABLE,
        T::FILTERS,
        n + 3
    );
    let sql = SchemaSql::new(&template, schema)?;
    let keyset = window.order.keyset_params(window.after.as_ref())?;
    let fetch = Page::<T>::fetch_limit(window.limit);
    let mut all = refs(&params);
    all.extend([keyset.value(), keyset.id(), &fetch]);
    let (conn, rows) = TenantConn::acquire_read(db, &sql, &all).await?;
    let page = Page::from_rows(&rows, window.limit, |r| T::try_from(r))?;
    Ok((conn, page))
}

/// One row by its id, as the first query of a new bound connection, like [`first_page`]: the
/// binding and the read in one round trip. `None` when this tenant has no such row. The
/// connection comes back for whatever the caller reads next.
pub async fn first_by_id<T: Table>(
    db: &Db,
    schema: &SchemaName,
    id: &T::Id,
) -> Result<(TenantConn, Option<T>), DbError> {
    let template = format!(
        "select {} from {{schema}}.{} where id = $1",
        T::COLUMNS,
        T::TABLE
    );
    let sql = SchemaSql::new(&template, schema)?;
    let (conn, rows) = TenantConn::acquire_read(db, &sql, &[id]).await?;
    let row = match rows.as_slice() {
        [] => None,
        [row] => Some(T::try_from(row)?),
        more => {
            return Err(DbError::Corrupt(format!(
                "{} rows of {} have one id",
                more.len(),
                T::TABLE
            )))
        }
    };
    Ok((conn, row))
}

/// An exported row: the row and the email of the user its [`Exported::USER_COLUMN`] names.
pub type ExportRow<T> = (T, Option<String>);

/// Every row `filter` selects, in `order`, with its user's email, as a stream that holds `conn`
/// until it ends, so the rows come from PostgreSQL as the consumer takes them (an export never
/// holds them all). Audited as the table's export action with `described` (the filters, as the
/// caller names them) before the first row is read.
pub async fn export<T: Exported>(
    mut conn: TenantConn,
    acting: &Acting<'_>,
    filter: &T::Filter,
    order: Order<T::Sort>,
    described: Value,
) -> Result<impl Stream<Item = Result<ExportRow<T>, DbError>> + 'static, DbError> {
    let tx = conn.transaction().await?;
    acting
        .commit(tx, Entry::new(T::EXPORTED).after(described))
        .await?;
    let order_by = order.order_by();
    // The users subquery exposes `uid` and `email` only, so every other name is the row's.
    let sql = format!(
        "select {}, u.email from {} \
           left join (select id as uid, email from public.users) u on u.uid = {} \
          where {} order by {order_by}",
        T::COLUMNS,
        T::TABLE,
        T::USER_COLUMN,
        T::FILTERS
    );
    let params = T::params(filter);
    let client = conn.client();
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query_raw(&stmt, refs(&params)).await?;
    Ok(rows.map(move |row| {
        // The connection stays checked out (and bound) while the rows stream.
        let _bound = &conn;
        let row = row?;
        Ok((T::try_from(&row)?, row.try_get(T::COLUMN_COUNT)?))
    }))
}

/// Locks the row `id` for a change in `db`'s transaction; `None` when there is none.
pub(crate) async fn try_lock<T: Table>(
    db: &impl TenantDb,
    id: &T::Id,
) -> Result<Option<T>, DbError> {
    let sql = format!(
        "select {} from {} where id = $1 for update",
        T::COLUMNS,
        T::TABLE
    );
    db.client()
        .query_opt(&sql, &[id])
        .await?
        .as_ref()
        .map(T::try_from)
        .transpose()
}

/// Locks the row `id` for a change in `db`'s transaction; the resource's not-found error when
/// there is none.
pub(crate) async fn lock<T: Table>(db: &impl TenantDb, id: &T::Id) -> Result<T, T::Failure> {
    try_lock::<T>(db, id).await?.ok_or_else(T::not_found)
}

/// Deletes the row `id` in its own transaction, audited as the table's delete action with the
/// row as it was; the resource's not-found error (nothing written) when there is no such row.
pub async fn delete<T: Table>(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    id: T::Id,
) -> Result<(), T::Failure> {
    let tx = conn.transaction().await?;
    let before = lock::<T>(&tx, &id).await?;
    let client = tx.client();
    let stmt = client
        .prepare_cached(&format!("delete from {} where id = $1", T::TABLE))
        .await
        .map_err(DbError::from)?;
    client.execute(&stmt, &[&id]).await.map_err(DbError::from)?;
    acting
        .commit(tx, Entry::removed(T::DELETED, &before))
        .await?;
    Ok(())
}
