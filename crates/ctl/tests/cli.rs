//! The real `tenantctl` binary against a fresh database: exit codes, output and database state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

/// `tenantctl` with only the environment the test gives it. It runs in the system temp directory
/// so that no `.env` file of the workspace (dotenvy searches the working directory and its
/// parents) can add DATABASE_URL, BASE_DOMAIN or anything else behind the test's back.
fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
    c.args(args)
        .current_dir(std::env::temp_dir())
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env_remove("BASE_DOMAIN")
        .env_remove("TENANTCTL_OWNER_PASSWORD");
    c
}

fn tenantctl(url: &str, args: &[&str]) -> Output {
    command(args)
        .env("DATABASE_URL", url)
        .output()
        .expect("run tenantctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "expected success, got {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

#[track_caller]
fn assert_fails(o: &Output) {
    assert!(
        !o.status.success(),
        "expected failure, got {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(url: &str, sql: &str) -> T {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

async fn schema_exists(url: &str, schema: &str) -> bool {
    one::<bool>(
        url,
        &format!("select exists (select 1 from pg_namespace where nspname = '{schema}')"),
    )
    .await
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

fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = base.to_vec();
    v.extend_from_slice(extra);
    v
}

#[tokio::test]
async fn tenant_lifecycle_and_migrations() {
    let url = tenantry_testkit::fresh_database().await.url;

    let o = tenantctl(&url, &["migrate-schemas"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("summary:"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("summary: 1 schemas (public + 0 tenants): migrated 1"),
        "{}",
        stdout(&o)
    );
    assert!(one::<bool>(&url, "select to_regclass('public.companies') is not null").await);

    // Create.
    let o = tenantctl(&url, CREATE);
    assert_ok(&o);
    assert!(stdout(&o).contains("created acme"), "{}", stdout(&o));
    assert_eq!(
        one::<String>(&url, "select domain from public.domains").await,
        "acme.localhost"
    );
    assert_eq!(
        one::<String>(
            &url,
            "select status || ' ' || plan || ' ' || schema_name from public.companies"
        )
        .await,
        "active starter tenant_acme"
    );
    assert!(schema_exists(&url, "tenant_acme").await);
    let id: String = one(&url, "select id::text from public.companies").await;

    // Again: refused without --exists-ok, a no-op with it.
    let o = tenantctl(&url, CREATE);
    assert_fails(&o);
    assert!(stderr(&o).contains("taken"), "{}", stderr(&o));
    let o = tenantctl(&url, &with(CREATE, &["--exists-ok"]));
    assert_ok(&o);
    assert!(stdout(&o).contains("already exists"), "{}", stdout(&o));
    assert_eq!(
        one::<i64>(&url, "select count(*) from public.companies").await,
        1
    );
    assert_eq!(
        one::<String>(&url, "select id::text from public.companies").await,
        id,
        "--exists-ok changed nothing"
    );

    // List.
    let o = tenantctl(&url, &["tenant", "list", "--json"]);
    assert_ok(&o);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a JSON list");
    let list = list.as_array().expect("a JSON array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["slug"], "acme");
    assert_eq!(list[0]["status"], "active");
    assert_eq!(list[0]["plan"], "starter");
    assert_eq!(list[0]["schema"], "tenant_acme");
    assert_eq!(
        list[0]["schema_version"],
        one::<i32>(&url, "select schema_version from public.companies").await
    );

    // Suspend and activate.
    assert_ok(&tenantctl(&url, &["tenant", "suspend", "acme"]));
    assert_eq!(
        one::<String>(
            &url,
            "select status from public.companies where slug = 'acme'"
        )
        .await,
        "suspended"
    );
    let o = tenantctl(&url, &["tenant", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["status"], "suspended");
    assert_ok(&tenantctl(&url, &["tenant", "activate", "acme"]));
    assert_eq!(
        one::<String>(
            &url,
            "select status from public.companies where slug = 'acme'"
        )
        .await,
        "active"
    );
    assert_fails(&tenantctl(&url, &["tenant", "suspend", "nobody"]));

    // --check: clean, then behind.
    let o = tenantctl(&url, &["migrate-schemas", "--check"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("summary:"));
    one::<i64>(
        &url,
        "with u as (update public.companies set schema_version = 0 returning 1) \
         select count(*) from u",
    )
    .await;
    let o = tenantctl(&url, &["migrate-schemas", "--check"]);
    assert_fails(&o);
    assert!(stderr(&o).contains("acme"), "{}", stderr(&o));
    assert_eq!(
        one::<i32>(&url, "select schema_version from public.companies").await,
        0,
        "--check changed nothing"
    );
    // A real run repairs it.
    let o = tenantctl(&url, &["migrate-schemas", "--jobs", "2"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("summary:"));
    assert_ok(&tenantctl(&url, &["migrate-schemas", "--check"]));

    // Drop: refused without --yes, done with it.
    let o = tenantctl(&url, &["tenant", "drop", "acme"]);
    assert_fails(&o);
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert!(schema_exists(&url, "tenant_acme").await);
    assert_eq!(
        one::<i64>(&url, "select count(*) from public.companies").await,
        1
    );
    let o = tenantctl(&url, &["tenant", "drop", "acme", "--yes"]);
    assert_ok(&o);
    assert!(!schema_exists(&url, "tenant_acme").await);
    assert_eq!(
        one::<i64>(&url, "select count(*) from public.companies").await,
        0
    );
    assert_eq!(
        one::<i64>(&url, "select count(*) from public.domains").await,
        0
    );
    // Dropping it again names the problem.
    let o = tenantctl(&url, &["tenant", "drop", "acme", "--yes"]);
    assert_fails(&o);
    assert!(stderr(&o).contains("acme"), "{}", stderr(&o));
}

#[tokio::test]
async fn tenant_commands_need_a_migrated_public_schema() {
    let url = tenantry_testkit::fresh_database().await.url;
    for args in [CREATE, &["tenant", "list", "--json"][..]] {
        let o = tenantctl(&url, args);
        assert_fails(&o);
        assert!(stderr(&o).contains("migrate-schemas"), "{}", stderr(&o));
    }
    // `--check` reports and changes nothing either.
    let o = tenantctl(&url, &["migrate-schemas", "--check"]);
    assert_fails(&o);
    // Nothing was created: public was not migrated behind the operator's back.
    assert!(
        one::<bool>(
            &url,
            "select to_regclass('public.refinery_schema_history') is null \
                and to_regclass('public.companies') is null"
        )
        .await
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_the_flag_named() {
    let url = tenantry_testkit::fresh_database().await.url;
    assert_ok(&tenantctl(&url, &["migrate-schemas"]));

    let mut bad = CREATE.to_vec();
    bad[5] = "Bad_Slug";
    let o = tenantctl(&url, &bad);
    assert_fails(&o);
    assert!(stderr(&o).contains("--slug"), "{}", stderr(&o));

    let mut bad = CREATE.to_vec();
    bad[9] = "short";
    let o = tenantctl(&url, &bad);
    assert_fails(&o);
    assert!(stderr(&o).contains("--owner-password"), "{}", stderr(&o));

    let o = tenantctl(&url, &["migrate-schemas", "--tenant", "nobody"]);
    assert_fails(&o);
    assert!(stderr(&o).contains("nobody"), "{}", stderr(&o));
    let o = tenantctl(&url, &["migrate-schemas", "--jobs", "0"]);
    assert_fails(&o);
    assert!(stderr(&o).contains("--jobs"), "{}", stderr(&o));

    assert_eq!(
        one::<i64>(&url, "select count(*) from public.companies").await,
        0
    );
    assert!(!schema_exists(&url, "tenant_bad_slug").await);
}

#[test]
fn a_missing_database_url_is_refused() {
    let o = command(&["migrate-schemas"])
        .output()
        .expect("run tenantctl");
    assert_fails(&o);
    assert!(stderr(&o).contains("DATABASE_URL"), "{}", stderr(&o));
    let o = command(&["tenant", "list"])
        .output()
        .expect("run tenantctl");
    assert_fails(&o);
    assert!(stderr(&o).contains("DATABASE_URL"), "{}", stderr(&o));
}

#[test]
fn an_unreachable_database_is_named_in_the_error() {
    let url = tenantry_testkit::with_database(
        &tenantry_testkit::admin_url(),
        "no_such_database_for_tenantctl",
    );
    let o = tenantctl(&url, &["migrate-schemas"]);
    assert_fails(&o);
    assert!(
        stderr(&o).contains("no_such_database_for_tenantctl"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn user_deactivate_ends_sessions_and_activate_restores_the_account() {
    let url = tenantry_testkit::fresh_database().await.url;
    assert_ok(&tenantctl(&url, &["migrate-schemas"]));
    assert_ok(&tenantctl(&url, CREATE));
    // Two open sessions for the owner.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "insert into public.sessions (id, user_id, expires_at) \
             select gen_random_uuid(), id, now() + interval '1 day' from public.users, generate_series(1, 2)",
        )
        .await
        .unwrap();

    let o = tenantctl(&url, &["user", "deactivate", "OWNER@acme.test"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("2 session(s) ended"), "{}", stdout(&o));
    assert!(!one::<bool>(&url, "select is_active from public.users").await);
    assert_eq!(
        one::<i64>(
            &url,
            "select count(*) from public.sessions where revoked_at is null"
        )
        .await,
        0
    );

    let o = tenantctl(&url, &["user", "activate", "owner@acme.test"]);
    assert_ok(&o);
    assert!(one::<bool>(&url, "select is_active from public.users").await);

    let o = tenantctl(&url, &["user", "deactivate", "nobody@acme.test"]);
    assert_fails(&o);
    assert!(
        stderr(&o).contains("no account has the email"),
        "{}",
        stderr(&o)
    );
}
