//! Plans, subscriptions and the billing provider's webhook (issue #11).

use crate::helpers::*;
use serde_json::{json, Value};

fn signup(slug: &str, plan: Option<&str>, trial: Option<bool>) -> Value {
    let mut body = json!({
        "name": format!("{slug} Inc"),
        "slug": slug,
        "owner_email": format!("owner@{slug}.test"),
        "owner_password": format!("password-of-{slug}"),
    });
    if let Some(plan) = plan {
        body["plan"] = json!(plan);
    }
    if let Some(trial) = trial {
        body["trial"] = json!(trial);
    }
    body
}

async fn subscription_row(app: &TestApp, slug: &str) -> tokio_postgres::Row {
    app.sql_row_with(
        "select s.plan, s.status, s.trial_end, c.plan as company_plan \
           from public.subscriptions s join public.companies c on c.id = s.company_id \
          where c.slug = $1",
        &[&slug],
    )
    .await
}

#[tokio::test]
async fn billing_plans_list_the_catalogue_in_order_with_unlimited_as_null() {
    let app = spawn_app().await;
    let body = expect_json(app.get(BASE, "/api/v1/plans", None).await, 200).await;
    let codes = column(&body, "code");
    assert_eq!(codes, ["free", "starter", "professional", "enterprise"]);
    let plans = body["results"].as_array().unwrap();
    assert_eq!(plans[0]["monthly_price_cents"], 0);
    assert_eq!(plans[0]["limits"]["max_members"], 5);
    assert_eq!(plans[0]["limits"]["max_projects"], 3);
    assert_eq!(plans[0]["limits"]["max_storage_mb"], 100);
    assert_eq!(plans[0]["limits"]["requests_per_hour"], 1000);
    assert_eq!(plans[1]["monthly_price_cents"], 1900);
    assert_eq!(plans[1]["currency"], "usd");
    let enterprise = &plans[3];
    assert_eq!(enterprise["self_service"], false);
    assert!(enterprise["monthly_price_cents"].is_null());
    for limit in [
        "max_members",
        "max_projects",
        "max_storage_mb",
        "requests_per_hour",
    ] {
        assert!(enterprise["limits"][limit].is_null(), "{limit}: {body}");
    }
    // The catalogue's self-service flag and the code's rule agree.
    for plan in plans {
        let code = tenantry_public::plans::PlanCode::parse(plan["code"].as_str().unwrap()).unwrap();
        assert_eq!(plan["self_service"], code.is_self_service(), "{plan}");
    }

    // Base host only, no credentials needed; a tenant host does not serve it.
    let t = app.tenant("acme").await;
    assert_eq!(app.get(&t.host, "/api/v1/plans", None).await.status(), 404);
}

#[tokio::test]
async fn billing_signup_starts_free_or_on_a_trial_of_a_paid_plan() {
    let app = spawn_app().await;
    let before = chrono::Utc::now();

    // No plan: free, active, no trial.
    let r = app
        .post_json(BASE, "/api/v1/register", &signup("plain", None, None), None)
        .await;
    let body = expect_json(r, 201).await;
    assert_eq!(body["plan"], "free");
    assert_eq!(body["subscription_status"], "active");
    assert!(body["trial_end"].is_null());
    let row = subscription_row(&app, "plain").await;
    assert_eq!(row.get::<_, String>("plan"), "free");
    assert_eq!(row.get::<_, String>("status"), "active");
    assert_eq!(
        row.get::<_, Option<chrono::DateTime<chrono::Utc>>>("trial_end"),
        None
    );

    // A paid plan (with or without `trial: true`) is a 14-day trial of it.
    for (slug, trial) in [("trial", Some(true)), ("implied", None)] {
        let r = app
            .post_json(
                BASE,
                "/api/v1/register",
                &signup(slug, Some("professional"), trial),
                None,
            )
            .await;
        let body = expect_json(r, 201).await;
        assert_eq!(body["plan"], "professional");
        assert_eq!(body["subscription_status"], "trialing");
        let row = subscription_row(&app, slug).await;
        assert_eq!(row.get::<_, String>("plan"), "professional");
        assert_eq!(row.get::<_, String>("company_plan"), "professional");
        assert_eq!(row.get::<_, String>("status"), "trialing");
        let end: chrono::DateTime<chrono::Utc> = row.get("trial_end");
        let days = (end - before).num_hours();
        assert!((14 * 24..14 * 24 + 1).contains(&days), "{end}");
    }
}

#[tokio::test]
async fn billing_signup_refuses_enterprise_and_contradictory_trials_creating_nothing() {
    let app = spawn_app().await;
    for (plan, trial, field) in [
        (Some("enterprise"), None, "plan"),
        (Some("enterprise"), Some(true), "plan"),
        (Some("starter"), Some(false), "trial"),
        (Some("free"), Some(true), "trial"),
        (None, Some(true), "trial"),
    ] {
        let r = app
            .post_json(BASE, "/api/v1/register", &signup("nope", plan, trial), None)
            .await;
        expect_field_errors(r, 422, &[field]).await;
    }
    app.assert_counts(&[
        ("select count(*) from public.companies", 0),
        ("select count(*) from public.subscriptions", 0),
        ("select count(*) from public.users", 0),
    ])
    .await;
    let r = app
        .post_json(
            BASE,
            "/api/v1/register",
            &signup("nope", Some("enterprise"), None),
            None,
        )
        .await;
    expect_problem(r, 422, "enterprise is arranged with sales").await;
}

#[tokio::test]
async fn billing_every_company_has_one_subscription_that_follows_its_plan() {
    let (app, t) = spawn_tenant("acme").await;
    // An operator setting the plan by hand moves the subscription too, and the reverse.
    app.sql("update public.companies set plan = 'free' where slug = 'acme'")
        .await;
    assert_eq!(
        subscription_row(&app, "acme")
            .await
            .get::<_, String>("plan"),
        "free"
    );
    app.sql_with(
        "update public.subscriptions set plan = 'professional' where company_id = $1::text::uuid",
        &[&t.company_id],
    )
    .await;
    assert_eq!(
        subscription_row(&app, "acme")
            .await
            .get::<_, String>("company_plan"),
        "professional"
    );
}

const SUBSCRIPTION: &str = "/api/v1/organization/subscription";

async fn notices(app: &TestApp, t: &TestTenant) -> i64 {
    app.sql_one_with(
        "select count(*) from public.outbox \
          where payload->>'kind' = 'subscription_notice' and payload->>'to' = $1",
        &[&t.owner_email],
    )
    .await
}

async fn change(app: &TestApp, t: &TestTenant, plan: &str) -> reqwest::Response {
    app.call(
        reqwest::Method::POST,
        &t.host,
        &format!("{SUBSCRIPTION}/change"),
        Some(json!({ "plan": plan })),
        &t.token,
    )
    .await
}

async fn post(app: &TestApp, t: &TestTenant, what: &str) -> reqwest::Response {
    app.call(
        reqwest::Method::POST,
        &t.host,
        &format!("{SUBSCRIPTION}/{what}"),
        None,
        &t.token,
    )
    .await
}

#[tokio::test]
async fn billing_subscription_shows_plan_status_and_usage_beside_each_limit() {
    let (app, t) = spawn_tenant("acme").await;
    app.project(&t, "One").await;
    let admin = app.member(&t, "admin@acme.test", "admin").await;
    let body = expect_json(app.get(&t.host, SUBSCRIPTION, Some(&admin)).await, 200).await;
    // The test sign-up asks for starter: a trial of it.
    assert_eq!(body["plan"], "starter");
    assert_eq!(body["status"], "trialing");
    assert!(body["trial_end"].is_string(), "{body}");
    assert_eq!(body["cancel_at_period_end"], false);
    assert!(body["scheduled_plan"].is_null());
    let usage = &body["usage"];
    assert_eq!(usage["members"], json!({"limit": 25, "used": 2}));
    assert_eq!(usage["projects"], json!({"limit": 25, "used": 1}));
    assert_eq!(
        usage["storage_bytes"],
        json!({"limit": 5120_i64 * 1024 * 1024, "used": 0})
    );
    assert_eq!(
        usage["requests_this_hour"],
        json!({"limit": 10000, "used": 0})
    );
    assert_eq!(
        usage["requests_this_month"],
        json!({"limit": null, "used": 0})
    );
    // The figures are the counts the worker flushed from the rate limiter.
    app.sql_with(
        "insert into public.usage_counters (company_id, granularity, period_start, requests) \
         values ($1::text::uuid, 'hour', date_trunc('hour', now() at time zone 'utc') at time zone 'utc', 7), \
                ($1::text::uuid, 'month', date_trunc('month', now() at time zone 'utc') at time zone 'utc', 42)",
        &[&t.company_id],
    )
    .await;
    let body = expect_json(app.get(&t.host, SUBSCRIPTION, Some(&admin)).await, 200).await;
    assert_eq!(body["usage"]["requests_this_hour"]["used"], 7);
    assert_eq!(body["usage"]["requests_this_month"]["used"], 42);
    let member = app.member(&t, "member@acme.test", "member").await;
    expect_problem(app.get(&t.host, SUBSCRIPTION, Some(&member)).await, 403, "").await;
}

#[tokio::test]
async fn billing_upgrade_applies_at_once_audited_and_emailed() {
    let (app, t) = spawn_tenant("acme").await;
    let body = expect_json(change(&app, &t, "professional").await, 200).await;
    assert_eq!(body["plan"], "professional");
    assert!(body["scheduled_plan"].is_null());
    assert_eq!(
        app.sql_one::<String>("select plan from public.companies where slug = 'acme'")
            .await,
        "professional"
    );
    assert_eq!(
        app.audit_count("tenant_acme", "subscription.plan_changed")
            .await,
        1
    );
    let (before, after) = app
        .audit_change("tenant_acme", "subscription.plan_changed")
        .await;
    assert_eq!(before["plan"], "starter");
    assert_eq!(after["plan"], "professional");
    assert_eq!(notices(&app, &t).await, 1);

    // The new limits apply at once (professional: 250 projects).
    let body = expect_json(app.get(&t.host, SUBSCRIPTION, Some(&t.token)).await, 200).await;
    assert_eq!(body["usage"]["projects"]["limit"], 250);

    // The same plan again changes nothing and records nothing.
    expect_json(change(&app, &t, "professional").await, 200).await;
    assert_eq!(
        app.audit_count("tenant_acme", "subscription.plan_changed")
            .await,
        1
    );
    assert_eq!(notices(&app, &t).await, 1);

    // Enterprise is never self-service; nor is an unknown plan.
    expect_field_errors(change(&app, &t, "enterprise").await, 422, &["plan"]).await;
    expect_field_errors(change(&app, &t, "gold").await, 422, &["plan"]).await;
    // Only the owner.
    let admin = app.member(&t, "admin@acme.test", "admin").await;
    let r = app
        .call(
            reqwest::Method::POST,
            &t.host,
            &format!("{SUBSCRIPTION}/change"),
            Some(json!({"plan": "starter"})),
            &admin,
        )
        .await;
    expect_problem(r, 403, "").await;
}

#[tokio::test]
async fn billing_downgrade_over_the_limits_is_409_listing_each_and_changes_nothing() {
    let (app, t) = spawn_tenant("acme").await;
    for n in 0..5 {
        app.member(&t, &format!("m{n}@acme.test"), "viewer").await;
    }
    for n in 0..4 {
        app.project(&t, &format!("P{n}")).await;
    }
    let body = problem(change(&app, &t, "free").await, 409).await;
    assert!(body["detail"].as_str().unwrap().contains("free"), "{body}");
    assert_field_errors(&body, &["max_members", "max_projects"]);
    assert!(body["errors"]["max_storage_mb"].is_null(), "{body}");
    assert!(body["errors"]["max_members"][0]
        .as_str()
        .unwrap()
        .contains("is 5 on the new plan; the organization uses 6"));
    let body = expect_json(app.get(&t.host, SUBSCRIPTION, Some(&t.token)).await, 200).await;
    assert_eq!(body["plan"], "starter");
    assert!(body["scheduled_plan"].is_null());
    assert_eq!(
        app.audit_count("tenant_acme", "subscription.change_scheduled")
            .await,
        0
    );
    assert_eq!(notices(&app, &t).await, 0);
}

#[tokio::test]
async fn billing_downgrade_that_fits_is_scheduled_for_the_period_end() {
    let (app, t) = spawn_tenant("acme").await;
    let body = expect_json(change(&app, &t, "free").await, 200).await;
    assert_eq!(
        body["plan"], "starter",
        "the plan stays until the period end"
    );
    assert_eq!(body["scheduled_plan"], "free");
    assert_eq!(
        app.sql_one::<String>("select plan from public.companies where slug = 'acme'")
            .await,
        "starter"
    );
    assert_eq!(
        app.audit_count("tenant_acme", "subscription.change_scheduled")
            .await,
        1
    );
    assert_eq!(notices(&app, &t).await, 1);
    // Asking for the current plan drops the scheduled change.
    let body = expect_json(change(&app, &t, "starter").await, 200).await;
    assert!(body["scheduled_plan"].is_null());
    assert_eq!(
        app.audit_count("tenant_acme", "subscription.change_scheduled")
            .await,
        2
    );
}

#[tokio::test]
async fn billing_cancel_at_period_end_and_resume() {
    let (app, t) = spawn_tenant("acme").await;
    let body = expect_json(post(&app, &t, "cancel").await, 200).await;
    assert_eq!(body["cancel_at_period_end"], true);
    assert_eq!(body["plan"], "starter");
    // A repeat changes nothing.
    expect_json(post(&app, &t, "cancel").await, 200).await;
    assert_eq!(
        app.audit_count("tenant_acme", "subscription.cancel_scheduled")
            .await,
        1
    );
    let body = expect_json(post(&app, &t, "resume").await, 200).await;
    assert_eq!(body["cancel_at_period_end"], false);
    assert_eq!(
        app.audit_count("tenant_acme", "subscription.resumed").await,
        1
    );
    assert_eq!(notices(&app, &t).await, 2);
    assert!(
        !app.sql_one::<bool>("select cancel_at_period_end from public.subscriptions")
            .await
    );

    // Free has nothing to cancel.
    app.sql("update public.companies set plan = 'free'").await;
    expect_problem(post(&app, &t, "cancel").await, 409, "free plan").await;
}

const WEBHOOK: &str = "/api/v1/billing/webhook";
const SECRET: &str = "whsec_test_current_0123456789";
const PREVIOUS: &str = "whsec_test_previous_0123456789";

fn sign(secret: &str, t: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

async fn billing_app() -> (TestApp, TestTenant) {
    spawn_tenant_with(
        &[
            ("BILLING_WEBHOOK_SECRET", SECRET),
            ("BILLING_WEBHOOK_PREVIOUS_SECRET", PREVIOUS),
        ],
        "acme",
    )
    .await
}

async fn deliver_signed(app: &TestApp, body: &str, signature: &str) -> reqwest::Response {
    app.request(reqwest::Method::POST, BASE, WEBHOOK)
        .header("Content-Type", "application/json")
        .header("Stripe-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn deliver(app: &TestApp, event: &Value) -> reqwest::Response {
    let body = event.to_string();
    let t = chrono::Utc::now().timestamp();
    deliver_signed(app, &body, &sign(SECRET, t, &body)).await
}

fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": kind, "created": created, "data": {"object": object}})
}

async fn events(app: &TestApp) -> i64 {
    app.count("select count(*) from public.billing_events")
        .await
}

async fn sub(app: &TestApp) -> tokio_postgres::Row {
    app.sql_row_with(
        "select plan, status, provider_customer_id, provider_subscription_id, cancel_at_period_end \
           from public.subscriptions",
        &[],
    )
    .await
}

/// Links the company to customer `cus_1` through a checkout session.
async fn checkout(app: &TestApp, t: &TestTenant, created: i64) {
    let e = event(
        "evt_checkout",
        "checkout.session.completed",
        created,
        json!({"id": "cs_1", "client_reference_id": t.company_id, "customer": "cus_1", "subscription": "sub_1"}),
    );
    let body = expect_json(deliver(app, &e).await, 200).await;
    assert_eq!(body["outcome"], "applied");
}

fn subscription_event(id: &str, created: i64, status: &str, lookup_key: &str) -> Value {
    event(
        id,
        "customer.subscription.updated",
        created,
        json!({"id": "sub_1", "customer": "cus_1", "status": status, "cancel_at_period_end": false,
               "current_period_end": created + 30 * 86400,
               "items": {"data": [{"price": {"lookup_key": lookup_key}}]}}),
    )
}

#[tokio::test]
async fn billing_webhook_applies_signed_events_once_and_in_order() {
    let (app, t) = billing_app().await;
    let now = chrono::Utc::now().timestamp();
    checkout(&app, &t, now - 100).await;
    let row = sub(&app).await;
    assert_eq!(
        row.get::<_, Option<String>>("provider_customer_id")
            .as_deref(),
        Some("cus_1")
    );
    assert_eq!(
        row.get::<_, Option<String>>("provider_subscription_id")
            .as_deref(),
        Some("sub_1")
    );

    // The subscription moves to professional, active.
    let e = subscription_event("evt_2", now - 50, "active", "professional_monthly");
    assert_eq!(
        expect_json(deliver(&app, &e).await, 200).await["outcome"],
        "applied"
    );
    let row = sub(&app).await;
    assert_eq!(row.get::<_, String>("plan"), "professional");
    assert_eq!(row.get::<_, String>("status"), "active");
    assert_eq!(
        app.sql_one::<String>("select plan from public.companies")
            .await,
        "professional"
    );
    assert_eq!(
        app.audit_count("tenant_acme", "subscription.synced").await,
        2
    );

    // Replayed: 200, nothing changes.
    assert_eq!(
        expect_json(deliver(&app, &e).await, 200).await["outcome"],
        "duplicate"
    );
    assert_eq!(events(&app).await, 2);
    assert_eq!(
        app.audit_count("tenant_acme", "subscription.synced").await,
        2
    );

    // An older event arriving late changes nothing (recorded as stale).
    let old = subscription_event("evt_old", now - 80, "active", "starter_monthly");
    assert_eq!(
        expect_json(deliver(&app, &old).await, 200).await["outcome"],
        "stale"
    );
    assert_eq!(sub(&app).await.get::<_, String>("plan"), "professional");
    assert_eq!(
        app.sql_one::<String>("select outcome from public.billing_events where id = 'evt_old'")
            .await,
        "stale"
    );

    // A failed payment: past due, the owner emailed; a paid invoice: active again, recorded.
    let failed = event(
        "evt_fail",
        "invoice.payment_failed",
        now - 40,
        json!({"id": "in_1", "customer": "cus_1", "subscription": "sub_1"}),
    );
    expect_json(deliver(&app, &failed).await, 200).await;
    assert_eq!(sub(&app).await.get::<_, String>("status"), "past_due");
    assert_eq!(notices(&app, &t).await, 1);
    let paid = event(
        "evt_paid",
        "invoice.paid",
        now - 30,
        json!({"id": "in_1", "customer": "cus_1", "subscription": "sub_1", "amount_paid": 9900,
               "currency": "usd", "period_start": now - 30, "period_end": now + 86400 * 30,
               "status_transitions": {"paid_at": now - 30}}),
    );
    expect_json(deliver(&app, &paid).await, 200).await;
    assert_eq!(sub(&app).await.get::<_, String>("status"), "active");
    assert_eq!(
        app.sql_one::<i64>("select amount_paid_cents from public.invoices where id = 'in_1'")
            .await,
        9900
    );
    assert_eq!(app.audit_count("tenant_acme", "invoice.paid").await, 1);

    // Deleted: canceled, back on free.
    let deleted = event(
        "evt_del",
        "customer.subscription.deleted",
        now - 10,
        json!({"id": "sub_1", "customer": "cus_1", "status": "canceled"}),
    );
    expect_json(deliver(&app, &deleted).await, 200).await;
    let row = sub(&app).await;
    assert_eq!(row.get::<_, String>("plan"), "free");
    assert_eq!(row.get::<_, String>("status"), "canceled");

    // Unknown types: 200, ignored, nothing changed.
    let unknown = event("evt_x", "customer.created", now, json!({"id": "cus_9"}));
    assert_eq!(
        expect_json(deliver(&app, &unknown).await, 200).await["outcome"],
        "ignored"
    );
    assert_eq!(sub(&app).await.get::<_, String>("plan"), "free");
}

#[tokio::test]
async fn billing_webhook_refuses_bad_signatures_old_timestamps_and_big_bodies_recording_nothing() {
    let (app, t) = billing_app().await;
    let now = chrono::Utc::now().timestamp();
    let e = event(
        "evt_1",
        "checkout.session.completed",
        now,
        json!({"client_reference_id": t.company_id, "customer": "cus_1"}),
    )
    .to_string();

    // Wrong secret, tampered body, missing or malformed header: 400.
    let r = deliver_signed(&app, &e, &sign("whsec_someone_else_000000", now, &e)).await;
    expect_problem(r, 400, "signature").await;
    let r = deliver_signed(&app, &format!("{e} "), &sign(SECRET, now, &e)).await;
    expect_problem(r, 400, "signature").await;
    for header in ["", "t=1", "nonsense"] {
        let r = deliver_signed(&app, &e, header).await;
        expect_problem(r, 400, "signature").await;
    }
    // Older than 300 seconds: 400.
    let r = deliver_signed(&app, &e, &sign(SECRET, now - 301, &e)).await;
    expect_problem(r, 400, "300 seconds").await;
    // Over 256 KiB: 413.
    let big = "x".repeat(256 * 1024 + 1);
    let r = deliver_signed(&app, &big, &sign(SECRET, now, &big)).await;
    problem(r, 413).await;
    assert_eq!(events(&app).await, 0);
    assert!(sub(&app)
        .await
        .get::<_, Option<String>>("provider_customer_id")
        .is_none());

    // The previous secret still works during a rotation.
    let r = deliver_signed(&app, &e, &sign(PREVIOUS, now, &e)).await;
    assert_eq!(expect_json(r, 200).await["outcome"], "applied");
    assert_eq!(events(&app).await, 1);

    // A tenant host does not serve it.
    let r = app
        .request(reqwest::Method::POST, &t.host, WEBHOOK)
        .header("Stripe-Signature", sign(SECRET, now, &e))
        .body(e.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn billing_webhook_is_not_served_without_a_secret() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let r = deliver_signed(&app, "{}", &sign(SECRET, now, "{}")).await;
    problem(r, 404).await;
}

#[tokio::test]
async fn billing_invoices_list_newest_first_in_keyset_pages() {
    let (app, t) = billing_app().await;
    let now = chrono::Utc::now().timestamp();
    checkout(&app, &t, now - 100).await;
    for (n, paid) in [(1, now - 90), (2, now - 60), (3, now - 30)] {
        let e = event(
            &format!("evt_in_{n}"),
            "invoice.paid",
            paid,
            json!({"id": format!("in_{n}"), "customer": "cus_1", "amount_paid": 1900 * n,
                   "currency": "usd", "status_transitions": {"paid_at": paid}}),
        );
        expect_json(deliver(&app, &e).await, 200).await;
    }
    let admin = app.member(&t, "admin@acme.test", "admin").await;
    let path = "/api/v1/organization/billing/invoices?limit=2";
    let first = expect_json(app.get(&t.host, path, Some(&admin)).await, 200).await;
    assert_eq!(column(&first, "id"), ["in_3", "in_2"]);
    assert_eq!(first["results"][0]["amount_paid_cents"], 5700);
    let next = first["next"].as_str().unwrap();
    let next = next.split_once("/api/v1").unwrap().1;
    let second = expect_json(
        app.get(&t.host, &format!("/api/v1{next}"), Some(&admin))
            .await,
        200,
    )
    .await;
    assert_eq!(column(&second, "id"), ["in_1"]);
    assert!(second["next"].is_null());
    // Another organization sees none of them.
    let other = app.tenant("globex").await;
    let body = expect_json(
        app.get(
            &other.host,
            "/api/v1/organization/billing/invoices",
            Some(&other.token),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(body["results"], json!([]));
    let member = app.member(&t, "member@acme.test", "member").await;
    problem(app.get(&t.host, path, Some(&member)).await, 403).await;
    problem(
        app.get(
            &t.host,
            "/api/v1/organization/billing/invoices?cursor=bogus",
            Some(&admin),
        )
        .await,
        400,
    )
    .await;
}

async fn end_periods(
    app: &TestApp,
    now: chrono::DateTime<chrono::Utc>,
) -> tenantry_public::jobs::Ran<tenantry_tenant::subscription::PeriodEnds> {
    let db = tenantry_public::db::Db::connect(&app.db_url, &Default::default()).unwrap();
    let settings = tenantry_tenant::subscription::PeriodEndSettings {
        links: tenantry_public::links::Links::new(
            tenantry_public::DomainName::parse(BASE).unwrap(),
        ),
        past_due_grace: chrono::Duration::days(7),
    };
    tenantry_tenant::subscription::end_periods(&db, &settings, now)
        .await
        .unwrap()
}

/// The texts of the subscription notices the owner of `t` was sent, oldest first.
async fn notice_texts(app: &TestApp, t: &TestTenant) -> Vec<String> {
    app.sql_rows_with(
        "select payload->>'what' from public.outbox \
          where payload->>'kind' = 'subscription_notice' and payload->>'to' = $1 order by id",
        &[&t.owner_email],
    )
    .await
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn ends(
    ran: tenantry_public::jobs::Ran<tenantry_tenant::subscription::PeriodEnds>,
) -> tenantry_tenant::subscription::PeriodEnds {
    match ran {
        tenantry_public::jobs::Ran::Done(_, ends) => ends,
        tenantry_public::jobs::Ran::NotMine => panic!("the run was not claimed"),
    }
}

#[tokio::test]
async fn billing_expired_trial_moves_to_free_and_writes_answer_402_until_it_fits() {
    let (app, t) = spawn_tenant("acme").await;
    for n in 0..5 {
        app.member(&t, &format!("m{n}@acme.test"), "viewer").await;
    }
    let projects: Vec<String> = {
        let mut ids = Vec::new();
        for n in 0..4 {
            ids.push(app.project(&t, &format!("P{n}")).await);
        }
        ids
    };
    let now = chrono::Utc::now();
    // Not yet: the trial runs 14 days.
    let ran = ends(end_periods(&app, now).await);
    assert_eq!(ran.moved_to_free, 0);
    // The next day, after the trial's end.
    let later = now + chrono::Duration::days(15);
    let ran = ends(end_periods(&app, later).await);
    assert_eq!((ran.moved_to_free, ran.payment_required), (1, 1));
    // Claimed once per day.
    assert!(matches!(
        end_periods(&app, later).await,
        tenantry_public::jobs::Ran::NotMine
    ));
    let row = app
        .sql_row_with(
            "select plan, status, trial_end, payment_required from public.subscriptions",
            &[],
        )
        .await;
    assert_eq!(row.get::<_, String>(0), "free");
    assert_eq!(row.get::<_, String>(1), "active");
    assert!(row
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>(2)
        .is_none());
    assert!(row.get::<_, bool>(3));
    assert_eq!(
        app.audit_count("tenant_acme", "subscription.period_ended")
            .await,
        1
    );
    // The owner is told, with why writes are now refused.
    let texts = notice_texts(&app, &t).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("trial"), "{}", texts[0]);
    assert!(texts[0].contains("402 Payment Required"), "{}", texts[0]);

    // Writes answer 402 (nothing created); reads and deletions go on.
    let r = app
        .post_project(&t.host, &t.token, json!({"name": "Blocked"}))
        .await;
    let body = problem(r, 402).await;
    assert!(body["type"].as_str().unwrap().ends_with("payment-required"));
    assert_eq!(
        app.count("select count(*) from tenant_acme.projects").await,
        4
    );
    let r = app
        .send_json(
            reqwest::Method::PATCH,
            &t.host,
            "/api/v1/organization/settings",
            &json!({"reminder_lead_hours": 12}),
            Some(&t.token),
        )
        .await;
    problem(r, 402).await;
    expect_json(
        app.get(&t.host, "/api/v1/projects", Some(&t.token)).await,
        200,
    )
    .await;
    let r = app
        .delete(
            &t.host,
            &format!("/api/v1/projects/{}", projects[0]),
            &t.token,
        )
        .await;
    assert_eq!(r.status(), 204);
    // Still over free's members: still read-only.
    let r = app
        .post_project(&t.host, &t.token, json!({"name": "Blocked"}))
        .await;
    problem(r, 402).await;
    let member = app.user_id("m0@acme.test").await;
    let r = app
        .delete(&t.host, &format!("/api/v1/users/{member}"), &t.token)
        .await;
    assert_eq!(r.status(), 204);
    // It fits free now: the state is lifted, and free's own limits apply (3 projects).
    let r = app
        .post_project(&t.host, &t.token, json!({"name": "Fourth"}))
        .await;
    let body = problem(r, 403).await;
    assert!(body["type"].as_str().unwrap().ends_with("plan-limit"));
    assert!(
        !app.sql_one::<bool>("select payment_required from public.subscriptions")
            .await
    );
}

#[tokio::test]
async fn billing_period_end_applies_scheduled_changes_and_cancellations() {
    let app = spawn_app().await;
    let a = app.tenant("acme").await;
    let b = app.tenant("globex").await;
    expect_json(change(&app, &a, "free").await, 200).await;
    expect_json(post(&app, &b, "cancel").await, 200).await;
    let later = chrono::Utc::now() + chrono::Duration::days(15);
    let ran = ends(end_periods(&app, later).await);
    assert_eq!((ran.changes_applied, ran.moved_to_free), (1, 1));
    let row = |slug: &'static str| {
        let app = &app;
        async move {
            app.sql_row_with(
                "select s.plan, s.status, s.scheduled_plan, s.cancel_at_period_end, s.payment_required \
                   from public.subscriptions s join public.companies c on c.id = s.company_id \
                  where c.slug = $1",
                &[&slug],
            )
            .await
        }
    };
    let acme = row("acme").await;
    assert_eq!(acme.get::<_, String>(0), "free");
    assert_eq!(acme.get::<_, String>(1), "active");
    assert!(acme.get::<_, Option<String>>(2).is_none());
    let globex = row("globex").await;
    assert_eq!(globex.get::<_, String>(0), "free");
    assert_eq!(globex.get::<_, String>(1), "canceled");
    assert!(!globex.get::<_, bool>(3));
    assert!(!globex.get::<_, bool>(4), "it fits free");
    assert_eq!(
        app.sql_one::<String>("select plan from public.companies where slug = 'acme'")
            .await,
        "free"
    );
    // Each owner is told what took effect (after the email of their own change).
    let acme = notice_texts(&app, &a).await;
    assert_eq!(acme.len(), 2, "{acme:?}");
    assert!(
        acme[1].contains("scheduled plan change took effect"),
        "{}",
        acme[1]
    );
    let globex = notice_texts(&app, &b).await;
    assert_eq!(globex.len(), 2, "{globex:?}");
    assert!(
        globex[1].contains("cancelled subscription ended"),
        "{}",
        globex[1]
    );
    assert!(!globex[1].contains("402"), "it fits free: {}", globex[1]);
}

/// An organization over free's limits: 5 more members and 4 projects (free allows 3 of each).
async fn fill_over_free(app: &TestApp, t: &TestTenant) {
    for n in 0..5 {
        app.member(t, &format!("m{n}@acme.test"), "viewer").await;
    }
    for n in 0..4 {
        app.project(t, &format!("P{n}")).await;
    }
}

async fn past_due_state(app: &TestApp) -> (String, bool, bool, bool) {
    let row = app
        .sql_row_with(
            "select status, past_due_since is not null, past_due_locked_at is not null, \
                    payment_required from public.subscriptions",
            &[],
        )
        .await;
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

fn failed_payment(created: i64) -> Value {
    event(
        "evt_fail",
        "invoice.payment_failed",
        created,
        json!({"id": "in_1", "customer": "cus_1", "subscription": "sub_1"}),
    )
}

fn paid_invoice(created: i64) -> Value {
    event(
        "evt_paid",
        "invoice.paid",
        created,
        json!({"id": "in_1", "customer": "cus_1", "subscription": "sub_1", "amount_paid": 1900,
               "currency": "usd", "status_transitions": {"paid_at": created}}),
    )
}

#[tokio::test]
async fn billing_past_due_beyond_the_grace_is_read_only_until_the_invoice_is_paid() {
    let (app, t) = billing_app().await;
    let now = chrono::Utc::now();
    let ts = now.timestamp();
    checkout(&app, &t, ts - 100).await;
    expect_json(deliver(&app, &failed_payment(ts - 40)).await, 200).await;
    assert_eq!(
        past_due_state(&app).await,
        ("past_due".into(), true, false, false)
    );
    assert_eq!(notices(&app, &t).await, 1);

    // Within the grace (7 days): nothing locked, writes go on.
    let ran = ends(end_periods(&app, now + chrono::Duration::days(6)).await);
    assert_eq!(ran.past_due_locked, 0);
    let r = app
        .post_project(&t.host, &t.token, json!({"name": "Within grace"}))
        .await;
    assert_eq!(r.status(), 201);

    // Past it: read-only, audited, the owner told.
    let ran = ends(end_periods(&app, now + chrono::Duration::days(8)).await);
    assert_eq!(ran.past_due_locked, 1);
    assert_eq!(ran.emails.len(), 1);
    assert_eq!(
        past_due_state(&app).await,
        ("past_due".into(), true, true, false)
    );
    assert_eq!(
        app.audit_count("tenant_acme", "subscription.past_due_locked")
            .await,
        1
    );
    let texts = notice_texts(&app, &t).await;
    assert_eq!(texts.len(), 2);
    assert!(texts[1].contains("read-only"), "{}", texts[1]);
    assert!(texts[1].contains("402"), "{}", texts[1]);
    let r = app
        .post_project(&t.host, &t.token, json!({"name": "Blocked"}))
        .await;
    let body = problem(r, 402).await;
    assert!(body["type"].as_str().unwrap().ends_with("payment-required"));
    assert!(
        body["detail"].as_str().unwrap().contains("payment"),
        "{body}"
    );
    assert_eq!(
        app.count("select count(*) from tenant_acme.projects").await,
        1
    );
    expect_json(
        app.get(&t.host, "/api/v1/projects", Some(&t.token)).await,
        200,
    )
    .await;
    // Unlike the over-the-limits state, deleting does not lift it.
    let project: String = app
        .sql_one("select id::text from tenant_acme.projects")
        .await;
    let r = app
        .delete(&t.host, &format!("/api/v1/projects/{project}"), &t.token)
        .await;
    assert_eq!(r.status(), 204);
    let r = app
        .post_project(&t.host, &t.token, json!({"name": "Still blocked"}))
        .await;
    problem(r, 402).await;

    // The next day's run locks nothing again.
    let ran = ends(end_periods(&app, now + chrono::Duration::days(9)).await);
    assert_eq!(ran.past_due_locked, 0);

    // The invoice is paid: active, the lock lifted, the owner told, writes allowed again.
    expect_json(deliver(&app, &paid_invoice(ts - 30)).await, 200).await;
    assert_eq!(
        past_due_state(&app).await,
        ("active".into(), false, false, false)
    );
    let texts = notice_texts(&app, &t).await;
    assert_eq!(texts.len(), 3);
    assert!(texts[2].contains("no longer read-only"), "{}", texts[2]);
    let r = app
        .post_project(&t.host, &t.token, json!({"name": "Paid up"}))
        .await;
    assert_eq!(r.status(), 201);
    let lifted = app
        .sql_one::<i64>(
            "select count(*) from tenant_acme.audit_log where action = 'subscription.synced' \
              and before->>'past_due_locked_at' is not null and after->>'past_due_locked_at' is null",
        )
        .await;
    assert_eq!(lifted, 1);
}

/// The two read-only states are kept apart: a paid invoice lifts the past-due lock only; an
/// organization still over free's limits stays read-only for that reason.
#[tokio::test]
async fn billing_invoice_paid_does_not_lift_the_over_free_limits_state() {
    let (app, t) = billing_app().await;
    fill_over_free(&app, &t).await;
    let now = chrono::Utc::now();
    let ts = now.timestamp();
    // The trial ends on free over its limits.
    let ran = ends(end_periods(&app, now + chrono::Duration::days(15)).await);
    assert_eq!((ran.moved_to_free, ran.payment_required), (1, 1));
    let texts = notice_texts(&app, &t).await;
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("trial"), "{}", texts[0]);
    assert!(texts[0].contains("402"), "{}", texts[0]);
    assert!(texts[0].contains("max_members"), "{}", texts[0]);

    // A checkout, then the first payment fails: past due on top of it.
    checkout(&app, &t, ts - 100).await;
    expect_json(deliver(&app, &failed_payment(ts - 40)).await, 200).await;
    let ran = ends(end_periods(&app, now + chrono::Duration::days(16)).await);
    assert_eq!(ran.past_due_locked, 1);
    assert_eq!(
        past_due_state(&app).await,
        ("past_due".into(), true, true, true)
    );
    let r = app
        .post_project(&t.host, &t.token, json!({"name": "Blocked"}))
        .await;
    let body = problem(r, 402).await;
    assert!(
        body["detail"].as_str().unwrap().contains("grace period"),
        "{body}"
    );

    // Paid: the past-due lock goes, the over-the-limits state stays (and says why).
    expect_json(deliver(&app, &paid_invoice(ts - 30)).await, 200).await;
    assert_eq!(
        past_due_state(&app).await,
        ("active".into(), false, false, true)
    );
    let texts = notice_texts(&app, &t).await;
    assert!(
        texts.last().unwrap().contains("stays read-only"),
        "{texts:?}"
    );
    let r = app
        .post_project(&t.host, &t.token, json!({"name": "Still over"}))
        .await;
    let body = problem(r, 402).await;
    assert!(
        body["detail"].as_str().unwrap().contains("max_members"),
        "{body}"
    );
    assert_eq!(
        app.count("select count(*) from tenant_acme.projects").await,
        4
    );
}

/// A subscription the provider deletes ends on free like an expired trial: over free's limits,
/// writes answer 402; the owner is told.
#[tokio::test]
async fn billing_subscription_deleted_over_free_limits_is_read_only() {
    let (app, t) = billing_app().await;
    fill_over_free(&app, &t).await;
    let ts = chrono::Utc::now().timestamp();
    checkout(&app, &t, ts - 100).await;
    let deleted = event(
        "evt_del",
        "customer.subscription.deleted",
        ts - 10,
        json!({"id": "sub_1", "customer": "cus_1", "status": "canceled"}),
    );
    expect_json(deliver(&app, &deleted).await, 200).await;
    assert_eq!(
        past_due_state(&app).await,
        ("canceled".into(), false, false, true)
    );
    let texts = notice_texts(&app, &t).await;
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("402"), "{}", texts[0]);
    let r = app
        .post_project(&t.host, &t.token, json!({"name": "Blocked"}))
        .await;
    problem(r, 402).await;
}

#[tokio::test]
async fn billing_checkout_for_a_customer_linked_elsewhere_is_a_conflict_applying_nothing() {
    let (app, t) = billing_app().await;
    let other = app.tenant("globex").await;
    let ts = chrono::Utc::now().timestamp();
    checkout(&app, &t, ts - 100).await;
    let audits_before = app
        .audit_count("tenant_globex", "subscription.synced")
        .await;

    // globex's checkout names acme's customer: 200 (retrying cannot fix it), nothing applied.
    let e = event(
        "evt_checkout_globex",
        "checkout.session.completed",
        ts - 50,
        json!({"id": "cs_2", "client_reference_id": other.company_id, "customer": "cus_1",
               "subscription": "sub_2"}),
    );
    let body = expect_json(deliver(&app, &e).await, 200).await;
    assert_eq!(body["outcome"], "conflict");
    let globex = app
        .sql_row_with(
            "select s.provider_customer_id, s.provider_subscription_id, s.last_event_at \
               from public.subscriptions s join public.companies c on c.id = s.company_id \
              where c.slug = 'globex'",
            &[],
        )
        .await;
    assert!(globex.get::<_, Option<String>>(0).is_none());
    assert!(globex.get::<_, Option<String>>(1).is_none());
    assert!(globex
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>(2)
        .is_none());
    assert_eq!(
        app.sql_one::<String>(
            "select outcome from public.billing_events where id = 'evt_checkout_globex'"
        )
        .await,
        "conflict"
    );
    assert_eq!(
        app.audit_count("tenant_globex", "subscription.synced")
            .await,
        audits_before
    );
    // acme keeps its customer.
    assert_eq!(
        app.sql_one::<String>(
            "select s.provider_customer_id from public.subscriptions s \
               join public.companies c on c.id = s.company_id where c.slug = 'acme'"
        )
        .await,
        "cus_1"
    );

    // Resent before anything was sorted out: still a conflict, still nothing applied.
    let body = expect_json(deliver(&app, &e).await, 200).await;
    assert_eq!(body["outcome"], "conflict");
    assert_eq!(
        app.count("select count(*) from public.billing_events where id = 'evt_checkout_globex'")
            .await,
        1
    );

    // Once an operator unlinks it from acme, the provider's resend of the event is applied.
    app.sql(
        "update public.subscriptions set provider_customer_id = null, provider_subscription_id = null \
          where company_id = (select id from public.companies where slug = 'acme')",
    )
    .await;
    let body = expect_json(deliver(&app, &e).await, 200).await;
    assert_eq!(body["outcome"], "applied");
    assert_eq!(
        app.sql_one::<String>(
            "select s.provider_customer_id from public.subscriptions s \
               join public.companies c on c.id = s.company_id where c.slug = 'globex'"
        )
        .await,
        "cus_1"
    );
    // And a further resend is a duplicate.
    let body = expect_json(deliver(&app, &e).await, 200).await;
    assert_eq!(body["outcome"], "duplicate");
}

#[tokio::test]
async fn billing_trial_reminder_is_sent_once_three_days_before_the_end() {
    let (app, t) = spawn_tenant("acme").await;
    let now = chrono::Utc::now();
    let day = chrono::Duration::days(1);
    // The trial ends 14 days from sign-up: 4 days before, no reminder yet.
    let ran = ends(end_periods(&app, now + day * 10).await);
    assert_eq!(ran.trial_reminders, 0);
    let ran = ends(end_periods(&app, now + day * 11 + chrono::Duration::hours(12)).await);
    assert_eq!(ran.trial_reminders, 1);
    let texts = notice_texts(&app, &t).await;
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("trial"), "{}", texts[0]);
    assert!(texts[0].contains("ends on"), "{}", texts[0]);
    // The next day: not again for the same trial.
    let ran = ends(end_periods(&app, now + day * 12 + chrono::Duration::hours(12)).await);
    assert_eq!(ran.trial_reminders, 0);
    assert_eq!(notice_texts(&app, &t).await.len(), 1);
}
