//! The organization as a whole: its settings (`public.company_settings`), read on the tenant's
//! bound connection and changed audited in the tenant's trail as
//! `organization.settings_changed`, with the settings before and after.

use tenantry_public::company_settings::{self, CompanySettings, SettingsPatch};
use tenantry_public::db::DbError;
use tenantry_public::CompanyId;

use crate::audit::{Acting, Action, Entry};
use crate::binding::{TenantConn, TenantDb};

crate::audit::audited!(CompanySettings, "organization", id: company_id, [timezone, reminder_lead_hours, completed_task_retention_days]);

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The name has the form of one, but PostgreSQL's time zone database does not know it.
    #[error("no such time zone")]
    UnknownTimezone,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The settings of this tenant's company.
pub async fn settings(conn: &TenantConn, company: CompanyId) -> Result<CompanySettings, DbError> {
    company_settings::get(&***conn.client(), company).await
}

/// Applies `patch` to the acting member's company, audited as `organization.settings_changed`
/// (before and after) in the same transaction. A patch that changes nothing writes nothing and
/// no entry.
pub async fn update_settings(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    patch: &SettingsPatch,
) -> Result<CompanySettings, SettingsError> {
    let tx = conn.transaction().await?;
    let pg = &**tx.client();
    // Before the lock: reading PostgreSQL's time zone database takes tens of milliseconds.
    if let Some(timezone) = &patch.timezone {
        if !company_settings::is_known_timezone(pg, timezone).await? {
            return Err(SettingsError::UnknownTimezone);
        }
    }
    let before = company_settings::lock(pg, acting.company).await?;
    let wanted = before.patched(patch);
    if wanted == before {
        return Ok(before);
    }
    let after = company_settings::store(pg, &wanted).await?;
    acting
        .commit(tx, Entry::changed(Action::SettingsChanged, &before, &after))
        .await?;
    Ok(after)
}
