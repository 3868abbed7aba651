//! The billing provider's webhook events (Stripe's scheme): the signature check, and each event
//! applied once, in order, in one transaction with its `public.billing_events` row — on the
//! company's tenant binding, so the effect is audited in its trail (actor: system).
//!
//! Idempotent: the event id is the primary key of `billing_events`, inserted first in the
//! transaction, so a redelivery finds it and changes nothing. In order: the subscription keeps
//! the `created` of the last event applied to it (`last_event_at`); an older event is recorded
//! as `stale` and changes nothing.
//!
//! An event naming a provider customer or subscription id already linked to another company
//! cannot be applied (the ids are unique): it is recorded as `conflict`, nothing else changes,
//! a warning is logged, and the answer is still 200 — retrying cannot fix it, and a provider
//! that keeps getting errors retries for days and may disable the endpoint. Once an operator has
//! sorted the ids out, a redelivery of that event (Stripe's "Resend") is applied.
//!
//! Past due: entering `past_due` starts the grace (`past_due_since`, the event's `created`);
//! leaving it (`invoice.paid`, an update back to active, a deletion) clears the grace and lifts
//! the worker's past-due lock, never the over-the-limits one (`payment_required`).

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tenantry_public::companies::{self, Company};
use tenantry_public::db::{Db, DbError};
use tenantry_public::mail::OutboxId;
use tenantry_public::plans::{self, PlanCode};
use tenantry_public::subscriptions::{self, Subscription, SubscriptionStatus};
use tenantry_public::{CompanyId, Origin};

use crate::audit::{self, Action, Actor, Entry};
use crate::binding::{TenantConn, TenantDb};
use crate::subscription::{notify, read_only_note, usage};
use deadpool_postgres::GenericClient as _;

/// How far a signature's timestamp may be from now, in seconds.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header (Stripe-Signature) is missing or malformed")]
    Malformed,
    #[error("the signature's timestamp is more than 300 seconds from now")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks `Stripe-Signature: t=…,v1=…[,v1=…]`: some `v1` is the HMAC-SHA256 of `"{t}.{body}"`
/// under one of `secrets` (the current one and, during a rotation, the previous one), compared in
/// constant time, and `t` is within [`SIGNATURE_TOLERANCE_SECS`] of `now`.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secrets: &[&[u8]],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            "v1" => signatures.push(hex(value).ok_or(SignatureError::Malformed)?),
            _ => {} // other schemes (v0) are not ours to check
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now.timestamp() - t).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    for secret in secrets {
        for signature in &signatures {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
            mac.update(t.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            if mac.verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// An event type not handled, or one about no company known here.
    Ignored,
    /// Older than the last event applied to the subscription: recorded, nothing changed.
    Stale,
    /// Received before: nothing changed.
    Duplicate,
    /// Names a provider id already linked to another company: recorded, nothing changed.
    Conflict,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Ignored => "ignored",
            Self::Stale => "stale",
            Self::Duplicate => "duplicate",
            Self::Conflict => "conflict",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The body is not an event (JSON with `id`, `type`, `created`, `data.object`).
    #[error("the body is not a billing event: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A parsed event.
struct Event {
    id: String,
    kind: String,
    created: DateTime<Utc>,
    object: Value,
}

const HANDLED: [&str; 6] = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
    "checkout.session.completed",
];

fn parse(body: &[u8]) -> Result<Event, BillingError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| BillingError::Malformed("not JSON"))?;
    let text = |field: &'static str| {
        v.get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .map(str::to_owned)
            .ok_or(BillingError::Malformed(field))
    };
    let created = v
        .get("created")
        .and_then(Value::as_i64)
        .and_then(|t| Utc.timestamp_opt(t, 0).single())
        .ok_or(BillingError::Malformed("created"))?;
    Ok(Event {
        id: text("id")?,
        kind: text("type")?,
        created,
        object: v
            .get("data")
            .and_then(|d| d.get("object"))
            .filter(|o| o.is_object())
            .cloned()
            .ok_or(BillingError::Malformed("data.object"))?,
    })
}

fn str_of<'a>(o: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(o, |v, k| v.get(*k))
        .and_then(Value::as_str)
}

fn time_of(o: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    path.iter()
        .try_fold(o, |v, k| v.get(*k))
        .and_then(Value::as_i64)
        .and_then(|t| Utc.timestamp_opt(t, 0).single())
}

/// The company an event is about, if it is known here.
async fn company_of(db: &Db, e: &Event) -> Result<Option<Company>, DbError> {
    let client = db.public().await?;
    let pg = client.client();
    let o = &e.object;
    let id = if e.kind == "checkout.session.completed" {
        str_of(o, &["client_reference_id"]).and_then(|id| id.parse::<CompanyId>().ok())
    } else {
        let (customer, subscription) = if e.kind.starts_with("customer.subscription.") {
            (str_of(o, &["customer"]), str_of(o, &["id"]))
        } else {
            (str_of(o, &["customer"]), str_of(o, &["subscription"]))
        };
        match subscriptions::company_by_provider(pg, customer, subscription).await? {
            Some(id) => Some(id),
            None => str_of(o, &["metadata", "company_id"]).and_then(|id| id.parse().ok()),
        }
    };
    match id {
        Some(id) => companies::find(pg, id).await,
        None => Ok(None),
    }
}

/// Records an event nobody's subscription is changed by; a repeat is a duplicate.
async fn record_ignored(db: &Db, e: &Event) -> Result<Outcome, DbError> {
    let client = db.public().await?;
    let n = client
        .execute(
            "insert into public.billing_events (id, type, created, outcome) \
             values ($1, $2, $3, 'ignored') on conflict (id) do nothing",
            &[&e.id, &e.kind, &e.created],
        )
        .await?;
    Ok(if n == 1 {
        Outcome::Ignored
    } else {
        Outcome::Duplicate
    })
}

fn status_of(provider: &str) -> Option<SubscriptionStatus> {
    Some(match provider {
        "trialing" => SubscriptionStatus::Trialing,
        "active" => SubscriptionStatus::Active,
        "past_due" | "unpaid" | "incomplete" | "paused" => SubscriptionStatus::PastDue,
        "canceled" | "incomplete_expired" => SubscriptionStatus::Canceled,
        _ => return None,
    })
}

/// Applies a verified event's body. `link` makes the billing page's URL for a company (the
/// payment-failure email); `origin` is the webhook request's.
pub async fn apply(
    db: &Db,
    body: &[u8],
    origin: &Origin,
    link: &(dyn Fn(&Company) -> String + Sync),
) -> Result<(Outcome, Option<OutboxId>), BillingError> {
    let e = parse(body)?;
    if !HANDLED.contains(&e.kind.as_str()) {
        return Ok((record_ignored(db, &e).await?, None));
    }
    let Some(company) = company_of(db, &e).await? else {
        return Ok((record_ignored(db, &e).await?, None));
    };
    let mut conn = TenantConn::acquire(db, &company.schema_name).await?;
    let tx = conn.transaction().await?;
    let pg = &**tx.client();
    // A redelivery of an event recorded as a conflict is tried again (the operator may have
    // sorted the ids out); any other redelivery finds its row and changes nothing.
    let inserted = pg
        .execute(
            "insert into public.billing_events (id, type, created, company_id, outcome) \
             values ($1, $2, $3, $4, 'applied') \
             on conflict (id) do update set outcome = 'applied', company_id = excluded.company_id, \
                                            received_at = now() \
             where billing_events.outcome = 'conflict'",
            &[&e.id, &e.kind, &e.created, &company.id],
        )
        .await
        .map_err(DbError::from)?;
    if inserted == 0 {
        return Ok((Outcome::Duplicate, None));
    }
    let before = subscriptions::lock(pg, company.id).await?;
    if before.last_event_at.is_some_and(|last| e.created < last) {
        pg.execute(
            "update public.billing_events set outcome = 'stale' where id = $1",
            &[&e.id],
        )
        .await
        .map_err(DbError::from)?;
        tx.commit().await?;
        return Ok((Outcome::Stale, None));
    }
    let mut after = before.clone();
    after.last_event_at = Some(e.created);
    let o = &e.object;
    let mut notes: Vec<String> = Vec::new();
    let mut entry = None;
    match e.kind.as_str() {
        "checkout.session.completed" => {
            if let Some(customer) = str_of(o, &["customer"]) {
                after.provider_customer_id = Some(customer.to_owned());
            }
            if let Some(sub) = str_of(o, &["subscription"]) {
                after.provider_subscription_id = Some(sub.to_owned());
            }
            entry = Some(Action::SubscriptionSynced);
        }
        "customer.subscription.created" | "customer.subscription.updated" => {
            let lookup = o
                .get("items")
                .and_then(|i| i.get("data"))
                .and_then(|d| d.get(0))
                .and_then(|item| str_of(item, &["price", "lookup_key"]));
            let plan = match lookup {
                Some(key) => plans::by_lookup_key(pg, key).await?,
                None => None,
            }
            .or_else(|| str_of(o, &["metadata", "plan"]).and_then(|p| PlanCode::parse(p).ok()));
            if let Some(plan) = plan {
                if plan != after.plan {
                    after.plan = plan;
                    after.scheduled_plan = None;
                    after.payment_required = false;
                }
            }
            if let Some(status) = str_of(o, &["status"]).and_then(status_of) {
                after.status = status;
            }
            let item_end = o
                .get("items")
                .and_then(|i| i.get("data"))
                .and_then(|d| d.get(0))
                .and_then(|item| time_of(item, &["current_period_end"]));
            if let Some(end) = time_of(o, &["current_period_end"]).or(item_end) {
                after.current_period_end = Some(end);
            }
            after.trial_end = time_of(o, &["trial_end"]).or(match after.status {
                SubscriptionStatus::Trialing => after.trial_end,
                _ => None,
            });
            if after.status == SubscriptionStatus::Trialing && after.trial_end.is_none() {
                after.trial_end = after.current_period_end;
            }
            if let Some(flag) = o.get("cancel_at_period_end").and_then(Value::as_bool) {
                after.cancel_at_period_end = flag;
            }
            if let Some(id) = str_of(o, &["id"]) {
                after.provider_subscription_id = Some(id.to_owned());
            }
            if let Some(customer) = str_of(o, &["customer"]) {
                after.provider_customer_id = Some(customer.to_owned());
            }
            entry = Some(Action::SubscriptionSynced);
        }
        "customer.subscription.deleted" => {
            after.status = SubscriptionStatus::Canceled;
            after.plan = PlanCode::Free;
            after.scheduled_plan = None;
            after.cancel_at_period_end = false;
            after.trial_end = None;
            // On free as after an expired trial: over free's limits, writes answer 402.
            let free = plans::get(pg, PlanCode::Free).await?;
            let exceeded = usage(&tx, company.id).await?.exceeds(&free);
            after.payment_required = !exceeded.is_empty();
            if before.status != SubscriptionStatus::Canceled || before.plan != PlanCode::Free {
                let mut text = format!(
                    "The subscription ended at the billing provider: the organization is now on \
                     the {} plan.",
                    free.name
                );
                if after.payment_required {
                    text.push_str(&read_only_note(&free, &exceeded));
                }
                notes.push(text);
            }
            entry = Some(Action::SubscriptionSynced);
        }
        "invoice.paid" => {
            let invoice = str_of(o, &["id"]).ok_or(BillingError::Malformed("data.object.id"))?;
            let amount = o
                .get("amount_paid")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .max(0);
            let currency = str_of(o, &["currency"])
                .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_lowercase()))
                .unwrap_or("usd");
            let paid_at = time_of(o, &["status_transitions", "paid_at"]).unwrap_or(e.created);
            pg.execute(
                "insert into public.invoices (id, company_id, amount_paid_cents, currency, \
                        period_start, period_end, paid_at, hosted_invoice_url) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (id) do nothing",
                &[
                    &invoice,
                    &company.id,
                    &amount,
                    &currency,
                    &time_of(o, &["period_start"]),
                    &time_of(o, &["period_end"]),
                    &paid_at,
                    &str_of(o, &["hosted_invoice_url"]),
                ],
            )
            .await
            .map_err(DbError::from)?;
            if after.status == SubscriptionStatus::PastDue {
                after.status = SubscriptionStatus::Active;
            }
            audit::record(
                &tx,
                Actor::System,
                origin,
                Entry::new(Action::InvoicePaid)
                    .target("invoice", invoice)
                    .after(json!({"amount_paid_cents": amount, "currency": currency, "paid_at": paid_at, "event_id": e.id})),
            )
            .await?;
            if after.status != before.status {
                entry = Some(Action::SubscriptionSynced);
            }
        }
        "invoice.payment_failed" => {
            after.status = SubscriptionStatus::PastDue;
            let invoice = str_of(o, &["id"]).unwrap_or_default();
            audit::record(
                &tx,
                Actor::System,
                origin,
                Entry::new(Action::InvoicePaymentFailed)
                    .target("invoice", invoice)
                    .after(json!({"event_id": e.id})),
            )
            .await?;
            notes.push(
                "A payment failed: the subscription is past due. Please update the payment \
                 method to keep the plan; if it is still unpaid when the grace period ends, the \
                 organization becomes read-only until it is."
                    .to_owned(),
            );
            if after.status != before.status {
                entry = Some(Action::SubscriptionSynced);
            }
        }
        _ => {}
    }
    if after.settle_past_due(e.created) {
        notes.push(if after.payment_required {
            format!(
                "The subscription is paid up: the past-due lock is lifted. The organization stays \
                 read-only while it uses more than the {} plan allows (choose a plan it fits, \
                 or delete what is over).",
                plans::get(pg, after.plan).await?.name
            )
        } else {
            "The subscription is paid up: the organization is no longer read-only, and changes \
             are allowed again."
                .to_owned()
        });
    }
    let after = match subscriptions::store(pg, &after).await {
        Err(err) if is_provider_conflict(&err) => {
            let constraint = err.constraint().unwrap_or_default().to_owned();
            // Nothing of the event stays: the transaction (its `applied` row, invoice, audit
            // entries) rolls back here.
            drop(tx);
            return Ok((
                record_conflict(db, &e, &company, &after, &constraint).await?,
                None,
            ));
        }
        stored => stored?,
    };
    if let Some(action) = entry {
        record_change(&tx, origin, action, &before, &after, &e).await?;
    }
    let email = match notes.is_empty() {
        true => None,
        false => Some(notify(pg, company.id, notes.join("\n\n"), &link(&company)).await?),
    };
    tx.commit().await?;
    Ok((Outcome::Applied, email))
}

/// The unique keys of the provider's ids: another company already has this one.
fn is_provider_conflict(err: &DbError) -> bool {
    matches!(
        err.constraint(),
        Some(
            "subscriptions_provider_customer_id_key" | "subscriptions_provider_subscription_id_key"
        )
    )
}

/// Records an event that could not be applied because a provider id it names belongs to
/// another company, and says so in the log for an operator.
async fn record_conflict(
    db: &Db,
    e: &Event,
    company: &Company,
    wanted: &Subscription,
    constraint: &str,
) -> Result<Outcome, DbError> {
    let client = db.public().await?;
    // A resend that still conflicts finds its `conflict` row and says so again.
    let n = client
        .execute(
            "insert into public.billing_events (id, type, created, company_id, outcome) \
             values ($1, $2, $3, $4, 'conflict') \
             on conflict (id) do update set received_at = now() \
             where billing_events.outcome = 'conflict'",
            &[&e.id, &e.kind, &e.created, &company.id],
        )
        .await?;
    tracing::warn!(
        event_id = %e.id,
        event_type = %e.kind,
        company = %company.id,
        customer = wanted.provider_customer_id.as_deref().unwrap_or("-"),
        subscription = wanted.provider_subscription_id.as_deref().unwrap_or("-"),
        constraint,
        "billing event names a provider id already linked to another company: nothing applied"
    );
    Ok(if n == 1 {
        Outcome::Conflict
    } else {
        Outcome::Duplicate
    })
}

async fn record_change(
    db: &impl TenantDb,
    origin: &Origin,
    action: Action,
    before: &Subscription,
    after: &Subscription,
    e: &Event,
) -> Result<(), DbError> {
    let mut entry = Entry::changed(action, before, after);
    if let Some(Value::Object(map)) = entry.after.as_mut() {
        map.insert("event_id".into(), json!(e.id));
        map.insert("event_type".into(), json!(e.kind));
    }
    audit::record(db, Actor::System, origin, entry).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn signatures_are_checked_against_every_secret_and_the_clock() {
        let now = Utc::now();
        let t = now.timestamp();
        let body = br#"{"id":"evt_1"}"#;
        let good = sign(b"whsec_new", t, body);
        let old = sign(b"whsec_old", t, body);
        let header = |sig: &str| format!("t={t},v1={sig}");
        assert_eq!(
            verify_signature(&header(&good), body, &[b"whsec_new"], now),
            Ok(())
        );
        assert_eq!(
            verify_signature(&header(&old), body, &[b"whsec_new"], now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&header(&old), body, &[b"whsec_new", b"whsec_old"], now),
            Ok(())
        );
        // Any of several v1 values may match.
        let both = format!("t={t},v1={},v1={good}", "00".repeat(32));
        assert_eq!(verify_signature(&both, body, &[b"whsec_new"], now), Ok(()));
        // The body is signed: one byte more fails.
        assert_eq!(
            verify_signature(&header(&good), br#"{"id":"evt_2"}"#, &[b"whsec_new"], now),
            Err(SignatureError::Mismatch)
        );
        let late = now + chrono::Duration::seconds(301);
        assert_eq!(
            verify_signature(&header(&good), body, &[b"whsec_new"], late),
            Err(SignatureError::Stale)
        );
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "garbage"] {
            assert_eq!(
                verify_signature(bad, body, &[b"whsec_new"], now),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }
}
