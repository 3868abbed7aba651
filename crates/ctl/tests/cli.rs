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
        .env_remove("PUBLIC_SCHEME")
        .env_remove("LINK_SCHEME")
        .env_remove("LINK_PORT")
        .env_remove("BILLING_PAST_DUE_GRACE_DAYS")
        .env_remove("TENANTCTL_OWNER_PASSWORD")
        .env_remove("TENANTCTL_MEMBER_PASSWORD");
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

/// Asserts a failure whose stderr contains `needle`.
#[track_caller]
fn assert_fails_with(o: &Output, needle: &str) {
    assert_fails(o);
    assert!(stderr(o).contains(needle), "{}", stderr(o));
}

/// A fresh database with the public schema migrated.
async fn migrated() -> String {
    let url = tenantry_testkit::fresh_database().await.url;
    assert_ok(&tenantctl(&url, &["migrate-schemas"]));
    url
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

async fn exec(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.batch_execute(sql).await.expect(sql);
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

/// `tenant create` for `slug` on `plan`, owner `owner@<slug>.test`.
fn create(url: &str, slug: &str, plan: &str) {
    let email = format!("owner@{slug}.test");
    let password = format!("demo-password-{slug}");
    assert_ok(&tenantctl(
        url,
        &[
            "tenant",
            "create",
            "--name",
            &format!("{slug} Inc"),
            "--slug",
            slug,
            "--owner-email",
            &email,
            "--owner-password",
            &password,
            "--plan",
            plan,
        ],
    ));
}

async fn count(url: &str, sql: &str) -> i64 {
    one::<i64>(url, &format!("select count(*) from ({sql}) as rows")).await
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
    assert_fails_with(&o, "taken");
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
    assert_fails_with(&o, "acme");
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
    assert_fails_with(&o, "--yes");
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
    assert_fails_with(&o, "acme");
}

#[tokio::test]
async fn tenant_commands_need_a_migrated_public_schema() {
    let url = tenantry_testkit::fresh_database().await.url;
    for args in [CREATE, &["tenant", "list", "--json"][..]] {
        let o = tenantctl(&url, args);
        assert_fails_with(&o, "migrate-schemas");
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
    let url = migrated().await;

    let mut bad = CREATE.to_vec();
    bad[5] = "Bad_Slug";
    let o = tenantctl(&url, &bad);
    assert_fails_with(&o, "--slug");

    let mut bad = CREATE.to_vec();
    bad[9] = "short";
    let o = tenantctl(&url, &bad);
    assert_fails_with(&o, "--owner-password");

    let o = tenantctl(&url, &["migrate-schemas", "--tenant", "nobody"]);
    assert_fails_with(&o, "nobody");
    let o = tenantctl(&url, &["migrate-schemas", "--jobs", "0"]);
    assert_fails_with(&o, "--jobs");

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
    assert_fails_with(&o, "DATABASE_URL");
    let o = command(&["tenant", "list"])
        .output()
        .expect("run tenantctl");
    assert_fails_with(&o, "DATABASE_URL");
}

#[test]
fn an_unreachable_database_is_named_in_the_error() {
    let url = tenantry_testkit::with_database(
        &tenantry_testkit::admin_url(),
        "no_such_database_for_tenantctl",
    );
    let o = tenantctl(&url, &["migrate-schemas"]);
    assert_fails_with(&o, "no_such_database_for_tenantctl");
}

#[tokio::test]
async fn user_deactivate_ends_sessions_and_activate_restores_the_account() {
    let url = migrated().await;
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
    assert_fails_with(&o, "no account has the email");
}

// ---------------------------------------------------------------------------------------------
// tenant seed
// ---------------------------------------------------------------------------------------------

/// Everything the seed chose that does not depend on the date, in creation order.
async fn fingerprint(url: &str) -> String {
    one(
        url,
        "select string_agg(concat_ws('|', p.name, p.status, t.title, t.status, t.priority, \
                array_to_string(t.tags, ','), u.email), E'\n' order by p.id, t.id) \
           from tenant_acme.projects p join tenant_acme.tasks t on t.project_id = p.id \
           left join public.users u on u.id = t.assignee_id",
    )
    .await
}

const SEED: &[&str] = &[
    "tenant",
    "seed",
    "acme",
    "--projects",
    "4",
    "--tasks-per-project",
    "10",
    "--members",
    "5",
];

#[tokio::test]
async fn seed_fills_a_tenant_through_the_domain_and_its_audit_trail() {
    let url = migrated().await;
    create(&url, "acme", "starter");

    let o = tenantctl(&url, SEED);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("seeded acme as owner@acme.test"), "{out}");
    assert!(out.contains("5 member(s) added"), "{out}");
    assert!(
        out.contains("seed-password-acme"),
        "the password is printed: {out}"
    );

    // Members: the owner and five verified accounts with mixed roles.
    let company = "(select id from public.companies where slug = 'acme')";
    assert_eq!(
        count(
            &url,
            &format!("select 1 from public.memberships where company_id = {company}")
        )
        .await,
        6
    );
    assert_eq!(
        count(
            &url,
            &format!(
                "select distinct role from public.memberships where company_id = {company} \
                  and role <> 'owner'"
            )
        )
        .await,
        3,
        "admins, members and viewers"
    );
    assert_eq!(
        one::<String>(
            &url,
            "select m.role || ' ' || u.full_name from public.users u \
               join public.memberships m on m.user_id = u.id \
              where u.email = 'ada.lovelace@acme.test'"
        )
        .await,
        "admin Ada Lovelace"
    );
    assert_eq!(
        count(
            &url,
            "select 1 from public.users where email like '%@acme.test' \
              and email <> 'owner@acme.test' and email_verified_at is null"
        )
        .await,
        0,
        "seeded accounts are verified"
    );
    assert_eq!(
        count(
            &url,
            "select 1 from public.outbox where payload->>'kind' <> 'welcome'"
        )
        .await,
        0,
        "no verification email for vouched accounts"
    );
    // The owner's membership (made by `tenant create`) is welcomed; seeded members are not.
    assert_eq!(
        count(
            &url,
            "select 1 from public.outbox where payload->>'kind' = 'welcome' \
               and payload->>'to' = 'owner@acme.test'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&url, "select 1 from public.outbox").await,
        1,
        "nothing for the seeded members"
    );

    // Projects, mixed statuses, each with dates and ten tasks.
    assert_eq!(count(&url, "select 1 from tenant_acme.projects").await, 4);
    assert_eq!(
        count(&url, "select distinct status from tenant_acme.projects").await,
        3,
        "active, planned, completed"
    );
    assert_eq!(
        count(
            &url,
            "select 1 from tenant_acme.projects where start_date is null or end_date is null"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &url,
            "select project_id from tenant_acme.tasks group by project_id having count(*) = 10"
        )
        .await,
        4
    );

    // Teams: the owner leads every project, with two to four writers; no viewers.
    assert_eq!(
        count(
            &url,
            "select p.id from tenant_acme.projects p join tenant_acme.project_members pm \
                 on pm.project_id = p.id \
              group by p.id having count(*) between 3 and 5 \
                 and bool_or(pm.user_id = p.owner_id and pm.role = 'lead')"
        )
        .await,
        4
    );
    assert_eq!(
        count(
            &url,
            "select 1 from tenant_acme.project_members pm join public.memberships m \
                 on m.user_id = pm.user_id where m.role = 'viewer'"
        )
        .await,
        0
    );

    // Tasks: assignees only from the project's team, some unassigned, some overdue, some done.
    assert_eq!(
        count(
            &url,
            "select 1 from tenant_acme.tasks t where t.assignee_id is not null \
               and not exists (select 1 from tenant_acme.project_members pm \
                                where pm.project_id = t.project_id and pm.user_id = t.assignee_id)"
        )
        .await,
        0,
        "every assignee is on the task's project team"
    );
    assert!(
        count(
            &url,
            "select 1 from tenant_acme.tasks where assignee_id is null"
        )
        .await
            > 0
    );
    assert!(
        count(
            &url,
            "select 1 from tenant_acme.tasks where assignee_id is not null \
               and assignee_id <> (select owner_id from tenant_acme.projects limit 1)"
        )
        .await
            > 0,
        "members, not only the owner, have tasks"
    );
    assert!(
        count(
            &url,
            "select 1 from tenant_acme.tasks \
              where due_at < now() and status not in ('done', 'cancelled')"
        )
        .await
            > 0,
        "some tasks are overdue"
    );
    assert!(count(&url, "select 1 from tenant_acme.tasks where due_at > now()").await > 0);
    assert!(
        count(
            &url,
            "select 1 from tenant_acme.tasks where status = 'done' and completed_at is not null"
        )
        .await
            > 0
    );
    assert_eq!(
        count(
            &url,
            "select 1 from tenant_acme.tasks where (status = 'done') <> (completed_at is not null)"
        )
        .await,
        0
    );
    assert!(count(&url, "select distinct status from tenant_acme.tasks").await >= 4);
    assert!(count(&url, "select distinct priority from tenant_acme.tasks").await >= 3);
    assert!(
        count(
            &url,
            "select 1 from tenant_acme.tasks where cardinality(tags) > 0"
        )
        .await
            > 0
    );

    // Notes: two or three markdown notes per project.
    let notes = count(
        &url,
        "select 1 from tenant_acme.documents where kind = 'note' and project_id is not null",
    )
    .await;
    assert!((8..=12).contains(&notes), "{notes} notes");
    assert_eq!(
        count(
            &url,
            "select p.id from tenant_acme.projects p join tenant_acme.documents d \
                 on d.project_id = p.id group by p.id having count(*) >= 2"
        )
        .await,
        4
    );
    assert!(
        one::<bool>(
            &url,
            "select bool_and(c.content like '# %') from tenant_acme.document_contents c"
        )
        .await
    );

    // The trail: every change, by the owner, from the command, in one run.
    let seeded = "select action from tenant_acme.audit_log \
                  where user_agent like 'tenantctl/% tenant seed' and ip is null \
                    and actor_user_id = (select id from public.users where email = 'owner@acme.test')";
    for (action, n) in [
        ("member.added", 5),
        ("project.created", 4),
        ("task.created", 40),
        ("document.created", notes),
    ] {
        assert_eq!(
            count(&url, &format!("{seeded} and action = '{action}'")).await,
            n,
            "{action}"
        );
    }
    assert_eq!(
        count(
            &url,
            &format!("{seeded} and action = 'project.member_added'")
        )
        .await,
        count(&url, "select 1 from tenant_acme.project_members").await - 4,
        "every team member but the owners"
    );
    assert_eq!(
        count(&url, "select 1 from tenant_acme.audit_log").await,
        count(&url, seeded).await,
        "nothing unaudited or from elsewhere"
    );
    assert_eq!(
        count(
            &url,
            "select distinct request_id from tenant_acme.audit_log where request_id like 'cli-%'"
        )
        .await,
        1
    );

    // The same arguments make the same data (in another database); another --seed other data.
    let first = fingerprint(&url).await;
    assert_eq!(seeded_elsewhere(SEED).await, first);
    assert_ne!(seeded_elsewhere(&with(SEED, &["--seed", "7"])).await, first);
}

/// The [`fingerprint`] of acme seeded with `args` in a fresh database.
async fn seeded_elsewhere(args: &[&str]) -> String {
    let url = migrated().await;
    create(&url, "acme", "starter");
    assert_ok(&tenantctl(&url, args));
    fingerprint(&url).await
}

#[tokio::test]
async fn seed_refuses_what_the_plan_cannot_hold_and_changes_nothing() {
    let url = migrated().await;
    // Free: at most 5 members and 3 projects.
    create(&url, "acme", "free");
    let nothing_changed = || async {
        assert_eq!(count(&url, "select 1 from public.memberships").await, 1);
        assert_eq!(count(&url, "select 1 from public.users").await, 1);
        assert_eq!(count(&url, "select 1 from tenant_acme.projects").await, 0);
        assert_eq!(count(&url, "select 1 from tenant_acme.audit_log").await, 0);
    };

    let o = tenantctl(&url, &["tenant", "seed", "acme", "--members", "5"]);
    assert_fails_with(&o, "max_members");
    assert!(stderr(&o).contains("at most 5 members"), "{}", stderr(&o));
    assert!(stderr(&o).contains("Nothing was changed"), "{}", stderr(&o));
    nothing_changed().await;

    let o = tenantctl(
        &url,
        &[
            "tenant",
            "seed",
            "acme",
            "--members",
            "2",
            "--projects",
            "4",
        ],
    );
    assert_fails_with(&o, "max_projects");
    assert!(stderr(&o).contains("at most 3 projects"), "{}", stderr(&o));
    nothing_changed().await;

    // Exactly at both limits is fine.
    let o = tenantctl(
        &url,
        &[
            "tenant",
            "seed",
            "acme",
            "--members",
            "4",
            "--projects",
            "3",
            "--tasks-per-project",
            "2",
        ],
    );
    assert_ok(&o);
    assert_eq!(count(&url, "select 1 from public.memberships").await, 5);
    assert_eq!(count(&url, "select 1 from tenant_acme.projects").await, 3);

    // One more project is refused, naming the limit.
    let o = tenantctl(
        &url,
        &[
            "tenant",
            "seed",
            "acme",
            "--members",
            "0",
            "--projects",
            "1",
        ],
    );
    assert_fails_with(&o, "max_projects");
    assert_eq!(count(&url, "select 1 from tenant_acme.projects").await, 3);

    // And an unknown tenant is named.
    let o = tenantctl(&url, &["tenant", "seed", "nobody"]);
    assert_fails_with(&o, "no tenant has the slug nobody");
}

#[tokio::test]
async fn seed_again_skips_members_and_adds_projects_unless_if_empty() {
    let url = migrated().await;
    create(&url, "acme", "starter");
    let args = [
        "tenant",
        "seed",
        "acme",
        "--projects",
        "2",
        "--tasks-per-project",
        "3",
        "--members",
        "3",
    ];
    assert_ok(&tenantctl(&url, &args));
    let o = command(&args)
        .env("DATABASE_URL", &url)
        .env("TENANTCTL_MEMBER_PASSWORD", "another-member-password")
        .output()
        .unwrap();
    assert_ok(&o);
    let out = stdout(&o);
    for email in [
        "ada.lovelace@acme.test",
        "grace.hopper@acme.test",
        "alan.turing@acme.test",
    ] {
        assert!(
            out.contains(&format!("skipped {email}: already a member")),
            "{out}"
        );
    }
    assert!(out.contains("0 member(s) added, 3 skipped"), "{out}");
    assert!(!out.contains("password"), "no password to print: {out}");
    assert_eq!(count(&url, "select 1 from public.memberships").await, 4);
    assert_eq!(count(&url, "select 1 from tenant_acme.projects").await, 4);
    assert_eq!(
        count(&url, "select distinct name from tenant_acme.projects").await,
        4,
        "the second run continues the sequence"
    );
    assert_eq!(count(&url, "select 1 from tenant_acme.tasks").await, 12);

    // --if-empty: a tenant with projects is left alone.
    let o = tenantctl(&url, &with_args(&args, &["--if-empty"]));
    assert_ok(&o);
    assert!(stdout(&o).contains("nothing seeded"), "{}", stdout(&o));
    assert_eq!(count(&url, "select 1 from tenant_acme.projects").await, 4);

    // An account of another organization with a seed address is skipped, not taken over.
    create(&url, "globex", "starter");
    exec(
        &url,
        "update public.users set email = 'ada.lovelace@globex.test' \
          where email = 'ada.lovelace@acme.test'",
    )
    .await;
    let o = tenantctl(
        &url,
        &["tenant", "seed", "globex", "--members", "2", "--if-empty"],
    );
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.contains("skipped ada.lovelace@globex.test: has an account but is not a member here"),
        "{out}"
    );
    assert!(out.contains("1 member(s) added, 1 skipped"), "{out}");
    assert_eq!(
        count(
            &url,
            "select 1 from public.memberships m join public.companies c on c.id = m.company_id \
              where c.slug = 'globex'"
        )
        .await,
        2,
        "the owner and grace.hopper"
    );
}

fn with_args<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = base.to_vec();
    v.extend_from_slice(extra);
    v
}

// ---------------------------------------------------------------------------------------------
// user deactivate and tasks
// ---------------------------------------------------------------------------------------------

/// In `slug`'s schema: a project of its owner with `dev@elsewhere.test` on the team; dev has
/// three open tasks, one done and one cancelled; the owner has one open task.
async fn tasks_for_dev(url: &str, slug: &str) {
    exec(
        url,
        &format!(
            "insert into public.memberships (id, user_id, company_id, role) \
               select gen_random_uuid(), u.id, c.id, 'member' from public.users u, public.companies c \
                where u.email = 'dev@elsewhere.test' and c.slug = '{slug}';
             set search_path = tenant_{slug};
             insert into projects (id, name, owner_id) \
               select gen_random_uuid(), 'Launch', id from public.users where email = 'owner@{slug}.test';
             insert into project_members (project_id, user_id, role) \
               select p.id, p.owner_id, 'lead' from projects p;
             insert into project_members (project_id, user_id, role) \
               select p.id, u.id, 'contributor' from projects p, public.users u \
                where u.email = 'dev@elsewhere.test';
             insert into tasks (id, project_id, title, status, assignee_id, created_by, completed_at) \
               select gen_random_uuid(), p.id, s.title, s.status, \
                      case when s.title = 'owner task' then p.owner_id else u.id end, p.owner_id, \
                      case when s.status = 'done' then now() end \
                 from projects p, public.users u, \
                      (values ('one', 'todo'), ('two', 'in_progress'), ('three', 'in_review'), \
                              ('shipped', 'done'), ('dropped', 'cancelled'), \
                              ('owner task', 'todo')) as s (title, status) \
                where u.email = 'dev@elsewhere.test';"
        ),
    )
    .await;
}

#[tokio::test]
async fn user_deactivate_unassigns_open_tasks_in_every_organization() {
    let url = migrated().await;
    create(&url, "acme", "starter");
    create(&url, "globex", "starter");
    create(&url, "initech", "starter");
    exec(
        &url,
        "insert into public.users (id, email, password_hash, email_verified_at) \
         values (gen_random_uuid(), 'dev@elsewhere.test', 'x', now())",
    )
    .await;
    tasks_for_dev(&url, "acme").await;
    tasks_for_dev(&url, "globex").await;
    let dev = "(select id from public.users where email = 'dev@elsewhere.test')";

    let o = tenantctl(&url, &["user", "deactivate", "dev@elsewhere.test"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("acme: 3 open task(s) unassigned"), "{out}");
    assert!(out.contains("globex: 3 open task(s) unassigned"), "{out}");
    assert!(!out.contains("initech"), "not a member there: {out}");

    for schema in ["tenant_acme", "tenant_globex"] {
        assert_eq!(
            one::<String>(
                &url,
                &format!(
                    "select string_agg(title || ':' || coalesce(u.email, '-'), ' ' order by title) \
                       from {schema}.tasks t left join public.users u on u.id = t.assignee_id"
                )
            )
            .await,
            format!(
                "dropped:dev@elsewhere.test one:- owner task:owner@{}.test shipped:dev@elsewhere.test three:- two:-",
                schema.trim_start_matches("tenant_")
            ),
            "open tasks unassigned, closed ones and others' untouched in {schema}"
        );
        // One entry per task, by the command (no actor), before and after.
        let entries = format!(
            "select 1 from {schema}.audit_log where action = 'task.unassigned' \
               and actor_user_id is null and actor_api_key_id is null and ip is null \
               and user_agent like 'tenantctl/% user deactivate' and request_id like 'cli-%' \
               and target_type = 'task' \
               and (before->>'assignee_id')::uuid = {dev} and after->'assignee_id' = 'null'::jsonb"
        );
        assert_eq!(count(&url, &entries).await, 3, "{schema}");
        assert_eq!(
            count(&url, &format!("select 1 from {schema}.audit_log")).await,
            3,
            "{schema}"
        );
    }
    assert_eq!(
        count(&url, "select 1 from tenant_initech.audit_log").await,
        0
    );

    // Again: nothing left to unassign, nothing recorded.
    let o = tenantctl(&url, &["user", "deactivate", "dev@elsewhere.test"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("acme: 0 open task(s) unassigned"),
        "{}",
        stdout(&o)
    );
    assert_eq!(count(&url, "select 1 from tenant_acme.audit_log").await, 3);

    // Re-activating gives nothing back: the tasks stay unassigned.
    assert_ok(&tenantctl(
        &url,
        &["user", "activate", "dev@elsewhere.test"],
    ));
    assert_eq!(
        count(
            &url,
            &format!("select 1 from tenant_acme.tasks where assignee_id = {dev}")
        )
        .await,
        2
    );
}

/// `tenantctl jobs run cleanup.platform --at AT`.
fn run_cleanup(url: &str, at: &str) -> Output {
    tenantctl(url, &["jobs", "run", "cleanup.platform", "--at", at])
}

/// Sessions, account tokens and outbox rows of every age around the clean-up's rules, as of
/// `now` (2026-12-06T03:00Z, a Sunday of ISO week 2026-W49).
async fn seed_cleanup_rows(url: &str) {
    exec(
        url,
        "insert into public.users (id, email, password_hash, full_name) \
           values ('00000000-0000-7000-8000-000000000001', 'a@x.test', 'x', 'A') \
           on conflict do nothing; \
         insert into public.sessions (id, user_id, created_at, expires_at, revoked_at) values \
           ('00000000-0000-7000-8000-0000000000a1', '00000000-0000-7000-8000-000000000001', \
            '2026-11-01', '2026-12-06T02:59:00Z', null), \
           ('00000000-0000-7000-8000-0000000000a2', '00000000-0000-7000-8000-000000000001', \
            '2026-11-01', '2026-12-20', null), \
           ('00000000-0000-7000-8000-0000000000a3', '00000000-0000-7000-8000-000000000001', \
            '2026-11-01', '2026-12-20', '2026-11-28T00:00:00Z'), \
           ('00000000-0000-7000-8000-0000000000a4', '00000000-0000-7000-8000-000000000001', \
            '2026-11-01', '2026-12-20', '2026-12-01T00:00:00Z') on conflict do nothing; \
         insert into public.refresh_tokens (token_hash, session_id) values \
           ('\\x01', '00000000-0000-7000-8000-0000000000a1'), \
           ('\\x02', '00000000-0000-7000-8000-0000000000a2') on conflict do nothing; \
         insert into public.account_tokens (id, user_id, purpose, token_hash, expires_at, used_at) values \
           (gen_random_uuid(), '00000000-0000-7000-8000-000000000001', 'verify_email', \
            decode(repeat('01', 32), 'hex'), '2026-12-04T00:00:00Z', null), \
           (gen_random_uuid(), '00000000-0000-7000-8000-000000000001', 'verify_email', \
            decode(repeat('02', 32), 'hex'), '2026-12-05T12:00:00Z', null), \
           (gen_random_uuid(), '00000000-0000-7000-8000-000000000001', 'password_reset', \
            decode(repeat('03', 32), 'hex'), '2026-12-07T00:00:00Z', '2026-12-04T00:00:00Z'), \
           (gen_random_uuid(), '00000000-0000-7000-8000-000000000001', 'password_reset', \
            decode(repeat('04', 32), 'hex'), '2026-12-07T00:00:00Z', null) on conflict do nothing; \
         insert into public.outbox (payload, created_at, dispatched_at) values \
           ('{}', '2026-11-20', '2026-11-20'), ('{}', '2026-11-20', null), \
           ('{}', '2026-12-05', '2026-12-05');",
    )
    .await;
}

#[tokio::test]
async fn jobs_run_cleanup_deletes_exactly_what_is_spent_once_per_week() {
    let url = migrated().await;
    seed_cleanup_rows(&url).await;
    let at = "2026-12-06T03:00:00Z";
    let o = run_cleanup(&url, at);
    assert_ok(&o);
    assert!(
        stdout(&o)
            .contains("deleted 2 session(s), 2 account token(s), 1 delivered and 1 undelivered"),
        "{}",
        stdout(&o)
    );
    // Kept: the live session, the one revoked five days ago (inside its week of grace), the
    // token that expired 15 hours ago (inside its day), the unused live token, the recent mail.
    let sessions: Vec<String> = {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .query("select id::text from public.sessions order by id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(
        sessions,
        [
            "00000000-0000-7000-8000-0000000000a2",
            "00000000-0000-7000-8000-0000000000a4"
        ]
    );
    assert_eq!(
        one::<i64>(&url, "select count(*) from public.refresh_tokens").await,
        1,
        "the expired session's refresh tokens went with it"
    );
    assert_eq!(
        one::<i64>(&url, "select count(*) from public.account_tokens").await,
        2
    );
    assert_eq!(
        one::<i64>(&url, "select count(*) from public.outbox").await,
        1
    );
    let outcome: serde_json::Value = one(
        &url,
        "select outcome from public.job_runs where job = 'cleanup.platform' and period = '2026-W49' and status = 'done'",
    )
    .await;
    assert_eq!(outcome["sessions"], 2);

    // The same week again (another worker, a retry): not run a second time.
    seed_cleanup_rows(&url).await;
    let o = run_cleanup(&url, "2026-12-06T23:00:00Z");
    assert_ok(&o);
    assert!(stdout(&o).contains("already run"), "{}", stdout(&o));
    assert_eq!(
        one::<i64>(&url, "select count(*) from public.outbox").await,
        4
    );
    // The next week runs.
    let o = run_cleanup(&url, "2026-12-13T03:00:00Z");
    assert_ok(&o);
    assert!(stdout(&o).contains("2026-W50 (run"), "{}", stdout(&o));
    let o = tenantctl(&url, &["jobs", "list"]);
    assert_ok(&o);
    let line = stdout(&o)
        .lines()
        .find(|l| l.starts_with("cleanup.platform"))
        .unwrap()
        .to_owned();
    let counts: Vec<&str> = line.split_whitespace().take(5).collect();
    assert_eq!(counts, ["cleanup.platform", "2", "0", "0", "0"], "{line}");
    // The next firing of the default schedule (daily 03:00 UTC), after now.
    let next = line.split_whitespace().nth(7).unwrap_or_default();
    let next = chrono::DateTime::parse_from_rfc3339(next).expect(&line);
    assert!(next.to_rfc3339().contains("T03:00:00"), "{line}");
    assert!(next > chrono::Utc::now(), "{line}");
    assert_fails(&tenantctl(&url, &["jobs", "run", "cleanup.nothing"]));

    // A tenant's part, by slug: once per week.
    create(&url, "acme", "starter");
    let tenant_run = [
        "jobs",
        "run",
        "cleanup.tenant",
        "--tenant",
        "acme",
        "--at",
        at,
    ];
    let o = tenantctl(&url, &tenant_run);
    assert_ok(&o);
    assert!(stdout(&o).contains("acme 2026-W49 (run"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("deleted 0 task(s), 0 invitation(s) and 0 report(s)"),
        "{}",
        stdout(&o)
    );
    let o = tenantctl(&url, &tenant_run);
    assert!(stdout(&o).contains("already run"), "{}", stdout(&o));
    assert_fails(&tenantctl(
        &url,
        &["jobs", "run", "cleanup.tenant", "--tenant", "nope"],
    ));
    assert_fails(&tenantctl(&url, &["jobs", "run", "cleanup.tenant"]));
}

#[tokio::test]
async fn concurrent_runs_of_one_period_run_once_and_stale_or_failed_claims_are_taken_over() {
    let url = migrated().await;
    seed_cleanup_rows(&url).await;
    // Five workers at once: exactly one runs the week.
    let at = "2026-12-06T03:00:00Z";
    let runs: Vec<_> = (0..5)
        .map(|_| {
            command(&["jobs", "run", "cleanup.platform", "--at", at])
                .env("DATABASE_URL", &url)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = runs
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let ran = outputs
        .iter()
        .filter(|o| stdout(o).contains("deleted"))
        .count();
    assert_eq!(
        ran,
        1,
        "{:?}",
        outputs.iter().map(stdout).collect::<Vec<_>>()
    );
    assert_eq!(
        one::<i64>(&url, "select count(*) from public.job_runs").await,
        1
    );

    // A claim whose worker died (running, claimed 20 minutes before the next attempt) is taken over.
    exec(
        &url,
        "insert into public.job_runs (job, period, status, claimed_at) \
           values ('cleanup.platform', '2026-W50', 'running', '2026-12-13T03:00:00Z')",
    )
    .await;
    let o = run_cleanup(&url, "2026-12-13T03:10:00Z");
    assert!(
        stdout(&o).contains("already run, being run"),
        "fresh claim: {}",
        stdout(&o)
    );
    let o = run_cleanup(&url, "2026-12-13T03:20:00Z");
    assert!(
        stdout(&o).contains("2026-W50 (run"),
        "stale claim: {}",
        stdout(&o)
    );
    assert_eq!(
        one::<i32>(
            &url,
            "select attempts from public.job_runs where period = '2026-W50'"
        )
        .await,
        2
    );

    // A failed run is retried after its backoff, and left dead after five attempts until
    // `jobs retry`.
    exec(
        &url,
        "insert into public.job_runs (job, period, status, attempts, claimed_at, finished_at, last_error) \
           values ('cleanup.platform', '2026-W51', 'failed', 1, '2026-12-20T03:00:00Z', \
                   '2026-12-20T03:00:00Z', 'boom'), \
                  ('cleanup.platform', '2026-W52', 'failed', 5, '2026-12-27T03:00:00Z', \
                   '2026-12-27T03:00:00Z', 'boom again')",
    )
    .await;
    let o = run_cleanup(&url, "2026-12-20T03:00:30Z");
    assert!(
        stdout(&o).contains("waiting"),
        "inside the backoff: {}",
        stdout(&o)
    );
    let o = run_cleanup(&url, "2026-12-20T03:01:00Z");
    assert!(
        stdout(&o).contains("2026-W51 (run"),
        "after it: {}",
        stdout(&o)
    );
    let o = tenantctl(&url, &["jobs", "failed"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("2026-W52") && stdout(&o).contains("attempts=5 dead"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("2026-W51"), "{}", stdout(&o));
    let o = run_cleanup(&url, "2026-12-27T04:00:00Z");
    assert!(stdout(&o).contains("waiting"), "dead: {}", stdout(&o));
    let dead: i64 = one(
        &url,
        "select id from public.job_runs where period = '2026-W52'",
    )
    .await;
    assert_ok(&tenantctl(&url, &["jobs", "retry", &dead.to_string()]));
    let o = run_cleanup(&url, "2026-12-27T04:00:00Z");
    assert!(stdout(&o).contains("2026-W52 (run"), "{}", stdout(&o));
    assert_fails(&tenantctl(&url, &["jobs", "retry", "999999"]));
}

/// `jobs run billing.period_end --at T`: the day's run, once: an expired trial moves to free,
/// a past_due subscription beyond `BILLING_PAST_DUE_GRACE_DAYS` becomes read-only, each owner
/// emailed through the outbox.
#[tokio::test]
async fn jobs_run_billing_period_end_once_per_day() {
    let url = tenantry_testkit::fresh_database().await.url;
    assert_ok(&tenantctl(&url, &["migrate-schemas"]));
    create(&url, "acme", "starter");
    create(&url, "globex", "starter");
    create(&url, "initech", "starter");
    exec(
        &url,
        "update public.subscriptions s set status = 'trialing', \
                trial_end = '2026-05-01T00:00:00Z' \
           from public.companies c where c.id = s.company_id and c.slug = 'acme'; \
         update public.subscriptions s set status = 'past_due', \
                past_due_since = '2026-04-28T12:00:00Z', provider_subscription_id = 'sub_g' \
           from public.companies c where c.id = s.company_id and c.slug = 'globex'; \
         update public.subscriptions s set status = 'past_due', \
                past_due_since = '2026-04-30T12:00:00Z', provider_subscription_id = 'sub_i' \
           from public.companies c where c.id = s.company_id and c.slug = 'initech';",
    )
    .await;
    let run = |at: &str| {
        command(&["jobs", "run", "billing.period_end", "--at", at])
            .env("DATABASE_URL", &url)
            .env("BILLING_PAST_DUE_GRACE_DAYS", "3")
            .output()
            .expect("run tenantctl")
    };
    let o = run("2026-05-02T03:00:00Z");
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("billing.period_end 2026-05-02"), "{out}");
    assert!(out.contains("1 moved to free"), "{out}");
    // globex is past due since 3.6 days (over a grace of 3), initech since 1.6 days.
    assert!(
        out.contains("1 past due beyond 3 day(s) made read-only"),
        "{out}"
    );
    assert!(out.contains("2 email(s) queued"), "{out}");
    let state = |slug: &'static str| {
        let url = url.clone();
        async move {
            one::<String>(
                &url,
                &format!(
                    "select s.plan || ' ' || s.status || ' ' || (s.past_due_locked_at is not null) \
                       from public.subscriptions s join public.companies c on c.id = s.company_id \
                      where c.slug = '{slug}'"
                ),
            )
            .await
        }
    };
    assert_eq!(state("acme").await, "free active false");
    assert_eq!(state("globex").await, "starter past_due true");
    assert_eq!(state("initech").await, "starter past_due false");
    assert_eq!(
        count(
            &url,
            "select 1 from public.outbox where payload->>'kind' = 'subscription_notice'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &url,
            "select 1 from tenant_globex.audit_log where action = 'subscription.past_due_locked'"
        )
        .await,
        1
    );
    // The same day again: not run twice.
    let o = run("2026-05-02T09:00:00Z");
    assert_ok(&o);
    assert!(stdout(&o).contains("already run"), "{}", stdout(&o));
    assert_eq!(
        count(
            &url,
            "select 1 from public.outbox where payload->>'kind' = 'subscription_notice'"
        )
        .await,
        2
    );
    // A bad grace is refused, naming the variable.
    let o = command(&[
        "jobs",
        "run",
        "billing.period_end",
        "--at",
        "2026-05-03T03:00:00Z",
    ])
    .env("DATABASE_URL", &url)
    .env("BILLING_PAST_DUE_GRACE_DAYS", "soon")
    .output()
    .expect("run tenantctl");
    assert_fails_with(&o, "BILLING_PAST_DUE_GRACE_DAYS");
    // Listed with its schedule.
    let o = tenantctl(&url, &["jobs", "list"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("billing.period_end"), "{}", stdout(&o));
}

/// `jobs run reminders.due|reminders.overdue --tenant SLUG --at T`: the tenant's run at that
/// instant, once; the digest not before 08:00 in the organization's time zone; the links from
/// the tenant's primary domain with `LINK_PORT`; both listed with their schedules.
#[tokio::test]
async fn jobs_run_the_reminders_of_a_tenant_at_an_instant() {
    let url = tenantry_testkit::fresh_database().await.url;
    assert_ok(&tenantctl(&url, &["migrate-schemas"]));
    create(&url, "acme", "starter");
    exec(
        &url,
        "update public.company_settings set timezone = 'America/New_York'; \
         insert into tenant_acme.projects (id, name, owner_id) \
           select gen_random_uuid(), 'Launch', id from public.users; \
         insert into tenant_acme.project_members (project_id, user_id, role) \
           select id, owner_id, 'lead' from tenant_acme.projects; \
         insert into tenant_acme.tasks (id, project_id, title, assignee_id, created_by, due_at) \
           select gen_random_uuid(), p.id, t.title, p.owner_id, p.owner_id, t.due::timestamptz \
             from tenant_acme.projects p, (values ('Soon', '2026-05-01T18:00:00Z'), \
                                                 ('Late', '2026-04-29T18:00:00Z')) as t (title, due);",
    )
    .await;
    let run = |job: &str, at: &str| {
        command(&["jobs", "run", job, "--tenant", "acme", "--at", at])
            .env("DATABASE_URL", &url)
            .env("LINK_PORT", "8080")
            .output()
            .expect("run tenantctl")
    };
    let o = run("reminders.due", "2026-05-01T12:00:00Z");
    assert_ok(&o);
    assert!(
        stdout(&o).contains("reminders.due acme 2026-05-01T12:00:00Z (run")
            && stdout(&o).contains("sent 1 reminder(s)"),
        "{}",
        stdout(&o)
    );
    let o = run("reminders.due", "2026-05-01T12:00:00Z");
    assert!(stdout(&o).contains("already run"), "{}", stdout(&o));
    let o = run("reminders.due", "2026-05-01T12:15:00Z");
    assert!(stdout(&o).contains("sent 0 reminder(s)"), "{}", stdout(&o));
    let link: String = one(
        &url,
        "select payload->>'link' from public.outbox where payload->>'kind' = 'task_due'",
    )
    .await;
    assert!(
        link.starts_with("http://acme.localhost:8080/tasks/"),
        "{link}"
    );

    // 07:59 in New York (EDT, UTC-4): not yet, and nothing claimed.
    let o = run("reminders.overdue", "2026-05-01T11:59:00Z");
    assert_ok(&o);
    assert!(stdout(&o).contains("not yet 08:00"), "{}", stdout(&o));
    assert_eq!(
        count(
            &url,
            "select 1 from public.job_runs where job = 'reminders.overdue'"
        )
        .await,
        0
    );
    let o = run("reminders.overdue", "2026-05-01T12:00:00Z");
    assert_ok(&o);
    assert!(
        stdout(&o).contains("reminders.overdue acme 2026-05-01 (run")
            && stdout(&o).contains("1 overdue task(s), 2 email(s)"),
        "{}",
        stdout(&o)
    );
    let o = run("reminders.overdue", "2026-05-02T03:59:00Z");
    assert!(stdout(&o).contains("already run"), "{}", stdout(&o));
    assert_eq!(
        count(
            &url,
            "select 1 from public.outbox where payload->>'kind' = 'overdue_digest'"
        )
        .await,
        2
    );

    let o = tenantctl(&url, &["jobs", "list"]);
    assert_ok(&o);
    for (job, done) in [("reminders.due", "2"), ("reminders.overdue", "1")] {
        let line = stdout(&o)
            .lines()
            .find(|l| l.starts_with(job))
            .unwrap_or_default()
            .to_owned();
        let counts: Vec<&str> = line.split_whitespace().take(2).collect();
        assert_eq!(counts, [job, done], "{line}");
    }
    assert_fails(&tenantctl(&url, &["jobs", "run", "reminders.due"]));
}

#[tokio::test]
async fn jobs_list_tells_the_age_of_the_worker_heartbeat() {
    let url = tenantry_testkit::fresh_database().await.url;
    assert_ok(&tenantctl(&url, &["migrate-schemas"]));
    let prefix = format!("test-{}", uuid_like());
    let redis_url = tenantry_testkit::redis_url();
    let list = |redis: Option<&str>| {
        let mut c = command(&["jobs", "list"]);
        c.env("DATABASE_URL", &url)
            .env("REDIS_PREFIX", &prefix)
            .env_remove("REDIS_URL");
        if let Some(redis) = redis {
            c.env("REDIS_URL", redis);
        }
        c.output().expect("run tenantctl")
    };
    // Without Redis the runs are still listed, and the line says why there is no age.
    let o = list(None);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("worker heartbeat: unknown (REDIS_URL not set)"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("cleanup.platform"), "{}", stdout(&o));
    // No worker has beaten.
    let o = list(Some(&redis_url));
    assert_ok(&o);
    assert!(
        stdout(&o).contains("worker heartbeat: none"),
        "{}",
        stdout(&o)
    );
    // A beat 90 seconds ago, as the worker writes it.
    let at = chrono::Utc::now() - chrono::Duration::seconds(90);
    let mut redis = redis::Client::open(redis_url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    redis::cmd("SET")
        .arg(format!("{prefix}:worker:heartbeat"))
        .arg(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .arg("EX")
        .arg(60)
        .query_async::<()>(&mut redis)
        .await
        .expect("set heartbeat");
    let o = list(Some(&redis_url));
    assert_ok(&o);
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with("worker heartbeat: "))
        .unwrap_or_default();
    assert!(
        line.starts_with(&format!(
            "worker heartbeat: {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        "{out}"
    );
    let age: i64 = line
        .rsplit('(')
        .next()
        .and_then(|s| s.strip_suffix("s ago)"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    assert!((90..=95).contains(&age), "{out}");
}

/// A unique suffix for Redis keys (the clock and the process id are enough in one test run).
fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

/// An organization its owner deleted (marked here as `DELETE /api/v1/organization` marks it):
/// `tenant list` shows the pending drop, `tenant activate` refuses and points to `restore`,
/// `tenant restore` re-activates it within the grace period (audited as the command in the
/// tenant's trail, the owner emailed) and refuses, naming why, a tenant that is not pending
/// deletion, an unknown one, and one whose grace period is over.
#[tokio::test]
async fn tenant_restore_undoes_an_owners_deletion_within_its_grace() {
    let url = migrated().await;
    create(&url, "acme", "starter");
    create(&url, "globex", "free");
    let mark = |drop_after: &str| {
        format!(
            "update public.companies set status = 'suspended', \
                    deletion_requested_at = timestamptz '{drop_after}' - interval '30 days', \
                    drop_after = timestamptz '{drop_after}' where slug = 'acme'"
        )
    };
    exec(&url, &mark("2099-01-06T12:00:00Z")).await;

    let o = tenantctl(&url, &["tenant", "list", "--json"]);
    assert_ok(&o);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["slug"], "acme");
    assert_eq!(list[0]["status"], "suspended");
    assert_eq!(list[0]["drop_after"], "2099-01-06T12:00:00+00:00");
    assert_eq!(list[1]["drop_after"], serde_json::Value::Null);
    let o = tenantctl(&url, &["tenant", "list"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("suspended (drops 2099-01-06)"),
        "{}",
        stdout(&o)
    );

    let o = tenantctl(&url, &["tenant", "activate", "acme"]);
    assert_fails_with(&o, "tenantctl tenant restore acme");
    assert_eq!(
        one::<String>(
            &url,
            "select status from public.companies where slug = 'acme'"
        )
        .await,
        "suspended"
    );

    let o = tenantctl(&url, &["tenant", "restore", "acme"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("acme is active again"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        count(
            &url,
            "select 1 from public.companies where slug = 'acme' and status = 'active' \
               and deletion_requested_at is null and drop_after is null"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &url,
            "select 1 from tenant_acme.audit_log where action = 'organization.restored' \
               and actor_user_id is null and user_agent like 'tenantctl/% tenant restore'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &url,
            "select 1 from public.outbox where payload->>'kind' = 'organization_restored' \
               and payload->>'to' = 'owner@acme.test'"
        )
        .await,
        1
    );

    // Not pending: refused, nothing recorded twice.
    let o = tenantctl(&url, &["tenant", "restore", "acme"]);
    assert_fails_with(&o, "acme is not pending deletion");
    let o = tenantctl(&url, &["tenant", "restore", "globex"]);
    assert_fails_with(&o, "globex is not pending deletion");
    let o = tenantctl(&url, &["tenant", "restore", "nobody"]);
    assert_fails_with(&o, "no tenant has the slug nobody");
    assert_eq!(
        count(
            &url,
            "select 1 from tenant_acme.audit_log where action = 'organization.restored'"
        )
        .await,
        1
    );

    // The grace period is over (the worker has not dropped it yet): too late.
    exec(&url, &mark("2020-01-06T12:00:00Z")).await;
    let o = tenantctl(&url, &["tenant", "restore", "acme"]);
    assert_fails_with(&o, "can no longer be restored");
    assert_eq!(
        one::<String>(
            &url,
            "select status from public.companies where slug = 'acme'"
        )
        .await,
        "suspended"
    );
}

#[tokio::test]
async fn domain_commands_add_list_move_primary_and_remove_audited() {
    let url = migrated().await;
    create(&url, "acme", "starter");
    create(&url, "globex", "free");
    let ok = |args: &[&str]| {
        let o = tenantctl(&url, args);
        assert_ok(&o);
        stdout(&o)
    };
    let refused = |args: &[&str], code: i32, needle: &str| {
        let o = tenantctl(&url, args);
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{}", stderr(&o));
    };
    let primary = || async {
        one::<String>(
            &url,
            "select d.domain from public.domains d join public.companies c on c.id = d.company_id \
              where c.slug = 'acme' and d.is_primary",
        )
        .await
    };

    assert!(ok(&["domain", "add", "acme", "Tasks.Acme-Corp.test."]).contains("now routes to acme"));
    assert!(ok(&["domain", "add", "acme", "tasks.acme-corp.test"]).contains("unchanged"));
    refused(
        &["domain", "add", "globex", "tasks.acme-corp.test"],
        4,
        "another organization",
    );
    refused(&["domain", "add", "acme", "localhost"], 3, "base domain");
    refused(
        &["domain", "add", "acme", "globex.localhost"],
        3,
        "slug hosts",
    );
    refused(
        &["domain", "add", "acme", "app.acme.localhost"],
        3,
        "slug hosts",
    );
    assert_fails_with(
        &tenantctl(&url, &["domain", "add", "acme", "bad_name.test"]),
        "letters",
    );
    assert_fails_with(
        &tenantctl(&url, &["domain", "add", "nobody", "x.test"]),
        "no tenant",
    );
    // With a base domain given, the old default is an ordinary name.
    let o = command(&["domain", "add", "globex", "globex.localhost"])
        .env("DATABASE_URL", &url)
        .env("BASE_DOMAIN", "example.com")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("unchanged"), "{}", stdout(&o));

    assert_eq!(primary().await, "acme.localhost");
    assert!(
        ok(&["domain", "primary", "acme", "tasks.acme-corp.test"]).contains("was acme.localhost")
    );
    assert_eq!(primary().await, "tasks.acme-corp.test");
    assert!(ok(&["domain", "primary", "acme", "tasks.acme-corp.test"]).contains("already"));
    assert_fails_with(
        &tenantctl(&url, &["domain", "remove", "acme", "tasks.acme-corp.test"]),
        "primary domain cannot be removed",
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["domain", "list", "acme", "--json"])).unwrap();
    assert_eq!(listed[0]["domain"], "tasks.acme-corp.test");
    assert_eq!(listed[0]["is_primary"], true);
    assert_eq!(listed[1]["domain"], "acme.localhost");
    assert_eq!(listed.as_array().unwrap().len(), 2);

    ok(&["domain", "primary", "acme", "acme.localhost"]);
    assert!(ok(&["domain", "remove", "acme", "tasks.acme-corp.test"]).contains("no longer routes"));
    assert_fails_with(
        &tenantctl(&url, &["domain", "remove", "acme", "tasks.acme-corp.test"]),
        "no such domain",
    );
    assert_eq!(
        count(
            &url,
            "select 1 from public.domains where domain like '%acme-corp%'"
        )
        .await,
        0
    );
    let schema: String = one(
        &url,
        "select schema_name from public.companies where slug = 'acme'",
    )
    .await;
    let actions: Vec<String> = {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .query(
                &format!(
                    "select action || ' ' || user_agent from \"{schema}\".audit_log \
                      where action like 'domain.%' order by id"
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let agent = format!("tenantctl/{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        actions,
        [
            format!("domain.added {agent} domain add"),
            format!("domain.primary_changed {agent} domain primary"),
            format!("domain.primary_changed {agent} domain primary"),
            format!("domain.removed {agent} domain remove"),
        ]
    );
}

/// Where `tenant list --json` says each tenant lives (`None` when it names no node).
fn nodes_of(url: &str) -> Vec<(String, Option<String>)> {
    let o = tenantctl(url, &["tenant", "list", "--json"]);
    assert_ok(&o);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["slug"].as_str().unwrap().to_owned(),
                r["node"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// On a Citus cluster (`just test-citus`): each tenant lives on a worker, `cluster nodes` counts
/// them, `tenant move` moves one online with its data, the rebalancer's dry run changes nothing,
/// and bad targets are refused. On a single server (`just test`): the placement commands refuse
/// with a message naming Citus and `tenant list` names no node.
#[tokio::test]
async fn citus_placement_commands_list_move_and_rebalance_tenants() {
    let url = migrated().await;
    create(&url, "acme", "starter");
    create(&url, "globex", "starter");
    let workers = tenantry_testkit::citus_workers();

    if workers.is_empty() {
        assert!(nodes_of(&url).iter().all(|(_, node)| node.is_none()));
        for args in [
            &["cluster", "nodes"][..],
            &["cluster", "rebalance", "--dry-run"],
            &["tenant", "move", "acme", "--to", "127.0.0.1:5432"],
        ] {
            assert_fails_with(&tenantctl(&url, args), "needs a Citus cluster");
        }
        return;
    }

    // Every tenant is on a worker.
    let placed = nodes_of(&url);
    assert_eq!(placed.len(), 2);
    for (slug, node) in &placed {
        let node = node
            .as_deref()
            .unwrap_or_else(|| panic!("{slug} has no node"));
        assert!(
            workers.iter().any(|w| w == node),
            "{slug} on {node}, not a worker"
        );
    }

    // `cluster nodes`: the coordinator and both workers, tenant counts adding up.
    let o = tenantctl(&url, &["cluster", "nodes", "--json"]);
    assert_ok(&o);
    let nodes: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert_eq!(
        nodes.iter().filter(|n| n["role"] == "coordinator").count(),
        1
    );
    assert_eq!(
        nodes
            .iter()
            .map(|n| n["tenants"].as_i64().unwrap())
            .sum::<i64>(),
        2
    );
    for worker in &workers {
        let on: i64 = placed
            .iter()
            .filter(|(_, n)| n.as_deref() == Some(worker))
            .count()
            .try_into()
            .unwrap();
        let n = nodes.iter().find(|n| n["node"] == worker.as_str()).unwrap();
        assert_eq!(n["tenants"].as_i64().unwrap(), on, "{worker}");
        if on > 0 {
            assert!(n["bytes"].as_i64().unwrap() > 0, "{n}");
        }
    }

    // Data written before the move is there after it.
    exec(
        &url,
        "insert into tenant_acme.audit_log (action, actor_user_id, target_type, target_id) \
         select 'citus.marker', id, 'user', id::text from public.users where email = 'owner@acme.test'",
    )
    .await;
    let acme_from = placed[0].1.clone().unwrap();
    assert_eq!(placed[0].0, "acme");
    let target = workers.iter().find(|w| **w != acme_from).unwrap().clone();
    let o = tenantctl(&url, &["tenant", "move", "acme", "--to", &target]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains(&format!("moved acme to {target} in ")),
        "{}",
        stdout(&o)
    );
    // The test cluster commits synchronously, so the move is online.
    assert!(
        stdout(&o).contains("online move (logical replication)"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        nodes_of(&url),
        vec![("acme".to_owned(), Some(target.clone())), placed[1].clone()]
    );
    assert_eq!(
        one::<i64>(
            &url,
            "select count(*) from tenant_acme.audit_log where action = 'citus.marker'"
        )
        .await,
        1
    );

    // Again to the same node: nothing to do. Unknown nodes and tenants are refused.
    let o = tenantctl(&url, &["tenant", "move", "acme", "--to", &target]);
    assert_ok(&o);
    assert!(stdout(&o).contains("already on"), "{}", stdout(&o));
    assert_fails_with(
        &tenantctl(&url, &["tenant", "move", "acme", "--to", "127.0.0.1:1"]),
        "is not a node of this cluster",
    );
    assert_fails_with(
        &tenantctl(&url, &["tenant", "move", "nobody", "--to", &target]),
        "no tenant has the slug nobody",
    );
    assert_fails_with(
        &tenantctl(&url, &["tenant", "move", "acme", "--to", "nowhere"]),
        "must be HOST:PORT",
    );

    // The rebalancer's dry run prints its plan and moves nothing.
    let before = nodes_of(&url);
    let o = tenantctl(&url, &["cluster", "rebalance", "--dry-run"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("dry run: nothing moved") || stdout(&o).contains("balanced"),
        "{}",
        stdout(&o)
    );
    assert_eq!(nodes_of(&url), before);
    // And the real run leaves one tenant per worker when both were on one.
    let o = tenantctl(&url, &["cluster", "rebalance"]);
    assert_ok(&o);
    let after = nodes_of(&url);
    let mut used: Vec<_> = after.iter().filter_map(|(_, n)| n.clone()).collect();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 2, "{after:?}\n{}", stdout(&o));
}

/// The upgrade from one server to a cluster, as an operator runs it (README, "Running on
/// Citus"): tenants created on a database without Citus stay plain schemas on the coordinator
/// when the citus extension arrives; `migrate-schemas --check` names them (and public) and exits
/// 1, `migrate-schemas` distributes them and says so, and then they are on workers and movable.
/// On a single server (`just test`) both runs find nothing to do.
#[tokio::test]
async fn citus_migrate_schemas_distributes_tenants_created_before_citus() {
    let database = tenantry_testkit::fresh_plain_database().await;
    let url = database.url.clone();
    assert_ok(&tenantctl(&url, &["migrate-schemas"]));
    create(&url, "acme", "starter");
    create(&url, "globex", "starter");
    tenantry_testkit::add_citus(&database).await;
    let workers = tenantry_testkit::citus_workers();

    let check = tenantctl(&url, &["migrate-schemas", "--check"]);
    let run = tenantctl(&url, &["migrate-schemas"]);
    assert_ok(&run);
    if workers.is_empty() {
        assert_ok(&check);
        assert!(
            stdout(&run).contains("up to date 3, 0 failed"),
            "{}",
            stdout(&run)
        );
        return;
    }
    assert_fails_with(&check, "not distributed: public, acme, globex");
    for name in ["public", "acme", "globex"] {
        assert!(
            stdout(&check)
                .lines()
                .any(|l| l.starts_with(name) && l.contains("NOT DISTRIBUTED")),
            "{name}: {}",
            stdout(&check)
        );
        assert!(
            stdout(&run)
                .lines()
                .any(|l| l.starts_with(name) && l.contains(" distributed (")),
            "{name}: {}",
            stdout(&run)
        );
    }
    assert!(
        stdout(&run).contains("migrated 0, up to date 0, distributed 3, 0 failed"),
        "{}",
        stdout(&run)
    );
    for (slug, node) in nodes_of(&url) {
        let node = node.unwrap_or_else(|| panic!("{slug} has no node"));
        assert!(workers.contains(&node), "{slug} on {node}");
    }
    let again = tenantctl(&url, &["migrate-schemas"]);
    assert_ok(&again);
    assert!(
        stdout(&again).contains("migrated 0, up to date 3, 0 failed"),
        "{}",
        stdout(&again)
    );
    assert_ok(&tenantctl(&url, &["migrate-schemas", "--check"]));
}
