//! Tenant crate against a real PostgreSQL: the binding invariant, pool exhaustion,
//! migrate-schemas (no-op, check, failure isolation, concurrent runs), provisioning and dropping.
//!
//! Every test gets a fresh database. The pool under test is a [`Db`]; assertions go through a
//! separate raw pool (`Env::check`) so they never disturb the connection being tested.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use deadpool_postgres::GenericClient;
use deadpool_postgres::Pool;
use std::time::{Duration, Instant};
use tenantry_public::db::{self, Db, DbError, PoolSettings};
use tenantry_public::migrate::MIGRATION_LOCK_NAMESPACE;
use tenantry_public::plans::PlanCode;
use tenantry_public::Origin;
use tenantry_public::{DomainName, Email, Password, Slug};
use tenantry_tenant::audit::{Acting, Actor};
use tenantry_tenant::binding::SchemaSql;
use tenantry_tenant::migrate::{migrate_schemas, MigrateOptions, Outcome, RunError, Summary};
use tenantry_tenant::ordering::Window;
use tenantry_tenant::projects::{self, NewProject, Project, ProjectStatus};
use tenantry_tenant::provision::{
    drop_tenant, provision, NewTenant, Owner, ProvisionError, Provisioned,
};
use tenantry_tenant::rows;
use tenantry_tenant::{tenant_head, ProjectId, TenantConn, TenantDb};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

struct Env {
    /// The pool under test.
    db: Db,
    /// A raw pool of the test's own, for assertions and setup SQL.
    check: Pool,
    url: String,
}

/// A fresh database, a `Db` with `settings`, and public brought to head by migrate-schemas.
async fn env_with(settings: PoolSettings) -> Env {
    let database = tenantry_testkit::fresh_database().await;
    let db = Db::connect(&database.url, &settings).unwrap();
    let check = db::pool(&database.url, &PoolSettings::default()).unwrap();
    let summary = migrate(&db, MigrateOptions::default()).await;
    assert!(summary.ok(), "{summary:?}");
    assert_eq!(summary.migrated, 1, "public was migrated: {summary:?}");
    Env {
        db,
        check,
        url: database.url,
    }
}

async fn env() -> Env {
    env_with(PoolSettings::default()).await
}

fn pool_of_one() -> PoolSettings {
    PoolSettings {
        max_size: 1,
        ..PoolSettings::default()
    }
}

async fn migrate(db: &Db, options: MigrateOptions) -> Summary {
    migrate_schemas(db, &options, &|_, _| {}).await.unwrap()
}

fn check_only() -> MigrateOptions {
    MigrateOptions {
        check: true,
        ..MigrateOptions::default()
    }
}

fn slug(s: &str) -> Slug {
    Slug::parse(s).unwrap()
}

fn new_tenant(s: &str) -> NewTenant {
    NewTenant {
        name: format!("{s} Inc"),
        slug: slug(s),
        plan: PlanCode::Free,
        trial_from: None,
        owner: Owner::New {
            email: Email::parse(&format!("owner@{s}.test")).unwrap(),
            password: Password::parse(&format!("password-of-{s}")).unwrap(),
            full_name: String::new(),
        },
    }
}

fn base() -> DomainName {
    DomainName::parse("example.test").unwrap()
}

async fn tenant(env: &Env, s: &str) -> Provisioned {
    provision(&env.db, &base(), new_tenant(s)).await.unwrap()
}

/// The first column of the only row of `sql`, read through the assertion pool.
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

async fn schema_exists(env: &Env, schema: &str) -> bool {
    one::<bool>(
        env,
        &format!("select exists (select 1 from pg_namespace where nspname = '{schema}')"),
    )
    .await
}

async fn schema_version(env: &Env, s: &str) -> Option<i32> {
    one(
        env,
        &format!("select schema_version from public.companies where slug = '{s}'"),
    )
    .await
}

fn new_project(name: &str) -> NewProject {
    NewProject {
        name: name.into(),
        description: String::new(),
        status: ProjectStatus::Planned,
        start_date: None,
        end_date: None,
    }
}

/// Creates one project named `name` in `t`'s schema, as its owner.
async fn marker(env: &Env, t: &Provisioned, name: &str) {
    let mut conn = TenantConn::acquire(&env.db, &t.company.schema_name)
        .await
        .unwrap();
    let origin = Origin::default();
    let acting = Acting {
        company: t.company.id,
        user: t.owner.id,
        actor: Actor::User(t.owner.id),
        origin: &origin,
    };
    projects::create(&mut conn, &acting, &new_project(name))
        .await
        .unwrap();
}

/// Inserts a project named `name` through `db` (a bound connection or a transaction on one).
async fn insert_project(db: &impl TenantDb, t: &Provisioned, name: &str) -> String {
    db.client()
        .query_one(
            "insert into projects (id, name, owner_id) values ($1, $2, $3) returning name",
            &[&ProjectId::new(), &name, &t.owner.id],
        )
        .await
        .unwrap()
        .get(0)
}

const DEFAULT_PATH: &str = "\"$user\", public";

/// The `search_path` and backend pid the next public checkout sees.
async fn next_public(env: &Env) -> (String, i32) {
    let conn = env.db.public().await.unwrap();
    let row = conn
        .query_one(
            "select current_setting('search_path'), pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn bound_path(conn: &TenantConn) -> (String, i32) {
    let row = conn
        .client()
        .query_one(
            "select current_setting('search_path'), pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The (name, outcome) of every tenant line of a report, sorted by name.
fn tenant_outcomes(s: &Summary) -> Vec<(String, Outcome)> {
    let mut v: Vec<_> = s
        .reports
        .iter()
        .filter(|r| r.name != "public")
        .map(|r| (r.name.clone(), r.outcome.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Migrated to head with every tenant migration applied. `from` is the version recorded in
/// `companies` before the run, which is not necessarily what the schema held (see the report).
/// `distributed`: the schema was not a distributed schema before (Citus only).
fn migrated_to_head(from: Option<i32>, distributed: bool) -> Outcome {
    Outcome::Migrated {
        from,
        to: tenant_head(),
        applied: tenant_versions(),
        distributed,
    }
}

/// Every tenant migration's version, ascending (not necessarily contiguous while branches that
/// each add a numbered migration are merged one by one).
fn tenant_versions() -> Vec<i32> {
    let mut v: Vec<i32> = tenantry_tenant::tenant_runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    v.sort_unstable();
    v
}

// ---------------------------------------------------------------------------------------------
// 1. The binding invariant
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_way_of_ending_a_handle_leaks_its_search_path() {
    let env = env_with(pool_of_one()).await;
    let t = tenant(&env, "acme").await;
    let s = t.company.schema_name.clone();

    // A pool of one: every checkout below is the same server connection, so the resets are real.
    let (path, pid) = next_public(&env).await;
    assert_eq!(path, DEFAULT_PATH);
    {
        let conn = TenantConn::acquire(&env.db, &s).await.unwrap();
        assert_eq!(bound_path(&conn).await, ("\"tenant_acme\"".into(), pid));
    }

    // 1. A normal drop.
    drop(TenantConn::acquire(&env.db, &s).await.unwrap());
    assert_eq!(next_public(&env).await, (DEFAULT_PATH.into(), pid), "drop");

    // 2. An error on the bound connection, then drop.
    {
        let conn = TenantConn::acquire(&env.db, &s).await.unwrap();
        let err = conn
            .client()
            .query("select * from no_such_table", &[])
            .await
            .unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("42P01"));
    }
    assert_eq!(next_public(&env).await, (DEFAULT_PATH.into(), pid), "error");

    // 3. A panic while holding the handle.
    let db = env.db.clone();
    let s2 = s.clone();
    let joined = tokio::spawn(async move {
        let conn = TenantConn::acquire(&db, &s2).await.unwrap();
        let path: String = conn
            .client()
            .query_one("show search_path", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(path, "\"tenant_acme\"");
        panic!("handler panicked while holding a tenant connection");
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(next_public(&env).await, (DEFAULT_PATH.into(), pid), "panic");

    // 4. A query cancelled mid-flight: the future is dropped, then the handle.
    {
        let conn = TenantConn::acquire(&env.db, &s).await.unwrap();
        let sleep = conn.client().query("select pg_sleep(2)", &[]);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), sleep)
                .await
                .is_err(),
            "the query was still running at the timeout"
        );
    }
    assert_eq!(
        next_public(&env).await,
        (DEFAULT_PATH.into(), pid),
        "cancelled query"
    );
    {
        // ... and the connection still serves a tenant afterwards.
        let conn = TenantConn::acquire(&env.db, &s).await.unwrap();
        assert_eq!(bound_path(&conn).await, ("\"tenant_acme\"".into(), pid));
        assert!(rows::page::<Project>(
            &conn,
            &Default::default(),
            &Window::first(projects::ProjectOrder::NEWEST, 10)
        )
        .await
        .unwrap()
        .items
        .is_empty());
    }

    // 5. A transaction dropped without commit: rolled back, and the path is reset.
    {
        let mut conn = TenantConn::acquire(&env.db, &s).await.unwrap();
        let tx = conn.transaction().await.unwrap();
        let name = insert_project(&tx, &t, "rolled back").await;
        assert_eq!(name, "rolled back");
        assert_eq!(
            rows::page::<Project>(
                &tx,
                &Default::default(),
                &Window::first(projects::ProjectOrder::NEWEST, 10)
            )
            .await
            .unwrap()
            .items
            .len(),
            1,
            "visible inside the transaction"
        );
        drop(tx);
    }
    assert_eq!(
        next_public(&env).await,
        (DEFAULT_PATH.into(), pid),
        "rollback"
    );
    assert_eq!(
        one::<i64>(&env, "select count(*) from tenant_acme.projects").await,
        0,
        "the dropped transaction's insert was rolled back"
    );

    // A committed transaction, for contrast, persists.
    {
        let mut conn = TenantConn::acquire(&env.db, &s).await.unwrap();
        let tx = conn.transaction().await.unwrap();
        insert_project(&tx, &t, "committed").await;
        tx.commit().await.unwrap();
    }
    assert_eq!(
        one::<String>(
            &env,
            "select string_agg(name, ',') from tenant_acme.projects"
        )
        .await,
        "committed"
    );
    assert_eq!(next_public(&env).await, (DEFAULT_PATH.into(), pid));
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
    let (_, pid) = next_public(&env).await;
    // One connection, rebound to 20 schemas in turn, twice over: each binding sees exactly its
    // own marker project, and the path names only that schema.
    for round in 0..2 {
        for (i, t) in tenants.iter().enumerate() {
            let conn = TenantConn::acquire(&env.db, &t.company.schema_name)
                .await
                .unwrap();
            assert_eq!(conn.schema().as_str(), format!("tenant_t{i:02}"));
            assert_eq!(
                bound_path(&conn).await,
                (format!("\"tenant_t{i:02}\""), pid),
                "round {round}"
            );
            let names: Vec<String> = rows::page::<Project>(
                &conn,
                &Default::default(),
                &Window::first(projects::ProjectOrder::NEWEST, 100),
            )
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.name)
            .collect();
            assert_eq!(names, vec![format!("marker-{i}")], "round {round}");
            drop(conn);
            // The same through a pipelined read (binding and query in one round trip).
            let (names, path) = first_page_names(&env, t).await;
            assert_eq!(names, vec![format!("marker-{i}")], "round {round}");
            assert_eq!(path, (format!("\"tenant_t{i:02}\""), pid), "round {round}");
        }
    }

    // Public tables are not on a tenant's search_path: unqualified names fail, qualified work.
    let conn = TenantConn::acquire(&env.db, &tenants[7].company.schema_name)
        .await
        .unwrap();
    let err = conn
        .client()
        .query_one("select count(*) from companies", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"), "{err}");
    let n: i64 = conn
        .client()
        .query_one("select count(*) from public.companies", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20);
    // Nor is any other tenant's table reachable unqualified: there is only one `projects`.
    let n: i64 = conn
        .client()
        .query_one("select count(*) from projects", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// The names of the first page of `t`'s projects, read as the first query of a new bound
/// connection (binding and query in one round trip), with that connection's path and pid.
async fn first_page_names(env: &Env, t: &Provisioned) -> (Vec<String>, (String, i32)) {
    let (conn, page) = rows::first_page::<Project>(
        &env.db,
        &t.company.schema_name,
        &Default::default(),
        &Window::first(projects::ProjectOrder::NEWEST, 10),
    )
    .await
    .unwrap();
    let names = page.items.into_iter().map(|p| p.name).collect();
    (names, bound_path(&conn).await)
}

#[tokio::test]
async fn a_pipelined_read_binds_first_and_keeps_one_statement_per_tenant() {
    let env = env_with(pool_of_one()).await;
    let a = tenant(&env, "acme").await;
    let b = tenant(&env, "bravo").await;
    marker(&env, &a, "marker-acme").await;
    marker(&env, &b, "marker-bravo").await;
    let (_, pid) = next_public(&env).await;
    let before = env.db.cached_statements().await;
    // One connection, rotated between two tenants: each read sees its own rows, and the
    // connection it hands back is bound to its tenant.
    for round in 0..3 {
        for (t, s) in [(&a, "acme"), (&b, "bravo")] {
            let (names, path) = first_page_names(&env, t).await;
            assert_eq!(names, vec![format!("marker-{s}")], "round {round}");
            assert_eq!(path, (format!("\"tenant_{s}\""), pid), "round {round}");
            assert_eq!(next_public(&env).await, (DEFAULT_PATH.into(), pid));
        }
    }
    // One prepared statement per tenant on the connection, kept across the rotation (each
    // tenant's plan survives the other's requests).
    assert_eq!(env.db.cached_statements().await - before, 2);
    let prepared: Vec<String> = env
        .db
        .public()
        .await
        .unwrap()
        .query(
            "select statement from pg_prepared_statements \
              where statement like '%from \"tenant\\_%\".projects where%' order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(prepared.len(), 2, "{prepared:#?}");
    assert!(prepared[0].contains("from \"tenant_acme\".projects"));
    assert!(prepared[1].contains("from \"tenant_bravo\".projects"));
}

#[tokio::test]
async fn a_schema_named_statement_never_names_another_tenant() {
    let env = env_with(pool_of_one()).await;
    let a = tenant(&env, "acme").await;
    let b = tenant(&env, "bravo").await;
    marker(&env, &a, "marker-acme").await;
    marker(&env, &b, "marker-bravo").await;
    let acme = &a.company.schema_name;
    let sql = SchemaSql::new("select name from {schema}.projects", acme).unwrap();
    assert_eq!(sql.text(), "select name from \"tenant_acme\".projects");

    // Every way of naming bravo's schema in a statement made for acme is refused, and so is
    // anything that is not one plain read.
    for template in [
        "select name from \"tenant_bravo\".projects",
        "select name from tenant_bravo.projects",
        "select name from TENANT_BRAVO.projects",
        "select name from {schema}.projects union all select name from tenant_bravo.projects",
        "select name from {schema}.projects union all select name from \"x\".projects",
        "select name from projects",
        "insert into {schema}.projects (name) values ('x') returning name",
        "with x as (delete from {schema}.projects returning name) select name from x",
        "select name from {schema}.projects; delete from {schema}.projects",
        "select name from {schema}.projects for update",
    ] {
        let err = SchemaSql::new(template, acme).expect_err(template);
        assert!(matches!(err, DbError::Corrupt(_)), "{template}: {err:?}");
    }

    // On the one connection, last bound to bravo, acme's statement reads acme's rows.
    let (names, _) = first_page_names(&env, &b).await;
    assert_eq!(names, vec!["marker-bravo"]);
    let (conn, rows) = TenantConn::acquire_read(&env.db, &sql, &[]).await.unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, vec!["marker-acme"]);
    assert_eq!(conn.schema(), acme);
}

#[tokio::test]
async fn a_failed_binding_discards_the_read_and_the_connection() {
    let env = env_with(pool_of_one()).await;
    let a = tenant(&env, "acme").await;
    marker(&env, &a, "marker-acme").await;
    let (_, pid) = next_public(&env).await;

    // A first statement that fails: the read sent after it answered, but its rows are never
    // handed out, and the connection (whose state is unknown) is discarded.
    let err = env
        .db
        .checkout_read(
            "select 1 / 0 where $1::text is not null",
            &[&"x"],
            "select name from {schema}.projects",
            "select name from \"tenant_acme\".projects",
            &[],
        )
        .await
        .map(|_| ())
        .expect_err("the first statement failed");
    assert_eq!(err.code(), Some("22012"), "{err:?}");
    let (path, new_pid) = next_public(&env).await;
    assert_eq!(path, DEFAULT_PATH);
    assert_ne!(new_pid, pid, "the connection was discarded");

    // The previous holder left its connection inside a failed transaction: the binding fails
    // (25P02), so do the pipelined read's rows, and one fresh connection serves the read.
    let pid = new_pid;
    {
        let conn = TenantConn::acquire(&env.db, &a.company.schema_name)
            .await
            .unwrap();
        conn.client().batch_execute("begin").await.unwrap();
        conn.client()
            .batch_execute("select 1 / 0")
            .await
            .expect_err("division by zero");
    }
    let (names, (path, new_pid)) = first_page_names(&env, &a).await;
    assert_eq!(names, vec!["marker-acme"]);
    assert_eq!(path, "\"tenant_acme\"");
    assert_ne!(new_pid, pid, "the aborted connection was replaced");
}

#[tokio::test]
async fn a_cancelled_or_panicking_read_leaks_no_path() {
    let env = env_with(pool_of_one()).await;
    let a = tenant(&env, "acme").await;
    let b = tenant(&env, "bravo").await;
    marker(&env, &a, "marker-acme").await;
    marker(&env, &b, "marker-bravo").await;
    // Warm: the connection exists and holds the binding's statement.
    first_page_names(&env, &a).await;
    let (_, pid) = next_public(&env).await;

    // Dropped between sending and receiving: binding and a slow read are in flight.
    let slow = SchemaSql::new(
        "select pg_sleep(0.5)::text from {schema}.projects",
        &a.company.schema_name,
    )
    .unwrap();
    let read = TenantConn::acquire_read(&env.db, &slow, &[]);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), read)
            .await
            .is_err(),
        "the read was still running at the timeout"
    );
    assert_eq!(
        next_public(&env).await,
        (DEFAULT_PATH.into(), pid),
        "cancelled read"
    );
    let (names, path) = first_page_names(&env, &b).await;
    assert_eq!(names, vec!["marker-bravo"]);
    assert_eq!(path, ("\"tenant_bravo\"".into(), pid));

    // A panic while holding the connection a read handed back.
    let db = env.db.clone();
    let schema = a.company.schema_name.clone();
    let joined = tokio::spawn(async move {
        let sql = SchemaSql::new("select name from {schema}.projects", &schema).unwrap();
        let (_conn, rows) = TenantConn::acquire_read(&db, &sql, &[]).await.unwrap();
        assert_eq!(rows.len(), 1);
        panic!("handler panicked while holding a pipelined read's connection");
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(next_public(&env).await, (DEFAULT_PATH.into(), pid), "panic");
    let (names, path) = first_page_names(&env, &b).await;
    assert_eq!(names, vec!["marker-bravo"]);
    assert_eq!(path, ("\"tenant_bravo\"".into(), pid));
}

#[tokio::test]
async fn a_dead_pooled_connection_is_replaced_at_checkout() {
    let env = env_with(pool_of_one()).await;
    let t = tenant(&env, "acme").await;
    let (_, pid) = next_public(&env).await;
    exec(&env, &format!("select pg_terminate_backend({pid})")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let conn = TenantConn::acquire(&env.db, &t.company.schema_name)
        .await
        .expect("a fresh connection replaces the dead one");
    let (path, new_pid) = bound_path(&conn).await;
    assert_ne!(pid, new_pid);
    assert_eq!(path, "\"tenant_acme\"");
}

// ---------------------------------------------------------------------------------------------
// 2. Pool exhaustion
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_exhausted_pool_answers_unavailable_quickly() {
    let settings = PoolSettings {
        max_size: 1,
        wait_timeout: Duration::from_millis(200),
        ..PoolSettings::default()
    };
    let env = env_with(settings.clone()).await;
    let t = tenant(&env, "acme").await;

    // The raw pool: a wait timeout converts to Unavailable.
    let raw = db::pool(&env.url, &settings).unwrap();
    let held = raw.get().await.unwrap();
    let started = Instant::now();
    let err = DbError::from(raw.get().await.expect_err("the raw pool is exhausted"));
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(held);
    drop(raw.get().await.expect("free again"));

    // The Db, public and tenant checkouts alike.
    let held = env.db.public().await.unwrap();
    let started = Instant::now();
    let err = env.db.public().await.err().expect("the pool is exhausted");
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    let err = TenantConn::acquire(&env.db, &t.company.schema_name)
        .await
        .err()
        .expect("the pool is exhausted");
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.code(), None);
    drop(held);
    assert_eq!(next_public(&env).await.0, DEFAULT_PATH);
}

// ---------------------------------------------------------------------------------------------
// 3.-5. migrate-schemas
// ---------------------------------------------------------------------------------------------

/// Everything a tenant schema holds, as text with the schema's name replaced by `S`, sorted.
async fn schema_description(env: &Env, schema: &str) -> Vec<String> {
    const DESCRIBE: &str = "\
        select kind || ' ' || replace(def, $1, 'S') from ( \
          select 'relation' as kind, c.relname || ' ' || c.relkind::text as def \
            from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 \
          union all \
          select 'column', c.relname || '.' || a.attname || ' ' \
                 || format_type(a.atttypid, a.atttypmod) \
                 || case when a.attnotnull then ' not null' else '' end \
                 || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') \
            from pg_class c join pg_namespace n on n.oid = c.relnamespace \
            join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped \
            left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum \
           where n.nspname = $1 \
          union all \
          select 'index', pg_get_indexdef(i.indexrelid) \
            from pg_index i join pg_class c on c.oid = i.indrelid \
            join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 \
          union all \
          select 'constraint', c.relname || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid) \
            from pg_constraint co join pg_class c on c.oid = co.conrelid \
            join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 \
          union all \
          select 'trigger', pg_get_triggerdef(t.oid) \
            from pg_trigger t join pg_class c on c.oid = t.tgrelid \
            join pg_namespace n on n.oid = c.relnamespace \
           where n.nspname = $1 and not t.tgisinternal \
          union all \
          select 'function', pg_get_functiondef(p.oid) \
            from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = $1 \
          union all \
          select 'comment', c.relname || ' ' || d.objsubid || ' ' || d.description \
            from pg_description d join pg_class c on c.oid = d.objoid \
            join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 \
        ) x order by 1";
    let client = env.check.get().await.unwrap();
    let mut description: Vec<String> = client
        .query(DESCRIBE, &[&schema])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let history = format!(
        "select 'history ' || version || ' ' || name || ' ' || checksum \
           from {schema}.refinery_schema_history order by version"
    );
    for row in client.query(&history, &[]).await.unwrap() {
        description.push(row.get(0));
    }
    description
}

/// A single server runs each tenant migration file in one round trip, Citus one statement at a
/// time; both must leave the same schema and the same refinery history.
#[tokio::test]
async fn both_statement_paths_make_the_same_schema_and_history() {
    use tenantry_public::migrate::{run_in_transaction, Statements};
    use tenantry_tenant::migrate::tenant_runner;

    let env = env().await;
    // `PerFile` is the single-server path; on Citus every tenant schema takes `OneByOne` (and
    // migrating outside `migrate_schema_in` lacks its Citus settings).
    if one::<bool>(
        &env,
        "select exists (select 1 from pg_extension where extname = 'citus')",
    )
    .await
    {
        return;
    }
    let mut described = Vec::new();
    for (schema, statements) in [
        ("tenant_per_file", Statements::PerFile),
        ("tenant_one_by_one", Statements::OneByOne),
    ] {
        let mut client = env.check.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.batch_execute(&format!(
            "create schema {schema}; set local search_path to {schema}"
        ))
        .await
        .unwrap();
        let report = run_in_transaction(&tx, &tenant_runner(), statements)
            .await
            .unwrap();
        assert_eq!(
            report.applied_migrations().len(),
            tenant_runner().get_migrations().len()
        );
        tx.commit().await.unwrap();
        described.push(schema_description(&env, schema).await);
    }
    let (per_file, one_by_one) = (&described[0], &described[1]);
    assert!(
        per_file
            .iter()
            .any(|d| d == "column projects.id uuid not null"),
        "{per_file:#?}"
    );
    assert!(
        per_file
            .iter()
            .any(|d| d.starts_with(&format!("history {} ", tenant_head()))),
        "{per_file:#?}"
    );
    assert_eq!(per_file, one_by_one);
}

#[tokio::test]
async fn migrate_schemas_noop_check_and_resume() {
    let env = env().await;
    for s in ["aa1", "bb2", "cc3", "dd4", "ee5"] {
        tenant(&env, s).await;
    }

    // A second run: everything up to date, nothing migrated.
    let s = migrate(&env.db, MigrateOptions::default()).await;
    assert_eq!(
        (s.tenants, s.migrated, s.up_to_date, s.behind, s.failed),
        (5, 0, 6, 0, 0)
    );
    assert!(s.ok());
    assert!(tenant_outcomes(&s)
        .iter()
        .all(|(_, o)| *o == Outcome::UpToDate));
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

    // --check: a tenant whose recorded version is behind.
    exec(
        &env,
        "update public.companies set schema_version = 0 where slug = 'bb2'",
    )
    .await;
    let s = migrate(&env.db, check_only()).await;
    assert!(!s.ok());
    assert_eq!((s.behind, s.failed, s.migrated), (1, 0, 0));
    assert_eq!(
        tenant_outcomes(&s),
        vec![("bb2".into(), Outcome::Behind { version: Some(0) })]
    );

    // --check: a tenant whose schema is gone.
    exec(&env, "drop schema tenant_cc3 cascade").await;
    let s = migrate(&env.db, check_only()).await;
    assert!(!s.ok());
    assert_eq!(s.behind, 2);
    assert_eq!(
        tenant_outcomes(&s),
        vec![
            ("bb2".into(), Outcome::Behind { version: Some(0) }),
            ("cc3".into(), Outcome::Missing)
        ]
    );
    // --check changed nothing.
    assert!(!schema_exists(&env, "tenant_cc3").await);
    assert_eq!(schema_version(&env, "bb2").await, Some(0));

    // A normal run repairs both; a following check is clean.
    let s = migrate(&env.db, MigrateOptions::default()).await;
    assert!(s.ok(), "{s:?}");
    assert_eq!(s.failed, 0);
    let outcomes = tenant_outcomes(&s);
    assert_eq!(outcomes.len(), 2);
    // bb2's schema already had every migration: only the recorded version was stale.
    assert_eq!(outcomes[0], ("bb2".into(), Outcome::UpToDate));
    assert_eq!(outcomes[1].0, "cc3");
    assert!(
        matches!(&outcomes[1].1, Outcome::Migrated { to, applied, .. }
            if *to == tenant_head() && applied.contains(&1)),
        "{outcomes:?}"
    );
    assert!(schema_exists(&env, "tenant_cc3").await);
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
    assert_eq!(schema_version(&env, "cc3").await, Some(tenant_head()));
    let s = migrate(&env.db, check_only()).await;
    assert!(s.ok(), "{s:?}");
    assert_eq!((s.behind, s.up_to_date), (0, 6));

    // One tenant only: the others are not touched.
    exec(
        &env,
        "update public.companies set schema_version = null where slug in ('aa1', 'dd4')",
    )
    .await;
    let only = MigrateOptions {
        tenant: Some(slug("aa1")),
        ..MigrateOptions::default()
    };
    let s = migrate(&env.db, only).await;
    assert_eq!(s.tenants, 1);
    assert_eq!(
        tenant_outcomes(&s)
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>(),
        vec!["aa1".to_owned()]
    );
    assert_eq!(schema_version(&env, "aa1").await, Some(tenant_head()));
    assert_eq!(schema_version(&env, "dd4").await, None);

    // An unknown slug is an error, and changes nothing.
    let unknown = MigrateOptions {
        tenant: Some(slug("zzz")),
        ..MigrateOptions::default()
    };
    match migrate_schemas(&env.db, &unknown, &|_, _| {}).await {
        Err(RunError::UnknownTenant(s)) => assert_eq!(s, "zzz"),
        other => panic!("expected UnknownTenant, got {other:?}"),
    }
    assert_eq!(schema_version(&env, "dd4").await, None);
}

#[tokio::test]
async fn progress_is_called_once_per_reported_schema() {
    let env = env().await;
    for s in ["pa1", "pb2", "pc3"] {
        tenant(&env, s).await;
    }
    exec(
        &env,
        "update public.companies set schema_version = null where slug <> 'pa1'",
    )
    .await;
    let seen = std::sync::Mutex::new(Vec::new());
    let s = migrate_schemas(&env.db, &MigrateOptions::default(), &|r, total| {
        seen.lock().unwrap().push((r.name.clone(), total));
    })
    .await
    .unwrap();
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    assert_eq!(
        seen,
        vec![("pb2".into(), 3), ("pc3".into(), 3), ("public".into(), 3)]
    );
    assert_eq!(s.reports.len(), 3);
}

#[tokio::test]
async fn one_failing_schema_does_not_stop_the_others_and_a_rerun_resumes() {
    let env = env().await;
    for s in ["good1", "good2", "good3"] {
        tenant(&env, s).await;
    }
    // Two good tenants pending (schema gone), one up to date.
    exec(
        &env,
        "drop schema tenant_good1 cascade; drop schema tenant_good2 cascade",
    )
    .await;
    // A company whose schema already has a conflicting `projects` table: V1 cannot apply there.
    // The exactly-one-owner trigger is deferred, so the owner is inserted in the same transaction.
    exec(
        &env,
        "begin;
         create schema tenant_broken;
         create table tenant_broken.projects (x int);
         insert into tenant_broken.projects values (42);
         insert into public.users (id, email, password_hash)
           values ('00000000-0000-7000-8000-000000000002', 'o@broken.test', 'x');
         insert into public.companies (id, name, slug, schema_name, plan, status, schema_version)
           values ('00000000-0000-7000-8000-000000000001', 'Broken', 'broken', 'tenant_broken',
                   'free', 'active', null);
         insert into public.memberships (id, user_id, company_id, role)
           values (gen_random_uuid(), '00000000-0000-7000-8000-000000000002',
                   '00000000-0000-7000-8000-000000000001', 'owner');
         commit;",
    )
    .await;

    let s = migrate(&env.db, MigrateOptions::default()).await;
    assert!(!s.ok());
    assert_eq!(
        (s.tenants, s.failed, s.migrated, s.up_to_date),
        (4, 1, 2, 2),
        "{s:?}"
    );
    let outcomes = tenant_outcomes(&s);
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    match &outcomes[0] {
        (name, Outcome::Failed { error }) if name == "broken" => {
            assert!(!error.trim().is_empty());
            assert!(error.contains("projects"), "{error}");
        }
        other => panic!("expected broken to fail, got {other:?}"),
    }
    assert_eq!(
        outcomes[1],
        ("good1".into(), migrated_to_head(Some(tenant_head()), false))
    );
    assert_eq!(
        outcomes[2],
        ("good2".into(), migrated_to_head(Some(tenant_head()), false))
    );
    for good in ["good1", "good2", "good3"] {
        assert_eq!(
            schema_version(&env, good).await,
            Some(tenant_head()),
            "{good}"
        );
    }

    // The broken schema is exactly as it was: no history, its own table untouched, no version.
    assert!(
        one::<bool>(
            &env,
            "select to_regclass('tenant_broken.refinery_schema_history') is null"
        )
        .await
    );
    assert_eq!(
        one::<i32>(&env, "select x from tenant_broken.projects").await,
        42
    );
    assert_eq!(schema_version(&env, "broken").await, None);

    // Fixed by hand, a re-run migrates it and nothing else.
    exec(&env, "drop table tenant_broken.projects").await;
    let s = migrate(&env.db, MigrateOptions::default()).await;
    assert!(s.ok(), "{s:?}");
    assert_eq!((s.failed, s.migrated, s.up_to_date), (0, 1, 4));
    assert_eq!(
        tenant_outcomes(&s),
        vec![(
            "broken".into(),
            // Made by hand, not by provisioning: on Citus it is a plain schema until migrated.
            migrated_to_head(None, tenantry_testkit::is_citus())
        )]
    );
    assert_eq!(schema_version(&env, "broken").await, Some(tenant_head()));
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from tenant_broken.refinery_schema_history where version = 1"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn concurrent_runs_never_apply_a_migration_twice() {
    let env = env().await;
    let slugs: Vec<String> = (0..10).map(|i| format!("c{i:02}")).collect();
    for s in &slugs {
        tenant(&env, s).await;
        exec(&env, &format!("drop schema tenant_{s} cascade")).await;
    }
    let s = migrate(&env.db, check_only()).await;
    assert_eq!(s.behind, 10, "all ten are pending");

    let other = Db::connect(&env.url, &PoolSettings::default()).unwrap();
    let opts = MigrateOptions {
        jobs: 4,
        ..MigrateOptions::default()
    };
    let (a, b) = tokio::join!(migrate(&env.db, opts.clone()), migrate(&other, opts));
    assert_eq!((a.failed, b.failed), (0, 0), "{a:?} {b:?}");
    assert!(a.ok() && b.ok());
    // Each schema was migrated by exactly one of the two runs.
    assert_eq!(a.migrated + b.migrated, 10, "{a:?} {b:?}");
    let head = i64::try_from(tenant_versions().len()).unwrap();
    for s in &slugs {
        let (rows, distinct): (i64, i64) = {
            let c = env.check.get().await.unwrap();
            let row = c
                .query_one(
                    &format!(
                        "select count(*), count(distinct version) \
                           from tenant_{s}.refinery_schema_history"
                    ),
                    &[],
                )
                .await
                .unwrap();
            (row.get(0), row.get(1))
        };
        assert_eq!((rows, distinct), (head, head), "{s}");
        assert_eq!(schema_version(&env, s).await, Some(tenant_head()), "{s}");
    }
    assert!(migrate(&env.db, check_only()).await.ok());
}

// ---------------------------------------------------------------------------------------------
// 6. Provisioning
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn provisioning_is_all_or_nothing() {
    let env = env().await;
    let first = tenant(&env, "first").await;
    assert_eq!(first.domain, "first.example.test");
    assert_eq!(first.company.schema_version, Some(tenant_head()));
    assert_eq!(first.company.schema_name.as_str(), "tenant_first");
    assert!(schema_exists(&env, "tenant_first").await);
    assert_eq!(
        one::<String>(
            &env,
            "select status from public.companies where slug = 'first'"
        )
        .await,
        "active"
    );

    // The owner email belongs to an account: refused after the schema and its migrations were
    // created inside the transaction, and nothing remains.
    let mut bad = new_tenant("second");
    if let Owner::New { email, .. } = &mut bad.owner {
        *email = Email::parse("OWNER@first.test").unwrap();
    }
    let err = provision(&env.db, &base(), bad).await.unwrap_err();
    assert!(matches!(err, ProvisionError::OwnerCredentials), "{err:?}");
    for (what, sql) in [
        (
            "company",
            "select count(*) from public.companies where slug = 'second'",
        ),
        (
            "domain",
            "select count(*) from public.domains where domain = 'second.example.test'",
        ),
        (
            "schema",
            "select count(*) from pg_namespace where nspname = 'tenant_second'",
        ),
        ("membership", "select count(*) from public.memberships"),
        ("user", "select count(*) from public.users"),
    ] {
        let expected = if matches!(what, "membership" | "user") {
            1
        } else {
            0
        };
        assert_eq!(one::<i64>(&env, sql).await, expected, "{what}");
    }

    // The same account may own a second company, named as an existing (authenticated) owner.
    let mut good = new_tenant("second");
    good.owner = Owner::Existing(first.owner.id);
    let second = provision(&env.db, &base(), good).await.unwrap();
    assert_eq!(second.owner.id, first.owner.id);
    assert_eq!(
        one::<i64>(&env, "select count(*) from public.users").await,
        1
    );

    // Eight concurrent signups of one slug: one wins, seven are told it is taken.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let db = env.db.clone();
        let mut t = new_tenant("race");
        if let Owner::New { email, .. } = &mut t.owner {
            *email = Email::parse(&format!("owner{i}@race.test")).unwrap();
        }
        tasks.push(tokio::spawn(
            async move { provision(&db, &base(), t).await },
        ));
    }
    let (mut ok, mut taken) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(p) => {
                assert_eq!(p.company.slug.as_str(), "race");
                ok += 1;
            }
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
            "select count(*) from public.domains where domain = 'race.example.test'"
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
        1,
        "the losers' owner accounts were rolled back"
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
    assert_eq!(
        one::<String>(
            &env,
            &format!("select user_id::text from public.memberships where company_id = '{company}' and role = 'owner'")
        )
        .await,
        "00000000-0000-7000-8000-00000000000a"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. drop_tenant
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn drop_tenant_removes_everything() {
    let env = env().await;
    let gone = tenant(&env, "gone").await;
    let kept = tenant(&env, "kept").await;
    marker(&env, &gone, "doomed").await;
    let gone_id = gone.company.id.0;
    let count = |sql: String| {
        let env = &env;
        async move { one::<i64>(env, &sql).await }
    };
    assert_eq!(
        count(format!(
            "select count(*) from public.memberships where company_id = '{gone_id}'"
        ))
        .await,
        1
    );

    assert!(drop_tenant(&env.db, &slug("gone")).await.unwrap());
    assert!(!schema_exists(&env, "tenant_gone").await);
    assert_eq!(
        count(format!(
            "select count(*) from public.companies where id = '{gone_id}' or slug = 'gone'"
        ))
        .await,
        0
    );
    assert_eq!(
        count(format!(
            "select count(*) from public.domains where company_id = '{gone_id}' or domain = 'gone.example.test'"
        ))
        .await,
        0
    );
    assert_eq!(
        count(format!(
            "select count(*) from public.memberships where company_id = '{gone_id}'"
        ))
        .await,
        0
    );
    // The other tenant is untouched.
    assert!(schema_exists(&env, "tenant_kept").await);
    assert_eq!(
        count(format!(
            "select count(*) from public.memberships where company_id = '{}'",
            kept.company.id.0
        ))
        .await,
        1
    );
    assert_eq!(
        count("select count(*) from public.domains where domain = 'kept.example.test'".into())
            .await,
        1
    );

    // Unknown (and already dropped) slugs answer false.
    assert!(!drop_tenant(&env.db, &slug("gone")).await.unwrap());
    assert!(!drop_tenant(&env.db, &slug("never")).await.unwrap());

    // The slug is free again (for the same owner, whose account outlives the tenant).
    let mut again = new_tenant("gone");
    again.owner = Owner::Existing(gone.owner.id);
    let again = provision(&env.db, &base(), again).await.unwrap();
    assert_ne!(again.company.id.0, gone_id);
    let conn = TenantConn::acquire(&env.db, &again.company.schema_name)
        .await
        .unwrap();
    assert!(rows::page::<Project>(
        &conn,
        &Default::default(),
        &Window::first(projects::ProjectOrder::NEWEST, 10)
    )
    .await
    .unwrap()
    .items
    .is_empty());
}

// ---------------------------------------------------------------------------------------------
// Regression tests for library bugs found while writing this suite: a drop racing a migration,
// a connection left in a failed transaction, --check on an unmigrated database.
// ---------------------------------------------------------------------------------------------

/// Waits until `n` advisory-lock requests in this database are waiting.
async fn wait_for_lock_waiters(env: &Env, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = one(
            env,
            "select count(*) from pg_locks where locktype = 'advisory' and not granted \
               and database = (select oid from pg_database where datname = current_database())",
        )
        .await;
        if waiting >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {waiting} of {n} waiters");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_tenant_dropped_during_migrate_schemas_stays_dropped() {
    let env = env().await;
    tenant(&env, "doomed").await;
    exec(
        &env,
        "update public.companies set schema_version = null where slug = 'doomed'",
    )
    .await;
    // Hold the schema's migration lock so both operations queue behind it: drop first.
    let locker = env.check.get().await.unwrap();
    locker.batch_execute("begin").await.unwrap();
    locker
        .execute(
            "select pg_advisory_xact_lock($1, hashtext('tenant_doomed'))",
            &[&MIGRATION_LOCK_NAMESPACE],
        )
        .await
        .unwrap();
    let db = env.db.clone();
    let dropping = tokio::spawn(async move { drop_tenant(&db, &slug("doomed")).await });
    wait_for_lock_waiters(&env, 1).await;
    let db = env.db.clone();
    let migrating =
        tokio::spawn(
            async move { migrate_schemas(&db, &MigrateOptions::default(), &|_, _| {}).await },
        );
    wait_for_lock_waiters(&env, 2).await;
    locker.batch_execute("commit").await.unwrap();

    assert!(dropping.await.unwrap().unwrap());
    let s = migrating.await.unwrap().unwrap();
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from public.companies where slug = 'doomed'"
        )
        .await,
        0
    );
    assert!(
        !schema_exists(&env, "tenant_doomed").await,
        "migrate-schemas re-created the dropped tenant's schema as an orphan: {s:?}"
    );
}

#[tokio::test]
async fn a_handle_left_in_a_failed_transaction_does_not_poison_the_pool() {
    let env = env_with(pool_of_one()).await;
    let t = tenant(&env, "acme").await;
    {
        let conn = TenantConn::acquire(&env.db, &t.company.schema_name)
            .await
            .unwrap();
        // A multi-statement simple query with its own BEGIN that fails half way: the session is
        // left in an aborted transaction block when the handle is dropped.
        let err = conn
            .client()
            .batch_execute("begin; select 1/0; commit")
            .await
            .unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("22012"));
    }
    let next = env.db.public().await;
    assert!(next.is_ok(), "next checkout: {:?}", next.as_ref().err());
    drop(next);
    let next = TenantConn::acquire(&env.db, &t.company.schema_name).await;
    assert!(next.is_ok(), "next tenant checkout: {:?}", next.err());
}

#[tokio::test]
async fn check_reports_an_unmigrated_public_schema_as_behind() {
    let database = tenantry_testkit::fresh_database().await;
    let db = Db::connect(&database.url, &PoolSettings::default()).unwrap();
    let s = migrate_schemas(&db, &check_only(), &|_, _| {})
        .await
        .expect("--check reports instead of failing");
    assert!(!s.ok());
    assert_eq!((s.behind, s.tenants), (1, 0));
    assert_eq!(s.reports[0].outcome, Outcome::Behind { version: None });
}

#[tokio::test]
async fn a_failure_after_the_schema_exists_rolls_everything_back() {
    let env = env().await;
    // Fault injection in the real database: the owner membership of "second" is refused, which
    // happens after its company, domain, schema, tenant migrations and owner account were created
    // inside the provisioning transaction.
    exec(
        &env,
        "create function public.refuse_second() returns trigger language plpgsql as $$
         begin
           if exists (select 1 from public.companies where id = new.company_id and slug = 'second') then
             raise exception 'injected failure';
           end if;
           return new;
         end $$;
         create trigger refuse_second before insert on public.memberships
           for each row execute function public.refuse_second();",
    )
    .await;
    let err = provision(&env.db, &base(), new_tenant("second"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProvisionError::Db(_)), "{err:?}");
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
            "select count(*) from public.domains where domain like 'second.%'"
        )
        .await,
        0
    );
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from public.users where email = 'owner@second.test'"
        )
        .await,
        0
    );
    assert!(!schema_exists(&env, "tenant_second").await);
    // The same signup succeeds once the fault is gone.
    exec(&env, "drop trigger refuse_second on public.memberships").await;
    provision(&env.db, &base(), new_tenant("second"))
        .await
        .unwrap();
    assert!(schema_exists(&env, "tenant_second").await);
}

// ---------------------------------------------------------------------------------------------
// Per-tenant jobs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_tenant_job_runs_once_per_period_in_its_tenant_and_skips_tenants_that_may_not_run() {
    use tenantry_tenant::jobs::{run_for_tenant, TenantCleanup, TenantCleanupOutcome, TenantRun};
    let env = env().await;
    let acme = tenant(&env, "acme").await;
    let globex = tenant(&env, "globex").await;
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T03:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    // Invitations expired 100 days ago (gone), 80 days ago and pending (kept), in both tenants.
    for schema in ["tenant_acme", "tenant_globex"] {
        exec(
            &env,
            &format!(
                "insert into {schema}.invitations (id, email, role, token_hash, expires_at) values \
                   (gen_random_uuid(), 'a@x.test', 'member', decode(repeat('01', 32), 'hex'), \
                    timestamptz '2026-12-07T03:00:00Z' - interval '100 days'), \
                   (gen_random_uuid(), 'b@x.test', 'member', decode(repeat('02', 32), 'hex'), \
                    timestamptz '2026-12-07T03:00:00Z' - interval '80 days'), \
                   (gen_random_uuid(), 'c@x.test', 'member', decode(repeat('03', 32), 'hex'), \
                    timestamptz '2026-12-14T03:00:00Z')"
            ),
        )
        .await;
    }
    let ran = run_for_tenant(&env.db, &TenantCleanup, acme.company.id, "2026-W50", now)
        .await
        .unwrap();
    assert!(
        matches!(
            ran,
            TenantRun::Done(
                _,
                TenantCleanupOutcome {
                    tasks: 0,
                    invitations: 1,
                    reports: 0
                }
            )
        ),
        "{ran:?}"
    );
    assert_eq!(
        one::<i64>(&env, "select count(*) from tenant_acme.invitations").await,
        2
    );
    // Only acme's rows: globex is untouched until its own run.
    assert_eq!(
        one::<i64>(&env, "select count(*) from tenant_globex.invitations").await,
        3
    );
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from tenant_acme.audit_log where action = 'organization.cleaned_up' \
              and after = '{\"tasks\": 0, \"invitations\": 1, \"reports\": 0}' and actor_user_id is null"
        )
        .await,
        1
    );
    // The same period again: not run.
    let again = run_for_tenant(&env.db, &TenantCleanup, acme.company.id, "2026-W50", now)
        .await
        .unwrap();
    assert_eq!(again, TenantRun::NotMine);
    // A suspended tenant is skipped, and recorded so; nothing of it changes.
    exec(
        &env,
        "update public.companies set status = 'suspended' where slug = 'globex'",
    )
    .await;
    let skipped = run_for_tenant(&env.db, &TenantCleanup, globex.company.id, "2026-W50", now)
        .await
        .unwrap();
    assert!(
        matches!(skipped, TenantRun::Skipped(_, ref why) if why.contains("suspended")),
        "{skipped:?}"
    );
    assert_eq!(
        one::<i64>(&env, "select count(*) from tenant_globex.invitations").await,
        3
    );
    assert_eq!(
        one::<String>(
            &env,
            "select r.status from public.job_runs r join public.companies c on c.id = r.company_id \
              where c.slug = 'globex'"
        )
        .await,
        "skipped"
    );
    // A tenant behind on its migrations is skipped too.
    exec(&env, "update public.companies set status = 'active', schema_version = schema_version - 1 where slug = 'globex'").await;
    let behind = run_for_tenant(&env.db, &TenantCleanup, globex.company.id, "2026-W51", now)
        .await
        .unwrap();
    assert!(
        matches!(behind, TenantRun::Skipped(_, ref why) if why.contains("schema")),
        "{behind:?}"
    );
}

#[tokio::test]
async fn the_tenant_cleanup_keeps_completed_tasks_while_retention_is_null_and_deletes_exactly_the_expired_ones(
) {
    use tenantry_tenant::jobs::{run_for_tenant, TenantCleanup, TenantCleanupOutcome, TenantRun};
    let env = env().await;
    let acme = tenant(&env, "acme").await;
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T03:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    exec(
        &env,
        "insert into tenant_acme.projects (id, name, owner_id) \
           select gen_random_uuid(), 'P', user_id from public.memberships; \
         insert into tenant_acme.tasks (id, project_id, title, status, created_by, completed_at, updated_at) \
           select gen_random_uuid(), p.id, t.title, t.status, p.owner_id, t.completed_at::timestamptz, t.updated_at::timestamptz \
             from tenant_acme.projects p, (values \
               ('done long ago', 'done', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z'), \
               ('done lately', 'done', '2026-12-03T00:00:00Z', '2026-12-03T00:00:00Z'), \
               ('cancelled long ago', 'cancelled', null, '2026-11-01T00:00:00Z'), \
               ('open and old', 'todo', null, '2026-01-01T00:00:00Z')) \
               as t (title, status, completed_at, updated_at)",
    )
    .await;
    // Retention null (the default): every task stays.
    let ran = run_for_tenant(&env.db, &TenantCleanup, acme.company.id, "2026-W50", now)
        .await
        .unwrap();
    assert!(
        matches!(
            ran,
            TenantRun::Done(_, TenantCleanupOutcome { tasks: 0, .. })
        ),
        "{ran:?}"
    );
    assert_eq!(
        one::<i64>(&env, "select count(*) from tenant_acme.tasks").await,
        4
    );
    // Seven days: the two closed more than a week ago go, nothing else.
    exec(
        &env,
        "update public.company_settings set completed_task_retention_days = 7",
    )
    .await;
    let ran = run_for_tenant(&env.db, &TenantCleanup, acme.company.id, "2026-W51", now)
        .await
        .unwrap();
    assert!(
        matches!(
            ran,
            TenantRun::Done(
                _,
                TenantCleanupOutcome {
                    tasks: 2,
                    invitations: 0,
                    reports: 0
                }
            )
        ),
        "{ran:?}"
    );
    let left: Vec<String> = env
        .check
        .get()
        .await
        .unwrap()
        .query("select title from tenant_acme.tasks order by title", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["done lately", "open and old"]);
    assert_eq!(
        one::<i64>(
            &env,
            "select count(*) from tenant_acme.audit_log where action = 'organization.cleaned_up' \
              and after = '{\"tasks\": 2, \"invitations\": 0, \"reports\": 0}'"
        )
        .await,
        1
    );
}

/// Tenant tables hold account ids without foreign keys to `public.users` (V11): each such key
/// would put two triggers per tenant on the one shared table. Keys between a tenant's own tables
/// stay.
#[tokio::test]
async fn tenants_put_no_triggers_on_public_users() {
    let env = env().await;
    let before: i64 = one(
        &env,
        "select count(*) from pg_trigger where tgrelid = 'public.users'::regclass",
    )
    .await;
    tenant(&env, "acme").await;
    tenant(&env, "globex").await;
    let after: i64 = one(
        &env,
        "select count(*) from pg_trigger where tgrelid = 'public.users'::regclass",
    )
    .await;
    assert_eq!(after, before);
    let to_users: i64 = one(
        &env,
        "select count(*) from pg_constraint where contype = 'f' \
           and confrelid = 'public.users'::regclass \
           and connamespace::regnamespace::text like 'tenant_%'",
    )
    .await;
    assert_eq!(to_users, 0);
    let inside: i64 = one(
        &env,
        "select count(*) from pg_constraint c join pg_namespace n on n.oid = c.connamespace \
          where c.contype = 'f' and n.nspname = 'tenant_acme' \
            and c.confrelid::regclass::text like 'tenant_acme.%'",
    )
    .await;
    assert!(inside >= 5, "keys inside the tenant: {inside}");
}
