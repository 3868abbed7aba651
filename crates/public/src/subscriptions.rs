//! Each company's subscription (`public.subscriptions`, public V8): the plan in force, its status,
//! billing period and trial, a scheduled downgrade, and the billing provider's ids. One row per
//! company, made with the company by a trigger; `companies.plan` (what the limit checks read)
//! follows `plan` through another, so they never disagree. Changes made by people are the
//! tenant's business (`tenantry_tenant::subscription`, audited in its trail); the provider's
//! events are applied by `tenantry_tenant::billing`.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tokio_postgres::{GenericClient, Row};

use crate::db::DbError;
use crate::ids::CompanyId;
use crate::plans::PlanCode;

/// How long a self-service trial of a paid plan lasts.
pub const TRIAL_DAYS: i64 = 14;

crate::text_enum! {
    /// Where a subscription is: on trial, paid up, a payment failed, or ended.
    pub enum SubscriptionStatus {
        Trialing = "trialing",
        Active = "active",
        PastDue = "past_due",
        Canceled = "canceled",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscription {
    pub company_id: CompanyId,
    pub plan: PlanCode,
    pub status: SubscriptionStatus,
    pub current_period_end: Option<DateTime<Utc>>,
    pub trial_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub scheduled_plan: Option<PlanCode>,
    pub provider_customer_id: Option<String>,
    pub provider_subscription_id: Option<String>,
    pub last_event_at: Option<DateTime<Utc>>,
    /// Writes answer 402 (a trial or cancellation ended on free over free's limits).
    pub payment_required: bool,
    pub updated_at: DateTime<Utc>,
    /// When the subscription became past_due (the provider event's `created`); `Some` exactly
    /// while the status is past_due ([`Subscription::settle_past_due`]).
    pub past_due_since: Option<DateTime<Utc>>,
    /// When the past-due grace ran out and writes began to answer 402; cleared with
    /// `past_due_since`. Apart from `payment_required`: lifting one never lifts the other.
    pub past_due_locked_at: Option<DateTime<Utc>>,
    /// The `trial_end` the "trial ends soon" email was sent for (once per trial).
    pub trial_reminder_for: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "company_id, plan, status, current_period_end, trial_end, \
                       cancel_at_period_end, scheduled_plan, provider_customer_id, \
                       provider_subscription_id, last_event_at, payment_required, updated_at, \
                       past_due_since, past_due_locked_at, trial_reminder_for";

impl TryFrom<&Row> for Subscription {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            company_id: row.try_get(0)?,
            plan: row.try_get(1)?,
            status: row.try_get(2)?,
            current_period_end: row.try_get(3)?,
            trial_end: row.try_get(4)?,
            cancel_at_period_end: row.try_get(5)?,
            scheduled_plan: row.try_get(6)?,
            provider_customer_id: row.try_get(7)?,
            provider_subscription_id: row.try_get(8)?,
            last_event_at: row.try_get(9)?,
            payment_required: row.try_get(10)?,
            updated_at: row.try_get(11)?,
            past_due_since: row.try_get(12)?,
            past_due_locked_at: row.try_get(13)?,
            trial_reminder_for: row.try_get(14)?,
        })
    }
}

impl Subscription {
    /// When the current period (or the trial) ends: where a scheduled downgrade or a
    /// cancellation takes effect. `None` when there is no billing period (free).
    pub fn period_end(&self) -> Option<DateTime<Utc>> {
        self.current_period_end.or(self.trial_end)
    }

    /// Keeps the past-due bookkeeping true to the status, before a change is stored: entering
    /// past_due starts the grace at `at`; leaving it ends the grace and lifts the past-due lock.
    /// Returns `true` when a past-due lock was lifted (the owner is told).
    pub fn settle_past_due(&mut self, at: DateTime<Utc>) -> bool {
        if self.status == SubscriptionStatus::PastDue {
            if self.past_due_since.is_none() {
                self.past_due_since = Some(at);
            }
            return false;
        }
        self.past_due_since = None;
        self.past_due_locked_at.take().is_some()
    }

    /// Whether writes answer 402, for either reason.
    pub fn read_only(&self) -> bool {
        self.payment_required || self.past_due_locked_at.is_some()
    }
}

async fn read(
    db: &impl GenericClient,
    company: CompanyId,
    lock: &str,
) -> Result<Subscription, DbError> {
    let sql = format!("select {COLUMNS} from public.subscriptions where company_id = $1 {lock}");
    let row = db
        .query_opt(&sql, &[&company])
        .await?
        .ok_or_else(|| DbError::Corrupt(format!("company {company} has no subscription row")))?;
    Subscription::try_from(&row)
}

/// The company's subscription.
pub async fn get(db: &impl GenericClient, company: CompanyId) -> Result<Subscription, DbError> {
    read(db, company, "").await
}

/// The company's subscription, locked for a change until the transaction ends.
pub async fn lock(db: &impl GenericClient, company: CompanyId) -> Result<Subscription, DbError> {
    read(db, company, "for update").await
}

/// The company whose subscription has this provider customer or subscription id.
pub async fn company_by_provider(
    db: &impl GenericClient,
    customer: Option<&str>,
    subscription: Option<&str>,
) -> Result<Option<CompanyId>, DbError> {
    let row = db
        .query_opt(
            "select company_id from public.subscriptions \
              where provider_subscription_id = $2 or provider_customer_id = $1 \
              order by (provider_subscription_id = $2) desc nulls last limit 1",
            &[&customer, &subscription],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Writes every changeable field of `s` (the row of `s.company_id`); returns it as stored.
pub async fn store(db: &impl GenericClient, s: &Subscription) -> Result<Subscription, DbError> {
    let sql = format!(
        "update public.subscriptions set plan = $2, status = $3, current_period_end = $4, \
                trial_end = $5, cancel_at_period_end = $6, scheduled_plan = $7, \
                provider_customer_id = $8, provider_subscription_id = $9, last_event_at = $10, \
                payment_required = $11, past_due_since = $12, past_due_locked_at = $13, \
                trial_reminder_for = $14, updated_at = now() \
          where company_id = $1 returning {COLUMNS}"
    );
    let row = db
        .query_one(
            &sql,
            &[
                &s.company_id,
                &s.plan,
                &s.status,
                &s.current_period_end,
                &s.trial_end,
                &s.cancel_at_period_end,
                &s.scheduled_plan,
                &s.provider_customer_id,
                &s.provider_subscription_id,
                &s.last_event_at,
                &s.payment_required,
                &s.past_due_since,
                &s.past_due_locked_at,
                &s.trial_reminder_for,
            ],
        )
        .await?;
    Subscription::try_from(&row)
}

/// Starts a self-service trial of `plan` as of `now` (sign-up), ending [`TRIAL_DAYS`] later.
pub async fn start_trial(
    db: &impl GenericClient,
    company: CompanyId,
    plan: PlanCode,
    now: DateTime<Utc>,
) -> Result<Subscription, DbError> {
    let mut s = lock(db, company).await?;
    s.plan = plan;
    s.status = SubscriptionStatus::Trialing;
    s.trial_end = Some(now + Duration::days(TRIAL_DAYS));
    store(db, &s).await
}

/// The companies whose self-managed subscription (no provider subscription: the provider ends
/// its own) has reached its period's or trial's end at `now` with something to do there: a
/// trial to end, a scheduled plan change or a cancellation.
pub async fn due(db: &impl GenericClient, now: DateTime<Utc>) -> Result<Vec<CompanyId>, DbError> {
    let rows = db
        .query(
            "select company_id from public.subscriptions \
              where provider_subscription_id is null and status <> 'canceled' \
                and ((status = 'trialing' and trial_end <= $1) \
                  or ((scheduled_plan is not null or cancel_at_period_end) \
                      and coalesce(current_period_end, trial_end) <= $1)) \
              order by company_id",
            &[&now],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// The past_due subscriptions (of any kind: the provider keeps retrying, the lock is ours) whose
/// grace of `grace` since they became past_due has run out at `now` and that are not locked yet.
pub async fn past_due_over_grace(
    db: &impl GenericClient,
    now: DateTime<Utc>,
    grace: Duration,
) -> Result<Vec<CompanyId>, DbError> {
    let rows = db
        .query(
            "select company_id from public.subscriptions \
              where status = 'past_due' and past_due_locked_at is null \
                and past_due_since <= $1 \
              order by company_id",
            &[&(now - grace)],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// The self-managed trials (the provider reminds of its own) that end within `lead` after
/// `now` and whose owner has not been reminded of this trial's end yet.
pub async fn trials_ending(
    db: &impl GenericClient,
    now: DateTime<Utc>,
    lead: Duration,
) -> Result<Vec<CompanyId>, DbError> {
    let rows = db
        .query(
            "select company_id from public.subscriptions \
              where provider_subscription_id is null and status = 'trialing' \
                and trial_end > $1 and trial_end <= $2 \
                and trial_reminder_for is distinct from trial_end \
              order by company_id",
            &[&now, &(now + lead)],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Whether writes of `company` answer 402 (over the plan's limits, or past due beyond the
/// grace).
pub async fn payment_required(
    db: &impl GenericClient,
    company: CompanyId,
) -> Result<bool, DbError> {
    let row = db
        .query_opt(
            "select payment_required or past_due_locked_at is not null \
               from public.subscriptions where company_id = $1",
            &[&company],
        )
        .await?;
    Ok(row.map(|r| r.get(0)).unwrap_or(false))
}
