//! The real `tenantctl` binary against a fresh database: exit codes, output and database state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn tenantctl(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenantctl"))
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("RUST_LOG")
        .env_remove("BASE_DOMAIN")
        .output()
        .expect("run tenantctl")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(url: &str, sql: &str) -> T {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

const CREATE: &[&str] = &[
    "tenant",
    "create",
    "--name",
    "Acme Inc",
    "--slug",
    "acme",
    "--owner-email",
    "owner@acme.test",
    "--owner-password",
    "demo-password-acme",
    "--plan",
    "starter",
];

#[tokio::test]
async fn tenant_lifecycle_and_migrations() {
    let url = tenantry_testkit::fresh_database().await.url;

    // Before the public schema exists, tenant commands say what to run.
    let o = tenantctl(&url, CREATE);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("migrate-schemas"), "{:?}", text(&o));

    let o = tenantctl(&url, &["migrate-schemas"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o)
            .0
            .contains("summary: 1 schemas (public + 0 tenants): migrated 1"),
        "{:?}",
        text(&o)
    );

    let o = tenantctl(&url, CREATE);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("created acme"));
    assert_eq!(
        one::<String>(&url, "select domain from public.domains").await,
        "acme.localhost"
    );

    let o = tenantctl(&url, CREATE);
    assert!(!o.status.success(), "a second create of one slug fails");
    let mut again = CREATE.to_vec();
    again.push("--exists-ok");
    assert!(tenantctl(&url, &again).status.success());
    assert_eq!(
        one::<i64>(&url, "select count(*) from public.companies").await,
        1
    );

    let o = tenantctl(&url, &["tenant", "list", "--json"]);
    assert!(o.status.success());
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json list");
    assert_eq!(list[0]["slug"], "acme");
    assert_eq!(list[0]["status"], "active");
    assert_eq!(list[0]["plan"], "starter");
    assert_eq!(list.as_array().unwrap().len(), 1);

    assert!(tenantctl(&url, &["tenant", "suspend", "acme"])
        .status
        .success());
    assert_eq!(
        one::<String>(&url, "select status from public.companies").await,
        "suspended"
    );
    assert!(tenantctl(&url, &["tenant", "activate", "acme"])
        .status
        .success());
    assert_eq!(
        one::<String>(&url, "select status from public.companies").await,
        "active"
    );
    assert!(!tenantctl(&url, &["tenant", "suspend", "nobody"])
        .status
        .success());

    assert!(tenantctl(&url, &["migrate-schemas", "--check"])
        .status
        .success());
    one::<i64>(&url, "with u as (update public.companies set schema_version = 0 returning 1) select count(*) from u").await;
    let o = tenantctl(&url, &["migrate-schemas", "--check"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("acme"), "{:?}", text(&o));
    let o = tenantctl(&url, &["migrate-schemas", "--jobs", "2"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(tenantctl(&url, &["migrate-schemas", "--check"])
        .status
        .success());

    let o = tenantctl(&url, &["tenant", "drop", "acme"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("--yes"));
    assert_eq!(
        one::<i64>(
            &url,
            "select count(*) from pg_namespace where nspname = 'tenant_acme'"
        )
        .await,
        1
    );
    assert!(tenantctl(&url, &["tenant", "drop", "acme", "--yes"])
        .status
        .success());
    assert_eq!(
        one::<i64>(
            &url,
            "select count(*) from pg_namespace where nspname = 'tenant_acme'"
        )
        .await,
        0
    );
    assert_eq!(
        one::<i64>(&url, "select count(*) from public.companies").await,
        0
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_the_flag_named() {
    let url = tenantry_testkit::fresh_database().await.url;
    assert!(tenantctl(&url, &["migrate-schemas"]).status.success());
    let mut bad = CREATE.to_vec();
    bad[5] = "Bad_Slug";
    let o = tenantctl(&url, &bad);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("--slug"), "{:?}", text(&o));
    let o = tenantctl(&url, &["migrate-schemas", "--tenant", "nobody"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("nobody"));
    let o = tenantctl(&url, &["migrate-schemas", "--jobs", "0"]);
    assert!(!o.status.success());
    assert_eq!(
        one::<i64>(&url, "select count(*) from public.companies").await,
        0
    );

    let o = Command::new(env!("CARGO_BIN_EXE_tenantctl"))
        .args(["migrate-schemas"])
        .env_remove("DATABASE_URL")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).1.contains("DATABASE_URL"), "{:?}", text(&o));
}
