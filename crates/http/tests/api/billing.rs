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
        json!({"limit": 10000, "used": null})
    );
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
    assert_eq!(app.audit_count("tenant_acme", "subscription.change_scheduled").await, 0);
    assert_eq!(notices(&app, &t).await, 0);
}

#[tokio::test]
async fn billing_downgrade_that_fits_is_scheduled_for_the_period_end() {
    let (app, t) = spawn_tenant("acme").await;
    let body = expect_json(change(&app, &t, "free").await, 200).await;
    assert_eq!(body["plan"], "starter", "the plan stays until the period end");
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
    assert_eq!(app.audit_count("tenant_acme", "subscription.resumed").await, 1);
    assert_eq!(notices(&app, &t).await, 2);
    assert!(!app
        .sql_one::<bool>("select cancel_at_period_end from public.subscriptions")
        .await);

    // Free has nothing to cancel.
    app.sql("update public.companies set plan = 'free'").await;
    expect_problem(post(&app, &t, "cancel").await, 409, "free plan").await;
}
