//! The organization's subscription as its owner manages it: the plan, status and period with the
//! usage beside each limit, and the changes — a plan change (an upgrade at once; a downgrade the
//! organization fits in, scheduled for the period end), cancelling at the period end and resuming.
//! Each change runs under the company row lock (`memberships::lock_company`, the lock the member
//! and project limits are checked under, so usage cannot grow past a downgrade's limits while it
//! is checked), is audited in the tenant's trail and emails the owner (outbox, same transaction).

use serde::Serialize;
use tenantry_public::db::DbError;
use tenantry_public::links::Links;
use tenantry_public::mail::{self, Email, OutboxId};
use tenantry_public::memberships;
use tenantry_public::plans::{self, Plan, PlanCode};
use tenantry_public::subscriptions::{self, Subscription, SubscriptionStatus};
use tenantry_public::CompanyId;

use crate::audit::{Acting, Action, Entry};
use crate::binding::{TenantConn, TenantDb, TenantTx};
use crate::{documents, projects};
use deadpool_postgres::GenericClient as _;

crate::audit::audited!(Subscription, "subscription", id: company_id, [plan, status, current_period_end, trial_end, cancel_at_period_end, scheduled_plan, payment_required, past_due_since, past_due_locked_at]);

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
    /// The trial or the subscription ended on free while the organization is over free's limits:
    /// reads and deletions go on, other writes wait for a plan it fits.
    #[error("the organization is over the {plan} plan's limits ({}); choose a paid plan (POST /api/v1/organization/subscription/change) or delete to fit", describe(.exceeded))]
    PaymentRequired {
        plan: PlanCode,
        exceeded: Vec<Exceeded>,
    },
    /// A payment has been failing for longer than the grace: reads and deletions go on, other
    /// writes wait until the provider reports the subscription paid.
    #[error("a payment has been failing since {} and the grace period is over: the organization is read-only until the open invoice is paid (update the payment method on the billing page)", .since.format("%Y-%m-%d"))]
    PastDue {
        since: chrono::DateTime<chrono::Utc>,
    },
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

/// Refuses a write while the organization is in a read-only state. Past due beyond the grace
/// (`past_due_locked_at`) holds until the provider reports the subscription paid. Over the
/// plan's limits (`payment_required`) holds while it is still over: once it fits again (members
/// removed, projects or documents deleted) that state is lifted here, on the first write that
/// finds it so.
pub async fn check_writable(
    conn: &TenantConn,
    company: CompanyId,
) -> Result<(), SubscriptionError> {
    let client = &***conn.client();
    if !subscriptions::payment_required(client, company).await? {
        return Ok(());
    }
    let subscription = subscriptions::get(client, company).await?;
    if let (Some(_), Some(since)) = (subscription.past_due_locked_at, subscription.past_due_since) {
        return Err(SubscriptionError::PastDue { since });
    }
    if !subscription.payment_required {
        return Ok(());
    }
    let plan = plans::get(client, subscription.plan).await?;
    let exceeded = usage(conn, company).await?.exceeds(&plan);
    if !exceeded.is_empty() {
        return Err(SubscriptionError::PaymentRequired {
            plan: subscription.plan,
            exceeded,
        });
    }
    client
        .execute(
            "update public.subscriptions set payment_required = false, updated_at = now() \
              where company_id = $1",
            &[&company],
        )
        .await
        .map_err(DbError::from)?;
    Ok(())
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
        after.payment_required = false;
        (
            Action::SubscriptionPlanChanged,
            format!("The plan is now {} (was {}).", wanted.name, current.name),
        )
    };
    apply(tx, acting, &before, &after, (action, what), link).await
}

/// The last step of every owner change: stores `after`, emails the owner `what` and commits
/// with the change audited as `action` (before and after), in the transaction `tx`.
async fn apply(
    tx: TenantTx<'_>,
    acting: &Acting<'_>,
    before: &Subscription,
    after: &Subscription,
    (action, what): (Action, String),
    link: &str,
) -> Result<Changed, SubscriptionError> {
    let client = &**tx.client();
    let after = subscriptions::store(client, after).await?;
    let email = notify(client, acting.company, what, link).await?;
    acting
        .commit(tx, Entry::changed(action, before, &after))
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
    let end = before
        .period_end()
        .map(|e| e.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "the end of the period".into());
    let change = match cancel {
        true => (
            Action::SubscriptionCancelScheduled,
            format!("The subscription is cancelled: it ends on {end}, and the organization moves to the free plan then."),
        ),
        false => (
            Action::SubscriptionResumed,
            "The cancellation was taken back: the subscription goes on.".to_owned(),
        ),
    };
    apply(tx, acting, &before, &after, change, link).await
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

/// The job name of the daily run that ends trials and periods ([`end_periods`]).
pub const PERIOD_END_JOB: &str = "billing.period_end";

/// The variable (read by the worker and `tenantctl`) with the days a past_due subscription
/// keeps writing before the organization becomes read-only.
pub const PAST_DUE_GRACE_VAR: &str = "BILLING_PAST_DUE_GRACE_DAYS";
/// The default of [`PAST_DUE_GRACE_VAR`].
pub const DEFAULT_PAST_DUE_GRACE_DAYS: u32 = 7;
/// How long before a self-managed trial ends its owner is reminded (once per trial).
pub const TRIAL_REMINDER_DAYS: i64 = 3;

/// What the period-end run needs besides the database.
#[derive(Debug, Clone)]
pub struct PeriodEndSettings {
    /// Where the owner's emails link to (the billing page on the tenant's host).
    pub links: Links,
    /// How long a past_due subscription keeps writing ([`PAST_DUE_GRACE_VAR`]).
    pub past_due_grace: chrono::Duration,
}

/// What a period-end run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeriodEnds {
    /// Trials and cancellations that ended on free.
    pub moved_to_free: usize,
    /// Of those, the organizations over free's limits (now 402 for writes).
    pub payment_required: usize,
    /// Scheduled plan changes applied.
    pub changes_applied: usize,
    /// Past_due subscriptions whose grace ran out (now 402 for writes).
    pub past_due_locked: usize,
    /// Owners reminded that their trial ends within [`TRIAL_REMINDER_DAYS`].
    pub trial_reminders: usize,
    /// The owners' emails the run queued (committed): the caller pushes them to delivery.
    #[serde(skip)]
    pub emails: Vec<OutboxId>,
}

/// Ends what is due at `now` in every self-managed subscription (the provider ends its own and
/// tells the webhook): an expired trial or a cancellation moves to free (`payment_required`
/// when the organization is over free's limits), a scheduled downgrade applies. Then any
/// past_due subscription whose grace has run out becomes read-only (`past_due_locked_at`), and
/// the owners of self-managed trials ending within [`TRIAL_REMINDER_DAYS`] are reminded. Claimed
/// once per day in `public.job_runs`; each company changes in its own tenant transaction,
/// audited by the system and with the owner's email queued in it, and each re-checks under the
/// row lock, so a run taken over after a crash does the rest and nothing twice.
pub async fn end_periods(
    db: &tenantry_public::db::Db,
    settings: &PeriodEndSettings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<tenantry_public::jobs::Ran<PeriodEnds>, DbError> {
    use tenantry_public::jobs::{self, Ran, RunKey};
    let day = now.date_naive().to_string();
    let key = RunKey {
        job: PERIOD_END_JOB,
        company: None,
        period: &day,
    };
    let Some(id) = jobs::claim(db.public().await?.client(), key, now).await? else {
        return Ok(Ran::NotMine);
    };
    let origin = tenantry_public::Origin::new(
        None,
        Some(&format!(
            "tenantry-worker/{} {PERIOD_END_JOB}",
            env!("CARGO_PKG_VERSION")
        )),
        Some(format!("job-{id}")),
    );
    let run = Run {
        db,
        settings,
        now,
        origin: &origin,
    };
    let mut ends = PeriodEnds::default();
    let result = async {
        let public = db.public().await?;
        let due = subscriptions::due(public.client(), now).await?;
        let past_due =
            subscriptions::past_due_over_grace(public.client(), now, settings.past_due_grace)
                .await?;
        let trials = subscriptions::trials_ending(
            public.client(),
            now,
            chrono::Duration::days(TRIAL_REMINDER_DAYS),
        )
        .await?;
        drop(public);
        for company in due {
            run.end_period(company, &mut ends).await?;
        }
        for company in past_due {
            run.lock_past_due(company, &mut ends).await?;
        }
        for company in trials {
            run.remind_trial(company, &mut ends).await?;
        }
        jobs::done(db.public().await?.client(), id, &ends, now).await?;
        Ok::<_, DbError>(())
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(job = PERIOD_END_JOB, period = day, ?ends, "job run done");
            Ok(Ran::Done(id, ends))
        }
        Err(e) => {
            // The companies done before the failure committed (emails included); the retry
            // re-checks each under its row lock and does only the rest.
            tracing::warn!(job = PERIOD_END_JOB, period = day, error = %e, "job run failed");
            jobs::fail(db, id, &e.to_string(), now).await?;
            Err(e)
        }
    }
}

/// One period-end run.
struct Run<'a> {
    db: &'a tenantry_public::db::Db,
    settings: &'a PeriodEndSettings,
    now: chrono::DateTime<chrono::Utc>,
    origin: &'a tenantry_public::Origin,
}

fn day(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// What free-over-limits means for the owner, in the email that moved the organization there.
pub(crate) fn read_only_note(free: &Plan, exceeded: &[Exceeded]) -> String {
    format!(
        " It uses more than the {} plan allows ({}), so changes are refused (402 Payment \
         Required) until you choose a paid plan or delete what is over; reading, exporting and \
         deleting keep working, and nothing was deleted.",
        free.name,
        describe(exceeded)
    )
}

impl Run<'_> {
    /// The company's schema, or `None` when it was dropped meanwhile.
    async fn schema(
        &self,
        company: CompanyId,
    ) -> Result<Option<tenantry_public::SchemaName>, DbError> {
        Ok(
            tenantry_public::companies::find(self.db.public().await?.client(), company)
                .await?
                .map(|row| row.schema_name),
        )
    }

    /// The billing page of `company`, on its primary domain or `<slug>.BASE_DOMAIN`.
    async fn link(
        &self,
        db: &impl tokio_postgres::GenericClient,
        company: CompanyId,
    ) -> Result<String, DbError> {
        let row = db
            .query_one(
                "select c.slug, d.domain from public.companies c \
                   left join public.domains d on d.company_id = c.id and d.is_primary \
                  where c.id = $1",
                &[&company],
            )
            .await?;
        let slug: String = row.try_get(0)?;
        let slug = tenantry_public::Slug::parse(&slug)
            .map_err(|e| DbError::Corrupt(format!("companies.slug {slug:?} {}", e.0)))?;
        let domain: Option<String> = row.try_get(1)?;
        let links = &self.settings.links;
        Ok(links.page(
            &links.tenant_host(&slug, domain.as_deref()),
            tenantry_public::links::BILLING_PATH,
        ))
    }

    /// Emails the owner `what` (with a link to the billing page) in `tx` and commits: the email
    /// is queued with the change it tells of, and goes to delivery once that has committed.
    async fn commit_telling_owner(
        &self,
        tx: TenantTx<'_>,
        company: CompanyId,
        what: String,
        ends: &mut PeriodEnds,
    ) -> Result<(), DbError> {
        let client = &**tx.client();
        let link = self.link(client, company).await?;
        let email = notify(client, company, what, &link).await?;
        tx.commit().await?;
        ends.emails.push(email);
        Ok(())
    }

    /// Stores `after` in `tx`, audited as `action` by the system with the subscription before
    /// and after.
    async fn store_audited(
        &self,
        tx: &TenantTx<'_>,
        action: Action,
        before: &Subscription,
        after: &Subscription,
    ) -> Result<(), DbError> {
        let after = subscriptions::store(&**tx.client(), after).await?;
        crate::audit::record(
            tx,
            crate::audit::Actor::System,
            self.origin,
            Entry::changed(action, before, &after),
        )
        .await
    }

    async fn end_period(&self, company: CompanyId, ends: &mut PeriodEnds) -> Result<(), DbError> {
        let now = self.now;
        let Some(schema) = self.schema(company).await? else {
            return Ok(());
        };
        let mut conn = TenantConn::acquire(self.db, &schema).await?;
        let tx = conn.transaction().await?;
        let client = &**tx.client();
        memberships::lock_company(client, company).await?;
        let before = subscriptions::lock(client, company).await?;
        let ended = |at: Option<chrono::DateTime<chrono::Utc>>| at.is_some_and(|at| at <= now);
        let mut after = before.clone();
        let trial_over = before.status == SubscriptionStatus::Trialing && ended(before.trial_end);
        let period_over = ended(before.period_end());
        if before.provider_subscription_id.is_some()
            || before.status == SubscriptionStatus::Canceled
        {
            return Ok(());
        }
        let old = plans::get(client, before.plan).await?;
        let what;
        if (trial_over && before.scheduled_plan.is_none())
            || (period_over && before.cancel_at_period_end)
        {
            let free = plans::get(client, PlanCode::Free).await?;
            after.plan = PlanCode::Free;
            after.status = if before.cancel_at_period_end {
                SubscriptionStatus::Canceled
            } else {
                SubscriptionStatus::Active
            };
            after.trial_end = None;
            after.current_period_end = None;
            after.scheduled_plan = None;
            after.cancel_at_period_end = false;
            let exceeded = usage(&tx, company).await?.exceeds(&free);
            after.payment_required = !exceeded.is_empty();
            ends.moved_to_free += 1;
            ends.payment_required += usize::from(after.payment_required);
            let mut text = if before.cancel_at_period_end {
                format!(
                    "The cancelled subscription ended: the organization is now on the {} plan \
                     (was {}).",
                    free.name, old.name
                )
            } else {
                format!(
                    "The trial of the {} plan ended without a paid subscription: the \
                     organization is now on the {} plan.",
                    old.name, free.name
                )
            };
            if after.payment_required {
                text.push_str(&read_only_note(&free, &exceeded));
            }
            what = text;
        } else if let (true, Some(plan)) = (period_over, before.scheduled_plan) {
            let new = plans::get(client, plan).await?;
            after.plan = plan;
            after.scheduled_plan = None;
            what = if before.status == SubscriptionStatus::Trialing {
                after.status = SubscriptionStatus::Active;
                after.trial_end = None;
                format!(
                    "The trial ended and the scheduled plan change took effect: the plan is now \
                     {} (was {}).",
                    new.name, old.name
                )
            } else {
                format!(
                    "The scheduled plan change took effect at the end of the period: the plan \
                     is now {} (was {}).",
                    new.name, old.name
                )
            };
            ends.changes_applied += 1;
        } else {
            return Ok(());
        }
        after.settle_past_due(now);
        self.store_audited(&tx, Action::SubscriptionPeriodEnded, &before, &after)
            .await?;
        self.commit_telling_owner(tx, company, what, ends).await
    }

    /// Makes a past_due subscription whose grace has run out read-only: audited as
    /// `subscription.past_due_locked`, the owner emailed.
    async fn lock_past_due(
        &self,
        company: CompanyId,
        ends: &mut PeriodEnds,
    ) -> Result<(), DbError> {
        let Some(schema) = self.schema(company).await? else {
            return Ok(());
        };
        let mut conn = TenantConn::acquire(self.db, &schema).await?;
        let tx = conn.transaction().await?;
        let client = &**tx.client();
        let before = subscriptions::lock(client, company).await?;
        let grace = self.settings.past_due_grace;
        let Some(since) = before.past_due_since else {
            return Ok(());
        };
        if before.status != SubscriptionStatus::PastDue
            || before.past_due_locked_at.is_some()
            || since + grace > self.now
        {
            return Ok(());
        }
        let mut after = before.clone();
        after.past_due_locked_at = Some(self.now);
        self.store_audited(&tx, Action::SubscriptionPastDueLocked, &before, &after)
            .await?;
        let what = format!(
            "A payment has been failing since {} and the {}-day grace period is over: the \
             organization is now read-only. Changes are refused (402 Payment Required); reading, \
             exporting and deleting keep working, and nothing was deleted. Pay the open invoice \
             or update the payment method, and writing is allowed again as soon as the payment \
             goes through.",
            day(since),
            grace.num_days()
        );
        self.commit_telling_owner(tx, company, what, ends).await?;
        ends.past_due_locked += 1;
        Ok(())
    }

    /// Reminds the owner that the trial ends within [`TRIAL_REMINDER_DAYS`], once per trial
    /// (`trial_reminder_for` keeps the `trial_end` reminded of). Not audited: it changes
    /// nothing the organization sees.
    async fn remind_trial(&self, company: CompanyId, ends: &mut PeriodEnds) -> Result<(), DbError> {
        let Some(schema) = self.schema(company).await? else {
            return Ok(());
        };
        let mut conn = TenantConn::acquire(self.db, &schema).await?;
        let tx = conn.transaction().await?;
        let client = &**tx.client();
        let before = subscriptions::lock(client, company).await?;
        let lead = chrono::Duration::days(TRIAL_REMINDER_DAYS);
        let Some(end) = before.trial_end else {
            return Ok(());
        };
        if before.status != SubscriptionStatus::Trialing
            || before.provider_subscription_id.is_some()
            || before.trial_reminder_for == Some(end)
            || end <= self.now
            || end > self.now + lead
        {
            return Ok(());
        }
        let mut after = before.clone();
        after.trial_reminder_for = Some(end);
        subscriptions::store(client, &after).await?;
        let plan = plans::get(client, before.plan).await?;
        let then = match (before.cancel_at_period_end, before.scheduled_plan) {
            (false, Some(next)) => format!(
                "the plan then becomes {}",
                plans::get(client, next).await?.name
            ),
            _ => "the organization then moves to the free plan".to_owned(),
        };
        let what = format!(
            "The trial of the {} plan ends on {}: choose a paid plan to keep it; otherwise {}.",
            plan.name,
            day(end),
            then
        );
        self.commit_telling_owner(tx, company, what, ends).await?;
        ends.trial_reminders += 1;
        Ok(())
    }
}
