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
