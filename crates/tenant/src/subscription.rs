//! The organization's subscription as its owner manages it: the plan, status and period with the
//! usage beside each limit, and the changes — a plan change (an upgrade at once; a downgrade the
//! organization fits in, scheduled for the period end), cancelling at the period end and resuming.
//! Each change runs under the company row lock (`memberships::lock_company`, the lock the member
//! and project limits are checked under, so usage cannot grow past a downgrade's limits while it
//! is checked), is audited in the tenant's trail and emails the owner (outbox, same transaction).

use serde::Serialize;
use tenantry_public::db::DbError;
use tenantry_public::mail::{self, Email, OutboxId};
use tenantry_public::memberships;
use tenantry_public::plans::{self, Plan, PlanCode};
use tenantry_public::subscriptions::{self, Subscription, SubscriptionStatus};
use tenantry_public::CompanyId;

use crate::audit::{Acting, Action, Entry};
use crate::binding::{TenantConn, TenantDb};
use crate::{documents, projects};
use deadpool_postgres::GenericClient as _;

crate::audit::audited!(Subscription, "subscription", id: company_id, [plan, status, current_period_end, trial_end, cancel_at_period_end, scheduled_plan]);

/// What the organization uses of each limited resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Memberships, active or not (a deactivated member holds a seat).
    pub members: i64,
    pub projects: i64,
    /// The documents' bytes.
    pub storage_bytes: i64,
}

/// One limit of a plan the organization's usage exceeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exceeded {
    /// `max_members`, `max_projects` or `max_storage_mb`.
    pub limit: &'static str,
    /// The plan's limit, in its own unit (MiB for storage).
    pub max: i64,
    /// The organization's figure, in the same unit (storage rounded up to whole MiB).
    pub used: i64,
}

impl Usage {
    /// The limits of `plan` this usage is over.
    pub fn exceeds(&self, plan: &Plan) -> Vec<Exceeded> {
        let mib = 1024 * 1024;
        let figures = [
            ("max_members", plan.max_members, self.members),
            ("max_projects", plan.max_projects, self.projects),
            (
                "max_storage_mb",
                plan.max_storage_mb,
                (self.storage_bytes + mib - 1) / mib,
            ),
        ];
        figures
            .into_iter()
            .filter_map(|(limit, max, used)| {
                let max = i64::from(max?);
                (used > max).then_some(Exceeded { limit, max, used })
            })
            .collect()
    }
}

/// The subscription with its plan and the organization's usage.
#[derive(Debug, Clone)]
pub struct Overview {
    pub subscription: Subscription,
    pub plan: Plan,
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// The plan is not one an organization may choose itself (enterprise).
    #[error("the {0} plan is not self-service: it is arranged with sales")]
    NotSelfService(PlanCode),
    /// A downgrade to a plan whose limits the organization is over.
    #[error("the organization uses more than the {plan} plan allows: {}", describe(.exceeded))]
    OverLimits {
        plan: PlanCode,
        exceeded: Vec<Exceeded>,
    },
    /// Cancelling what is not a paid subscription, or resuming one that is not being cancelled.
    #[error("{0}")]
    NotApplicable(&'static str),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn describe(exceeded: &[Exceeded]) -> String {
    exceeded
        .iter()
        .map(|e| format!("{} is {} (uses {})", e.limit, e.max, e.used))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The organization's usage, read on its bound connection.
pub async fn usage(db: &impl TenantDb, company: CompanyId) -> Result<Usage, DbError> {
    let members: i64 = db
        .client()
        .query_one(
            "select count(*) from public.memberships where company_id = $1",
            &[&company],
        )
        .await?
        .try_get(0)?;
    Ok(Usage {
        members,
        projects: projects::count(db).await?,
        storage_bytes: documents::storage_used(db).await?,
    })
}

/// The subscription, its plan and the usage beside each limit.
pub async fn overview(conn: &TenantConn, company: CompanyId) -> Result<Overview, DbError> {
    let client = &***conn.client();
    let subscription = subscriptions::get(client, company).await?;
    let plan = plans::get(client, subscription.plan).await?;
    let usage = usage(conn, company).await?;
    Ok(Overview {
        subscription,
        plan,
        usage,
    })
}

/// The organization's paid invoices, newest first, after the keyset position `after`.
pub async fn invoices(
    conn: &TenantConn,
    company: CompanyId,
    after: Option<&(chrono::DateTime<chrono::Utc>, String)>,
    limit: i64,
) -> Result<tenantry_public::Page<tenantry_public::invoices::Invoice>, DbError> {
    tenantry_public::invoices::list(&***conn.client(), company, after, limit).await
}

/// What a change did: the subscription after it, and the owner's email to queue after commit
/// (none when nothing changed).
#[derive(Debug)]
pub struct Changed {
    pub subscription: Subscription,
    pub email: Option<OutboxId>,
}

/// Moves the organization to `target`. An upgrade (or any change without a billing period to
/// wait for) applies at once; a downgrade is refused when the organization is over any of the
/// target's limits, and otherwise scheduled for the period end (`scheduled_plan`). Asking for the
/// current plan drops a scheduled change. Audited as `subscription.plan_changed` or
/// `subscription.change_scheduled`; the owner is emailed. `link` opens the billing page.
pub async fn change_plan(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    target: PlanCode,
    link: &str,
) -> Result<Changed, SubscriptionError> {
    if !target.is_self_service() {
        return Err(SubscriptionError::NotSelfService(target));
    }
    let tx = conn.transaction().await?;
    let client = &**tx.client();
    memberships::lock_company(client, acting.company).await?;
    let before = subscriptions::lock(client, acting.company).await?;
    let current = plans::get(client, before.plan).await?;
    let wanted = plans::get(client, target).await?;
    let mut after = before.clone();
    let (action, what) = if target == before.plan {
        if before.scheduled_plan.is_none() {
            return Ok(Changed {
                subscription: before,
                email: None,
            });
        }
        after.scheduled_plan = None;
        (
            Action::SubscriptionChangeScheduled,
            format!(
                "The scheduled plan change was dropped: the plan stays {}.",
                current.name
            ),
        )
    } else if wanted.is_below(&current) {
        let exceeded = usage(&tx, acting.company).await?.exceeds(&wanted);
        if !exceeded.is_empty() {
            return Err(SubscriptionError::OverLimits {
                plan: target,
                exceeded,
            });
        }
        match before.period_end() {
            Some(end) => {
                after.scheduled_plan = Some(target);
                (
                    Action::SubscriptionChangeScheduled,
                    format!(
                        "The plan changes from {} to {} at the end of the period ({}).",
                        current.name,
                        wanted.name,
                        end.format("%Y-%m-%d %H:%M UTC")
                    ),
                )
            }
            None => {
                after.plan = target;
                after.scheduled_plan = None;
                (
                    Action::SubscriptionPlanChanged,
                    format!("The plan is now {} (was {}).", wanted.name, current.name),
                )
            }
        }
    } else {
        after.plan = target;
        after.scheduled_plan = None;
        (
            Action::SubscriptionPlanChanged,
            format!("The plan is now {} (was {}).", wanted.name, current.name),
        )
    };
    let after = subscriptions::store(client, &after).await?;
    let email = notify(client, acting.company, what, link).await?;
    acting
        .commit(tx, Entry::changed(action, &before, &after))
        .await?;
    Ok(Changed {
        subscription: after,
        email: Some(email),
    })
}

/// Cancels the subscription at the end of its period (`cancel_at_period_end`); the plan stays
/// until then. Free has nothing to cancel. A repeat changes nothing. Audited as
/// `subscription.cancel_scheduled`; the owner is emailed.
pub async fn cancel(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    link: &str,
) -> Result<Changed, SubscriptionError> {
    set_cancel(conn, acting, true, link).await
}

/// Takes back a cancellation that has not taken effect. A subscription that is not being
/// cancelled is left as it is. Audited as `subscription.resumed`; the owner is emailed.
pub async fn resume(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    link: &str,
) -> Result<Changed, SubscriptionError> {
    set_cancel(conn, acting, false, link).await
}

async fn set_cancel(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    cancel: bool,
    link: &str,
) -> Result<Changed, SubscriptionError> {
    let tx = conn.transaction().await?;
    let client = &**tx.client();
    let before = subscriptions::lock(client, acting.company).await?;
    if before.status == SubscriptionStatus::Canceled {
        return Err(SubscriptionError::NotApplicable(
            "the subscription has ended; choose a plan to start again",
        ));
    }
    if cancel && !before.plan.is_paid() {
        return Err(SubscriptionError::NotApplicable(
            "the free plan has no subscription to cancel",
        ));
    }
    if before.cancel_at_period_end == cancel {
        return Ok(Changed {
            subscription: before,
            email: None,
        });
    }
    let mut after = before.clone();
    after.cancel_at_period_end = cancel;
    let after = subscriptions::store(client, &after).await?;
    let end = before
        .period_end()
        .map(|e| e.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "the end of the period".into());
    let (action, what) = match cancel {
        true => (
            Action::SubscriptionCancelScheduled,
            format!("The subscription is cancelled: it ends on {end}, and the organization moves to the free plan then."),
        ),
        false => (
            Action::SubscriptionResumed,
            "The cancellation was taken back: the subscription goes on.".to_owned(),
        ),
    };
    let email = notify(client, acting.company, what, link).await?;
    acting
        .commit(tx, Entry::changed(action, &before, &after))
        .await?;
    Ok(Changed {
        subscription: after,
        email: Some(email),
    })
}

/// Writes the owner's notice to the outbox (inside the caller's transaction).
pub(crate) async fn notify(
    db: &impl tokio_postgres::GenericClient,
    company: CompanyId,
    what: String,
    link: &str,
) -> Result<OutboxId, DbError> {
    let (to, organization) = mail::owner_of(db, company).await?;
    mail::enqueue(
        db,
        &Email::SubscriptionNotice {
            to,
            organization,
            what,
            link: link.to_owned(),
        },
    )
    .await
}
