//! The statements every tenant resource shares, written once: lock a row for a change, delete a
//! row with its audit entry. A resource names its table and columns through [`Table`]; both are
//! constants of the code, never request text.

use tenantry_public::db::DbError;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::audit::{Acting, Action, Audited, Entry};
use crate::binding::{TenantConn, TenantDb};
use deadpool_postgres::GenericClient;

/// A tenant table whose rows are one domain type.
pub(crate) trait Table: Audited + for<'r> TryFrom<&'r Row, Error = DbError> {
    /// The table, unqualified (the connection's `search_path` is the tenant's schema alone).
    const TABLE: &'static str;
    /// The columns the type is read from.
    const COLUMNS: &'static str;
}

/// Locks the row `id` for a change in `db`'s transaction; `None` when there is none.
pub(crate) async fn lock<T: Table>(
    db: &impl TenantDb,
    id: &(dyn ToSql + Sync),
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

/// Deletes the row `id` in its own transaction, audited as `action` with the row as it was;
/// `None` (nothing written) when there is no such row.
pub(crate) async fn delete<T: Table>(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    id: &(dyn ToSql + Sync),
    action: Action,
) -> Result<Option<()>, DbError> {
    let tx = conn.transaction().await?;
    let Some(before) = lock::<T>(&tx, id).await? else {
        return Ok(None);
    };
    let client = tx.client();
    let stmt = client
        .prepare_cached(&format!("delete from {} where id = $1", T::TABLE))
        .await?;
    client.execute(&stmt, &[id]).await?;
    acting.commit(tx, Entry::removed(action, &before)).await?;
    Ok(Some(()))
}
