//! Tenant crate against a real PostgreSQL: the binding invariant, pool exhaustion,
//! migrate-schemas (no-op, check, failure isolation, concurrent runs) and provisioning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use deadpool_postgres::Pool;
use std::time::{Duration, Instant};
use tenantry_public::db::{self, Db, DbError, PoolSettings};
use tenantry_public::plans::PlanCode;
use tenantry_public::{DomainName, Email, Password, Slug};
use tenantry_tenant::migrate::{migrate_schemas, MigrateOptions, Outcome, RunError, Summary};
use tenantry_tenant::projects::{self, NewProject, ProjectStatus};
use tenantry_tenant::provision::{drop_tenant, provision, NewTenant, ProvisionError, Provisioned};
use tenantry_tenant::{tenant_head, TenantConn, TenantDb};

struct Env {
    db: Db,
    /// A raw pool of the test's own for assertions; it is not the one under test.
    check: Pool,
    url: String,
}

async fn env_with(settings: PoolSettings) -> Env {
    let database = tenantry_testkit::fresh_database().await;
    let db = Db::connect(&database.url, &settings).unwrap();
    let check = db::pool(&database.url, &PoolSettings::default()).unwrap();
    let summary = migrate(&db, MigrateOptions::default()).await;
    assert!(summary.ok());
    Env {
        db,
        check,
        url: database.url,
    }
}

async fn env() -> Env {
    env_with(PoolSettings::default()).await
}

async fn migrate(db: &Db, options: MigrateOptions) -> Summary {
    migrate_schemas(db, &options, &|_, _| {}).await.unwrap()
}

fn new_tenant(slug: &str) -> NewTenant {
    NewTenant {
        name: format!("{slug} Inc"),
        slug: Slug::parse(slug).unwrap(),
        plan: PlanCode::Free,
        owner_email: Email::parse(&format!("owner@{slug}.test")).unwrap(),
        owner_password: Password::parse(&format!("password-of-{slug}")).unwrap(),
        owner_full_name: String::new(),
    }
}

fn base() -> DomainName {
    DomainName::parse("example.test").unwrap()
}

async fn tenant(env: &Env, slug: &str) -> Provisioned {
    provision(&env.db, &base(), new_tenant(slug)).await.unwrap()
}

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(env: &Env, sql: &str) -> T {
    env.check
        .get()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .expect(sql)
        .get(0)
}

async fn exec(env: &Env, sql: &str) {
    env.check
        .get()
        .await
        .unwrap()
        .batch_execute(sql)
        .await
        .expect(sql);
}

fn schema_slug(slug: &str) -> Slug {
    Slug::parse(slug).unwrap()
}

async fn marker(env: &Env, t: &Provisioned, name: &str) {
    let conn = TenantConn::acquire(&env.db, &t.company.schema_name)
        .await
        .unwrap();
    projects::create(
        &conn,
        &NewProject {
            name: name.into(),
            description: String::new(),
            status: ProjectStatus::Planned,
            start_date: None,
            end_date: None,
            owner_id: t.owner.id,
        },
    )
    .await
    .unwrap();
}

/// The search_path the next public checkout of a pool of one sees.
async fn next_path(env: &Env) -> String {
    let conn = env.db.public().await.unwrap();
    conn.query_one("show search_path", &[])
        .await
        .unwrap()
        .get(0)
}

const DEFAULT_PATH: &str = "\"$user\", public";

fn pool_of_one() -> PoolSettings {
    PoolSettings {
        max_size: 1,
        ..PoolSettings::default()
    }
}

#[tokio::test]
async fn a_bound_connection_sees_only_its_schema() {
    let env = env_with(pool_of_one()).await;
    let mut tenants = Vec::new();
    for i in 0..20 {
        let t = tenant(&env, &format!("t{i:02}")).await;
        marker(&env, &t, &format!("marker-{i}")).await;
        tenants.push(t);
    }
    // One connection, rebound 20 times in a row: each binding sees exactly its own marker.
    for round in 0..2 {
        for (i, t) in tenants.iter().enumerate() {
            let conn = TenantConn::acquire(&env.db, &t.company.schema_name)
                .await
                .unwrap();
            let page = projects::list(&conn, 100, None).await.unwrap();
            let names: Vec<_> = page.projects.iter().map(|p| p.name.clone()).collect();
            assert_eq!(names, vec![format!("marker-{i}")], "round {round}");
            let path: String = conn
                .client()
                .query_one("show search_path", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(path, format!("\"t{i:02}\"").replace("\"t", "\"tenant_t"));
        }
    }
    // Public tables are not on a tenant's search_path: unqualified names fail, qualified work.
    let conn = TenantConn::acquire(&env.db, &tenants[0].company.schema_name)
        .await
        .unwrap();
    let err = conn
        .client()
        .query_one("select count(*) from companies", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"));
    let n: i64 = conn
        .client()
        .query_one("select count(*) from public.companies", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20);
}

#[tokio::test]
async fn no_way_of_ending_a_handle_leaks_its_search_path() {
    let env = env_with(pool_of_one()).await;
    let t = tenant(&env, "acme").await;
    let s = t.company.schema_name.clone();
    assert_eq!(next_path(&env).await, DEFAULT_PATH);

    // A normal drop.
    drop(TenantConn::acquire(&env.db, &s).await.unwrap());
    assert_eq!(next_path(&env).await, DEFAULT_PATH, "after a drop");

    // An error on the bound connection.
    {
        let conn = TenantConn::acquire(&env.db, &s).await.unwrap();
        assert!(conn
            .client()
            .query("select * from no_such_table", &[])
            .await
            .is_err());
    }
    assert_eq!(next_path(&env).await, DEFAULT_PATH, "after an error");

    // A panic while holding the handle.
    let db = env.db.clone();
    let s2 = s.clone();
    let panicked = tokio::spawn(async move {
        let _conn = TenantConn::acquire(&db, &s2).await.unwrap();
        panic!("handler panicked while holding a tenant connection");
    })
    .await;
    assert!(panicked.is_err());
    assert_eq!(next_path(&env).await, DEFAULT_PATH, "after a panic");

    // A query cancelled mid-flight (the client went away): the connection is still usable.
    {
        let conn = TenantConn::acquire(&env.db, &s).await.unwrap();
        let sleep = conn.client().query("select pg_sleep(1)", &[]);
        assert!(tokio::time::timeout(Duration::from_millis(100), sleep)
            .await
            .is_err());
    }
    assert_eq!(
        next_path(&env).await,
        DEFAULT_PATH,
        "after a cancelled query"
    );

    // A transaction dropped without commit: rolled back, path reset.
    {
        let mut conn = TenantConn::acquire(&env.db, &s).await.unwrap();
        let tx = conn.transaction().await.unwrap();
        tx.client()
            .execute(
                "insert into projects (id, name, owner_id) values (gen_random_uuid(), 'rolled back', $1)",
                &[&t.owner.id.0],
            )
            .await
            .unwrap();
        drop(tx);
    }
    assert_eq!(next_path(&env).await, DEFAULT_PATH, "after a rollback");
    assert_eq!(
        one::<i64>(&env, "select count(*) from tenant_acme.projects").await,
        0
    );

    // The connection is the same one throughout (pool of one) and still serves the tenant.
    let conn = TenantConn::acquire(&env.db, &s).await.unwrap();
    assert_eq!(
        projects::list(&conn, 10, None)
            .await
            .unwrap()
            .projects
            .len(),
        0
    );
}

#[tokio::test]
async fn an_exhausted_pool_answers_unavailable_quickly() {
    let env = env_with(PoolSettings {
        max_size: 1,
        wait_timeout: Duration::from_millis(200),
        ..PoolSettings::default()
    })
    .await;
    let held = env.db.public().await.unwrap();
    let started = Instant::now();
    let err = env.db.public().await.err().expect("pool is exhausted");
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(held);
    assert!(env.db.public().await.is_ok());
}

#[tokio::test]
async fn a_dead_pooled_connection_is_replaced_at_checkout() {
    let env = env_with(pool_of_one()).await;
    let t = tenant(&env, "acme").await;
    let pid: i32 = env
        .db
        .public()
        .await
        .unwrap()
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    exec(&env, &format!("select pg_terminate_backend({pid})")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let conn = TenantConn::acquire(&env.db, &t.company.schema_name)
        .await
        .expect("a fresh connection");
    let new_pid: i32 = conn
        .client()
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(pid, new_pid);
}

#[tokio::test]
async fn migrate_schemas_noop_check_and_resume() {
    let env = env().await;
    for slug in ["aa1", "bb2", "cc3", "dd4", "ee5"] {
        tenant(&env, slug).await;
    }
    let s = migrate(&env.db, MigrateOptions::default()).await;
    assert_eq!(
        (s.tenants, s.migrated, s.up_to_date, s.failed),
        (5, 0, 6, 0)
    );
    assert_eq!(
        one::<i64>(
            &env,
            &format!(
                "select count(*) from public.companies where schema_version = {}",
                tenant_head()
            )
        )
        .await,
        5
    );

    exec(
        &env,
        "update public.companies set schema_version = 0 where slug = 'bb2'",
    )
    .await;
    exec(&env, "drop schema tenant_cc3 cascade").await;
    let check = MigrateOptions {
        check: true,
        ..MigrateOptions::default()
    };
    let s = migrate(&env.db, check.clone()).await;
    assert!(!s.ok());
    let mut flagged: Vec<(String, Outcome)> = s
        .reports
        .iter()
        .filter(|r| r.name != "public")
        .map(|r| (r.name.clone(), r.outcome.clone()))
        .collect();
    flagged.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        flagged,
        vec![
            ("bb2".into(), Outcome::Behind { version: Some(0) }),
            ("cc3".into(), Outcome::Missing)
        ]
    );
    // --check changed nothing.
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from pg_namespace where nspname = 'tenant_cc3'"
        )
        .await,
        0
    );

    let s = migrate(&env.db, MigrateOptions::default()).await;
    assert_eq!(s.failed, 0);
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from tenant_cc3.refinery_schema_history where version = 1"
        )
        .await,
        1
    );
    assert_eq!(
        one::<i64>(&env, "select count(*) from tenant_cc3.projects").await,
        0
    );
    assert!(migrate(&env.db, check).await.ok());

    // One tenant only; an unknown slug is an error.
    exec(
        &env,
        "update public.companies set schema_version = null where slug in ('aa1', 'dd4')",
    )
    .await;
    let only = MigrateOptions {
        tenant: Some(Slug::parse("aa1").unwrap()),
        ..MigrateOptions::default()
    };
    let s = migrate(&env.db, only).await;
    assert_eq!(s.tenants, 1);
    assert_eq!(
        one::<Option<i32>>(
            &env,
            "select schema_version from public.companies where slug = 'dd4'"
        )
        .await,
        None
    );
    assert_eq!(
        one::<Option<i32>>(
            &env,
            "select schema_version from public.companies where slug = 'aa1'"
        )
        .await,
        Some(tenant_head())
    );
    let unknown = MigrateOptions {
        tenant: Some(Slug::parse("zzz").unwrap()),
        ..MigrateOptions::default()
    };
    assert!(matches!(
        migrate_schemas(&env.db, &unknown, &|_, _| {}).await,
        Err(RunError::UnknownTenant(_))
    ));
}

#[tokio::test]
async fn one_failing_schema_does_not_stop_the_others_and_a_rerun_resumes() {
    let env = env().await;
    for slug in ["good1", "good2"] {
        tenant(&env, slug).await;
    }
    exec(
        &env,
        "drop schema tenant_good1 cascade; drop schema tenant_good2 cascade",
    )
    .await;
    // A company whose schema already has a conflicting `projects` table: V1 cannot apply there.
    exec(
        &env,
        "begin;
         create schema tenant_broken;
         create table tenant_broken.projects (x int);
         insert into public.companies (id, name, slug, schema_name, plan, status)
           values ('00000000-0000-7000-8000-000000000001', 'Broken', 'broken', 'tenant_broken', 'free', 'active');
         insert into public.users (id, email, password_hash) values ('00000000-0000-7000-8000-000000000002', 'o@broken.test', 'x');
         insert into public.memberships (id, user_id, company_id, role)
           values (gen_random_uuid(), '00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000001', 'owner');
         commit;",
    )
    .await;
    let s = migrate(&env.db, MigrateOptions::default()).await;
    assert_eq!(s.failed, 1);
    assert_eq!(s.migrated, 2, "the good ones were migrated");
    let broken = s.reports.iter().find(|r| r.name == "broken").unwrap();
    match &broken.outcome {
        Outcome::Failed { error } => assert!(!error.is_empty()),
        other => panic!("expected a failure, got {other:?}"),
    }
    // Unchanged: no history table, version still null.
    assert!(
        one::<bool>(
            &env,
            "select to_regclass('tenant_broken.refinery_schema_history') is null"
        )
        .await
    );
    assert_eq!(
        one::<Option<i32>>(
            &env,
            "select schema_version from public.companies where slug = 'broken'"
        )
        .await,
        None
    );

    exec(&env, "drop table tenant_broken.projects").await;
    let s = migrate(&env.db, MigrateOptions::default()).await;
    assert_eq!((s.failed, s.migrated), (0, 1));
    assert_eq!(
        one::<Option<i32>>(
            &env,
            "select schema_version from public.companies where slug = 'broken'"
        )
        .await,
        Some(tenant_head())
    );
}

#[tokio::test]
async fn concurrent_runs_never_apply_a_migration_twice() {
    let env = env().await;
    let slugs: Vec<String> = (0..10).map(|i| format!("c{i:02}")).collect();
    for slug in &slugs {
        tenant(&env, slug).await;
        exec(&env, &format!("drop schema tenant_{slug} cascade")).await;
    }
    let other = Db::connect(&env.url, &PoolSettings::default()).unwrap();
    let opts = MigrateOptions {
        jobs: 4,
        ..MigrateOptions::default()
    };
    let (a, b) = tokio::join!(migrate(&env.db, opts.clone()), migrate(&other, opts));
    assert_eq!((a.failed, b.failed), (0, 0));
    assert_eq!(
        a.migrated + b.migrated + a.up_to_date + b.up_to_date,
        2 * 11
    );
    for slug in &slugs {
        let rows: i64 = one(
            &env,
            &format!("select count(*) from tenant_{slug}.refinery_schema_history"),
        )
        .await;
        let distinct: i64 = one(
            &env,
            &format!("select count(distinct version) from tenant_{slug}.refinery_schema_history"),
        )
        .await;
        assert_eq!(
            (rows, distinct),
            (tenant_head() as i64, tenant_head() as i64),
            "{slug}"
        );
    }
}

#[tokio::test]
async fn provisioning_is_all_or_nothing() {
    let env = env().await;
    let first = tenant(&env, "first").await;
    assert_eq!(first.domain, "first.example.test");
    assert_eq!(first.company.schema_version, Some(tenant_head()));

    // The owner email belongs to an account with another password: refused after the schema and
    // migrations were created in the transaction, and nothing remains.
    let mut bad = new_tenant("second");
    bad.owner_email = Email::parse("owner@first.test").unwrap();
    let err = provision(&env.db, &base(), bad).await.unwrap_err();
    assert!(matches!(err, ProvisionError::OwnerCredentials), "{err:?}");
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from public.companies where slug = 'second'"
        )
        .await,
        0
    );
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from public.domains where domain = 'second.example.test'"
        )
        .await,
        0
    );
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from pg_namespace where nspname = 'tenant_second'"
        )
        .await,
        0
    );

    // Eight concurrent signups of one slug: one wins, seven are told it is taken.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let db = env.db.clone();
        let mut t = new_tenant("race");
        t.owner_email = Email::parse(&format!("owner{i}@race.test")).unwrap();
        tasks.push(tokio::spawn(
            async move { provision(&db, &base(), t).await },
        ));
    }
    let mut ok = 0;
    let mut taken = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(ProvisionError::SlugTaken) => taken += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, taken), (1, 7));
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from public.companies where slug = 'race'"
        )
        .await,
        1
    );
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from public.users where email like '%@race.test'"
        )
        .await,
        1
    );
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from pg_namespace where nspname = 'tenant_race'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_database_holds_exactly_one_owner_per_company() {
    let env = env().await;
    let t = tenant(&env, "acme").await;
    let company = t.company.id.0;
    exec(&env, "insert into public.users (id, email, password_hash) values ('00000000-0000-7000-8000-00000000000a', 'b@acme.test', 'x')").await;
    let client = env.check.get().await.unwrap();
    // A second owner is refused at once.
    let err = client
        .execute(
            "insert into public.memberships (id, user_id, company_id, role) values (gen_random_uuid(), '00000000-0000-7000-8000-00000000000a', $1, 'owner')",
            &[&company],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("23505"));
    // No owner at all is refused at commit.
    let err = client
        .batch_execute(&format!(
            "update public.memberships set role = 'admin' where company_id = '{company}'"
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("23514"));
    // Swapping inside one transaction (demote, then promote) is allowed.
    client
        .batch_execute(&format!(
            "begin;
             insert into public.memberships (id, user_id, company_id, role) values (gen_random_uuid(), '00000000-0000-7000-8000-00000000000a', '{company}', 'admin');
             update public.memberships set role = 'admin' where company_id = '{company}' and user_id = '{}';
             update public.memberships set role = 'owner' where company_id = '{company}' and user_id = '00000000-0000-7000-8000-00000000000a';
             commit;",
            t.owner.id
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn drop_tenant_removes_everything() {
    let env = env().await;
    tenant(&env, "gone").await;
    tenant(&env, "kept").await;
    assert!(drop_tenant(&env.db, &schema_slug("gone")).await.unwrap());
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from pg_namespace where nspname = 'tenant_gone'"
        )
        .await,
        0
    );
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from public.companies where slug = 'gone'"
        )
        .await,
        0
    );
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from public.domains where domain like 'gone.%'"
        )
        .await,
        0
    );
    assert_eq!(
        one::<i64>(&env, "select count(*) from public.memberships").await,
        1
    );
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from pg_namespace where nspname = 'tenant_kept'"
        )
        .await,
        1
    );
    assert!(!drop_tenant(&env.db, &schema_slug("gone")).await.unwrap());
}
