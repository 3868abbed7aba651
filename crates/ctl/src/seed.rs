//! `tenantctl tenant seed`: fills an existing tenant with demo data (members, projects with their
//! teams, tasks and markdown notes) so a development dashboard looks alive.
//!
//! Everything is made through the domain's own functions (`members::add_vouched`,
//! `projects::create`, `teams::put`, `tasks::create`, `documents::create`) acting as the tenant's
//! owner from an operator origin, so the plan's rules and the audit trail apply as they do to
//! requests. Choices come from a fixed-seed RNG per project (seeded from the slug, `--seed` and
//! the project's place in the sequence), so the same arguments give the same data; only dates
//! move, being relative to today.

use anyhow::{bail, Context};
use chrono::{DateTime, Days, NaiveDate, Utc};
use clap::Args;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::process::ExitCode;
use tenantry_public::companies::{self, Company};
use tenantry_public::db::Db;
use tenantry_public::memberships::{self, Member, MemberFilter, Role};
use tenantry_public::{passwords, users, Email, Origin, Password, Slug, UserId};
use tenantry_tenant::audit::{Acting, Actor};
use tenantry_tenant::documents::{self, Content, DocumentKind, NewDocument};
use tenantry_tenant::members::{self, MembershipError, NewAccount};
use tenantry_tenant::projects::{self, NewProject, Project, ProjectStatus};
use tenantry_tenant::tasks::{self, NewTask, TaskPriority, TaskStatus};
use tenantry_tenant::teams::{self, TeamError, TeamRole};
use tenantry_tenant::{tenant_head, TenantConn};

#[derive(Args)]
#[command(after_long_help = "\
Re-running: members whose email already has an account are skipped (and named); projects, \
with their teams, tasks and notes, are added again on every run, continuing the sequence \
where the tenant's project count leaves it (so a second run adds different projects). With \
--if-empty nothing happens once the tenant has any project, which makes the command safe to \
repeat (`just dev` uses it).

Plan limits: before anything is written, the members and projects asked for are checked \
against the plan's max_members and max_projects; when they do not fit, nothing is changed and \
the command fails naming the limit. Ask for fewer, or change the plan.

Every change is made by the tenant's owner through the domain's functions and recorded in the \
tenant's audit trail with the user agent `tenantctl/<version> tenant seed`.")]
pub struct SeedArgs {
    /// The tenant to fill.
    slug: String,
    /// Projects to create (each with its team, tasks and 2-3 notes).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=1000))]
    projects: u32,
    /// Tasks in each new project.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(0..=1000))]
    tasks_per_project: u32,
    /// Members to add besides the owner (admins, members and viewers, verified accounts).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=500))]
    members: u32,
    /// The new members' password [default: seed-password-<slug>, printed once].
    #[arg(long, env = "TENANTCTL_MEMBER_PASSWORD", hide_env_values = true)]
    member_password: Option<String>,
    /// Another number makes other choices (still the same for the same arguments).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Do nothing when the tenant already has projects.
    #[arg(long)]
    if_empty: bool,
}

/// What a run made, for the summary line.
#[derive(Default)]
struct Tally {
    members: usize,
    skipped: usize,
    projects: usize,
    tasks: usize,
    done: usize,
    overdue: usize,
    notes: usize,
}

pub async fn seed(db: &Db, args: SeedArgs) -> anyhow::Result<ExitCode> {
    let slug = Slug::parse(&args.slug).map_err(|e| anyhow::anyhow!("{:?} {e}", args.slug))?;
    let password = match &args.member_password {
        Some(p) => Password::parse(p).map_err(|e| anyhow::anyhow!("--member-password {e}"))?,
        None => Password::parse(&default_password(&slug))
            .map_err(|e| anyhow::anyhow!("the default member password {e}"))?,
    };
    let (company, owner) = tenant_and_owner(db, &slug).await?;
    let mut conn = TenantConn::acquire(db, &company.schema_name).await?;
    let existing_projects = projects::count(&conn).await?;
    if args.if_empty && existing_projects > 0 {
        println!("{slug} already has {existing_projects} project(s); nothing seeded (--if-empty)");
        return Ok(ExitCode::SUCCESS);
    }

    // Which of the asked-for members are new, and whether the plan holds them and the projects.
    let mut tally = Tally::default();
    let mut new_members = Vec::new();
    {
        let client = db.public().await?;
        for person in people(&slug, args.members) {
            let Some(user) = users::find_by_email(client.client(), &person.email).await? else {
                new_members.push(person);
                continue;
            };
            let why = match memberships::find(client.client(), user.id, company.id).await? {
                Some(_) => "already a member",
                None => "has an account but is not a member here (accounts join by invitation)",
            };
            println!("skipped {}: {why}", person.email);
            tally.skipped += 1;
        }
    }
    check_limits(
        db,
        &company,
        existing_projects,
        new_members.len(),
        args.projects,
    )
    .await?;

    let origin = Origin::command(&format!(
        "tenantctl/{} tenant seed",
        env!("CARGO_PKG_VERSION")
    ));
    let acting = Acting {
        company: company.id,
        user: owner.user_id,
        actor: Actor::User(owner.user_id),
        origin: &origin,
    };

    if !new_members.is_empty() {
        // One hash for every new account: they share a known password anyway, and a hash each
        // would cost ~50 ms apiece.
        let hash = passwords::hash(&password).await?;
        for person in &new_members {
            let email = Email::parse(&person.email)
                .map_err(|e| anyhow::anyhow!("{:?} {e}", person.email))?;
            let account = NewAccount {
                password_hash: hash.clone(),
                full_name: person.full_name.clone(),
            };
            match members::add_vouched(&mut conn, &acting, &email, person.role, account).await {
                Ok(_) => tally.members += 1,
                // Created since the check above (a concurrent run): skipped like the others.
                Err(MembershipError::AlreadyMember | MembershipError::AccountExists) => {
                    println!("skipped {}: already has an account", person.email);
                    tally.skipped += 1;
                }
                Err(e @ MembershipError::PlanLimit { .. }) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "max_members: stopped after adding {} member(s)",
                        tally.members
                    )))
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("adding {}", person.email)))
                }
            }
        }
    }

    let pool = team_pool(db, &company, owner.user_id).await?;
    let base = base_seed(&slug, args.seed);
    let now = Utc::now();
    for k in 0..args.projects {
        let index = u64::try_from(existing_projects).unwrap_or(0) + u64::from(k);
        let mut rng = StdRng::seed_from_u64(mix(base, index));
        let new = project_spec(index, &mut rng, now.date_naive());
        let project = match projects::create(&mut conn, &acting, &new).await {
            Ok(p) => p,
            Err(e @ projects::ProjectError::PlanLimit { .. }) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("stopped after {} project(s)", tally.projects)))
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("creating {:?}", new.name))),
        };
        tally.projects += 1;
        let team = staff(&mut conn, &acting, &project, owner.clone(), &pool, &mut rng).await?;
        // The catalogue's titles in an order of this project's own.
        let mut titles: Vec<usize> = (0..TASKS.len()).collect();
        titles.shuffle(&mut rng);
        for j in 0..args.tasks_per_project {
            let new = task_spec(&project, j, &titles, &team, &mut rng, now);
            let overdue = new.due_at.is_some_and(|d| d < now) && is_open(new.status);
            tasks::create(&mut conn, &acting, &new)
                .await
                .with_context(|| format!("creating task {:?} in {:?}", new.title, project.name))?;
            tally.tasks += 1;
            tally.done += usize::from(new.status == TaskStatus::Done);
            tally.overdue += usize::from(overdue);
        }
        for new in notes(&project, &team, index, now.date_naive()) {
            documents::create(&mut conn, &acting, &new)
                .await
                .with_context(|| format!("creating note {:?} in {:?}", new.title, project.name))?;
            tally.notes += 1;
        }
    }

    println!(
        "seeded {slug} as {}: {} member(s) added, {} skipped; {} project(s), {} task(s) ({} done, {} overdue), {} note(s)",
        owner.email,
        tally.members,
        tally.skipped,
        tally.projects,
        tally.tasks,
        tally.done,
        tally.overdue,
        tally.notes
    );
    if tally.members > 0 {
        match args.member_password {
            None => println!(
                "new members sign in with the password {}",
                password.expose()
            ),
            Some(_) => println!("new members sign in with the password you gave"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The password of seeded members when none is given: known, so a developer can sign in as them.
fn default_password(slug: &Slug) -> String {
    format!("seed-password-{slug}")
}

/// The tenant (schema at head) and its owner (an active account).
async fn tenant_and_owner(db: &Db, slug: &Slug) -> anyhow::Result<(Company, Member)> {
    let client = db.public().await?;
    let Some(company) = companies::find_by_slug(client.client(), slug).await? else {
        bail!("no tenant has the slug {slug}");
    };
    if company.schema_version.unwrap_or(0) < tenant_head() {
        bail!("{slug}'s schema is behind head: run `tenantctl migrate-schemas` first");
    }
    let filter = MemberFilter {
        role: Some(Role::Owner),
        search: None,
    };
    let owner = memberships::list(client.client(), company.id, &filter, None, 1)
        .await?
        .items
        .into_iter()
        .next()
        .with_context(|| format!("{slug} has no owner"))?;
    let active = users::find_by_id(client.client(), owner.user_id)
        .await?
        .is_some_and(|u| u.is_active);
    if !active {
        bail!(
            "{slug}'s owner {} is deactivated: seeding acts as the owner (`tenantctl user activate`)",
            owner.email
        );
    }
    Ok((company, owner))
}

/// Refuses, before anything is written, members or projects the plan cannot hold. (The domain
/// functions check again under the company lock; this is so a refusal changes nothing.)
async fn check_limits(
    db: &Db,
    company: &Company,
    projects: i64,
    new_members: usize,
    new_projects: u32,
) -> anyhow::Result<()> {
    let mut client = db.public().await?;
    // Read under the company lock, which the rollback at the end of this block releases.
    let seats = {
        let tx = client.transaction().await?;
        memberships::lock_company(&*tx, company.id)
            .await?
            .context("the tenant's company row is missing")?
    };
    let adding = i64::try_from(new_members).unwrap_or(i64::MAX);
    if let Some(max) = seats.max_members {
        if seats.members + adding > i64::from(max) {
            bail!(
                "the {} plan allows at most {max} members (max_members); {} has {} and seeding \
                 {adding} more would pass it. Nothing was changed: ask for fewer with --members, \
                 or change the plan",
                seats.plan,
                company.slug,
                seats.members
            );
        }
    }
    if let Some(max) = seats.max_projects {
        if projects + i64::from(new_projects) > i64::from(max) {
            bail!(
                "the {} plan allows at most {max} projects (max_projects); {} has {projects} and \
                 seeding {new_projects} more would pass it. Nothing was changed: ask for fewer \
                 with --projects, or change the plan",
                seats.plan,
                company.slug
            );
        }
    }
    Ok(())
}

/// Who may join project teams: the tenant's active members who may write (not viewers), other
/// than the owner (who leads every project), in the order they joined.
async fn team_pool(db: &Db, company: &Company, owner: UserId) -> anyhow::Result<Vec<Member>> {
    let client = db.public().await?;
    let mut pool = Vec::new();
    let mut after = None;
    loop {
        let page = memberships::list(
            client.client(),
            company.id,
            &MemberFilter::default(),
            after,
            200,
        )
        .await?;
        after = page.last().map(|m| m.membership_id);
        pool.extend(
            page.items
                .into_iter()
                .filter(|m| m.is_active && m.user_id != owner && m.role.can_write()),
        );
        if !page.has_more {
            return Ok(pool);
        }
    }
}

/// Puts two to four members of `pool` on the project's team (the first of three or more as a
/// second lead) and returns the team, owner first.
async fn staff(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    project: &Project,
    owner: Member,
    pool: &[Member],
    rng: &mut StdRng,
) -> anyhow::Result<Vec<Member>> {
    let mut candidates: Vec<&Member> = pool.iter().collect();
    candidates.shuffle(rng);
    let size = rng.random_range(2..=4).min(candidates.len());
    let mut team = vec![owner];
    for (i, member) in candidates.into_iter().take(size).enumerate() {
        let role = if i == 0 && size >= 3 {
            TeamRole::Lead
        } else {
            TeamRole::Contributor
        };
        match teams::put(conn, acting, Role::Owner, project.id, member.user_id, role).await {
            Ok(_) => team.push(member.clone()),
            // A deactivated account (its membership still active) cannot join; leave it out.
            Err(TeamError::NotMember) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "adding {} to the team of {:?}",
                    member.email, project.name
                )))
            }
        }
    }
    Ok(team)
}

fn is_open(status: TaskStatus) -> bool {
    !matches!(status, TaskStatus::Done | TaskStatus::Cancelled)
}

// ---------------------------------------------------------------------------------------------
// Deterministic choices
// ---------------------------------------------------------------------------------------------

/// FNV-1a of the slug, mixed with `--seed`: stable across runs, builds and platforms.
fn base_seed(slug: &Slug, seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in slug.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The seed of the project at `index` in the sequence: its data does not depend on how many
/// projects are asked for.
fn mix(base: u64, index: u64) -> u64 {
    base ^ index.wrapping_add(1).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// One of `choices` with probability proportional to its weight.
fn weighted<T: Copy>(rng: &mut StdRng, choices: &[(T, u32)]) -> T {
    let total: u32 = choices.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total.max(1));
    for (value, weight) in choices {
        if pick < *weight {
            return *value;
        }
        pick -= weight;
    }
    choices[0].0
}

fn plus_days(date: NaiveDate, days: i64) -> NaiveDate {
    let shifted = if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    };
    shifted.unwrap_or(date)
}

/// A new member to add: index-based, so `--members 3` is the first three of `--members 5`.
struct Person {
    email: String,
    full_name: String,
    role: Role,
}

/// Roles in turn: mostly members, an admin first, some viewers.
const ROLES: [Role; 8] = [
    Role::Admin,
    Role::Member,
    Role::Member,
    Role::Viewer,
    Role::Member,
    Role::Member,
    Role::Admin,
    Role::Viewer,
];

fn people(slug: &Slug, count: u32) -> Vec<Person> {
    (0..count as usize)
        .map(|i| {
            let (first, last) = PEOPLE[i % PEOPLE.len()];
            let round = i / PEOPLE.len();
            let (local, full_name) = if round == 0 {
                (format!("{first}.{last}"), format!("{first} {last}"))
            } else {
                let n = round + 1;
                (format!("{first}.{last}{n}"), format!("{first} {last} {n}"))
            };
            Person {
                email: format!("{}@{slug}.test", local.to_lowercase().replace(' ', "-")),
                full_name,
                role: ROLES[i % ROLES.len()],
            }
        })
        .collect()
}

/// Project statuses in turn, so any run of eight has every status.
const PROJECT_STATUSES: [ProjectStatus; 8] = [
    ProjectStatus::Active,
    ProjectStatus::Active,
    ProjectStatus::Planned,
    ProjectStatus::Completed,
    ProjectStatus::Active,
    ProjectStatus::Archived,
    ProjectStatus::Planned,
    ProjectStatus::Active,
];

fn project_spec(index: u64, rng: &mut StdRng, today: NaiveDate) -> NewProject {
    let at = usize::try_from(index).unwrap_or(0);
    let (name, description) = PROJECTS[at % PROJECTS.len()];
    let phase = at / PROJECTS.len();
    let name = if phase == 0 {
        name.to_owned()
    } else {
        format!("{name} (phase {})", phase + 1)
    };
    let status = PROJECT_STATUSES[at % PROJECT_STATUSES.len()];
    let (start, end) = match status {
        ProjectStatus::Active => (
            plus_days(today, -rng.random_range(14..90)),
            plus_days(today, rng.random_range(21..120)),
        ),
        ProjectStatus::Planned => {
            let start = plus_days(today, rng.random_range(7..45));
            (start, plus_days(start, rng.random_range(30..120)))
        }
        ProjectStatus::Completed => {
            let end = plus_days(today, -rng.random_range(3..60));
            (plus_days(end, -rng.random_range(30..150)), end)
        }
        ProjectStatus::Archived => {
            let end = plus_days(today, -rng.random_range(120..300));
            (plus_days(end, -rng.random_range(30..120)), end)
        }
    };
    NewProject {
        name,
        description: description.to_owned(),
        status,
        start_date: Some(start),
        end_date: Some(end),
    }
}

/// Task statuses by the project's: planned work is mostly to do, finished work closed.
fn task_statuses(project: ProjectStatus) -> &'static [(TaskStatus, u32)] {
    use TaskStatus as S;
    match project {
        ProjectStatus::Planned => &[(S::Todo, 85), (S::InProgress, 10), (S::Cancelled, 5)],
        ProjectStatus::Active => &[
            (S::Todo, 30),
            (S::InProgress, 22),
            (S::InReview, 13),
            (S::Done, 28),
            (S::Cancelled, 7),
        ],
        ProjectStatus::Completed => &[(S::Done, 85), (S::Cancelled, 15)],
        ProjectStatus::Archived => &[(S::Done, 70), (S::Cancelled, 30)],
    }
}

const PRIORITIES: [(TaskPriority, u32); 4] = [
    (TaskPriority::Low, 20),
    (TaskPriority::Medium, 45),
    (TaskPriority::High, 25),
    (TaskPriority::Urgent, 10),
];

/// Task `j` of `project`, titled after `titles[j]` of the catalogue. In an active project the first task is done and the second open and
/// overdue, so every active project shows both; the rest are drawn from `rng`.
fn task_spec(
    project: &Project,
    j: u32,
    titles: &[usize],
    team: &[Member],
    rng: &mut StdRng,
    now: DateTime<Utc>,
) -> NewTask {
    let at = j as usize;
    // The project's order of the catalogue; past its end, follow-ups.
    let (title, description) = TASKS[titles.get(at % TASKS.len()).copied().unwrap_or(0)];
    let round = at / TASKS.len();
    let title = if round == 0 {
        title.to_owned()
    } else {
        format!("{title} (follow-up {round})")
    };
    let active = project.status == ProjectStatus::Active;
    let status = match j {
        0 if active => TaskStatus::Done,
        1 if active => TaskStatus::InProgress,
        _ => weighted(rng, task_statuses(project.status)),
    };
    let priority = weighted(rng, &PRIORITIES);
    // About one task in six is nobody's.
    let assignee = if rng.random_bool(1.0 / 6.0) {
        None
    } else {
        team.get(rng.random_range(0..team.len().max(1)))
            .map(|m| m.user_id)
    };
    // Days from now: open work spreads around today (some overdue), closed work lies behind.
    let days = match (j, project.status, is_open(status)) {
        (1, ProjectStatus::Active, _) => Some(-rng.random_range(2..12)),
        (_, ProjectStatus::Planned, _) => Some(rng.random_range(10..90)),
        (_, ProjectStatus::Completed | ProjectStatus::Archived, _) => {
            Some(-rng.random_range(5..200))
        }
        (_, _, true) if rng.random_bool(0.1) => None,
        (_, _, true) => Some(rng.random_range(-20..45)),
        (_, _, false) => Some(rng.random_range(-40..5)),
    };
    let due_at = days.map(|d: i64| {
        let day = plus_days(now.date_naive(), d);
        day.and_hms_opt(17, 0, 0)
            .map_or(now, |t| DateTime::from_naive_utc_and_offset(t, Utc))
    });
    let mut tags: Vec<&str> = TAGS.to_vec();
    tags.shuffle(rng);
    let tags = tags
        .into_iter()
        .take(rng.random_range(0..=3))
        .map(str::to_owned)
        .collect();
    NewTask {
        project_id: project.id,
        title,
        description: description.to_owned(),
        tags,
        status,
        priority,
        assignee_id: assignee,
        due_at,
    }
}

/// Two or three markdown notes of a project: kickoff, a weekly sync, and for every other project
/// a decision log.
fn notes(project: &Project, team: &[Member], index: u64, today: NaiveDate) -> Vec<NewDocument> {
    let names: Vec<&str> = team.iter().map(display).collect();
    let people = names
        .iter()
        .map(|n| format!("- {n}"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut notes = vec![
        (
            "Kickoff notes".to_owned(),
            format!(
                "# {name}: kickoff\n\n{description}\n\n## Team\n\n{people}\n\n## Goals\n\n\
                 1. Agree on scope and the first milestone.\n\
                 2. Name an owner for every open question.\n\
                 3. Ship something small within two weeks.\n",
                name = project.name,
                description = project.description,
            ),
        ),
        (
            format!("Weekly sync {}", plus_days(today, -7)),
            format!(
                "# Weekly sync\n\n**Present:** {present}\n\n## Done\n\n- Reviewed the board; \
                 closed what shipped.\n\n## Next\n\n- [ ] Update the estimates of the overdue \
                 tasks\n- [ ] Demo the current state on Friday\n\n## Risks\n\n> Dependencies on \
                 other teams are the usual suspects.\n",
                present = names.join(", "),
            ),
        ),
    ];
    if index.is_multiple_of(2) {
        notes.push((
            "Decision log".to_owned(),
            format!(
                "# Decisions: {name}\n\n| date | decision | by |\n|---|---|---|\n\
                 | {d1} | Keep the scope to the first milestone | {lead} |\n\
                 | {d2} | Review every change before it ships | {lead} |\n",
                name = project.name,
                d1 = project.start_date.unwrap_or(today),
                d2 = plus_days(project.start_date.unwrap_or(today), 7),
                lead = names.first().copied().unwrap_or("the owner"),
            ),
        ));
    }
    notes
        .into_iter()
        .map(|(title, body)| NewDocument {
            project_id: Some(project.id),
            title,
            kind: DocumentKind::Note,
            filename: None,
            content: Content::note(body),
        })
        .collect()
}

fn display(m: &Member) -> &str {
    if m.full_name.trim().is_empty() {
        &m.email
    } else {
        &m.full_name
    }
}

// ---------------------------------------------------------------------------------------------
// Catalogues
// ---------------------------------------------------------------------------------------------

const PEOPLE: [(&str, &str); 24] = [
    ("Ada", "Lovelace"),
    ("Grace", "Hopper"),
    ("Alan", "Turing"),
    ("Katherine", "Johnson"),
    ("Edsger", "Dijkstra"),
    ("Barbara", "Liskov"),
    ("Donald", "Knuth"),
    ("Margaret", "Hamilton"),
    ("Dennis", "Ritchie"),
    ("Frances", "Allen"),
    ("Ken", "Thompson"),
    ("Radia", "Perlman"),
    ("John", "Backus"),
    ("Hedy", "Lamarr"),
    ("Claude", "Shannon"),
    ("Annie", "Easley"),
    ("Leslie", "Lamport"),
    ("Shafi", "Goldwasser"),
    ("Tim", "Berners-Lee"),
    ("Sophie", "Wilson"),
    ("Niklaus", "Wirth"),
    ("Evelyn", "Boyd Granville"),
    ("Tony", "Hoare"),
    ("Karen", "Sparck Jones"),
];

const PROJECTS: [(&str, &str); 16] = [
    ("Website relaunch", "A new marketing site: faster pages, a clearer pricing page and a blog that marketing can run on its own."),
    ("Mobile app v2", "The second version of the mobile app: offline mode, push notifications and a redesigned home screen."),
    ("Customer onboarding revamp", "Cut the time from sign-up to first value: guided setup, sample data and a checklist."),
    ("Billing migration", "Move subscriptions to the new billing provider without a single double charge."),
    ("Data warehouse", "One place for product and sales data, refreshed nightly, with the ten dashboards people ask for."),
    ("Security audit", "Prepare for the external audit: access reviews, dependency updates and written runbooks."),
    ("Support knowledge base", "Turn the top fifty support answers into searchable articles."),
    ("Q3 hiring plan", "Roles, interview loops and the onboarding week for the engineers joining this quarter."),
    ("API v2", "A versioned public API with keyset pagination, webhooks and proper error documents."),
    ("Office move", "Move to the new office over one weekend with no lost equipment."),
    ("Design system", "Shared components and tokens so every screen looks like the same product."),
    ("Performance sprint", "Halve the p95 latency of the five slowest pages."),
    ("Partner integrations", "Connectors for the three partner tools customers ask about most."),
    ("Accessibility review", "Bring the web app to WCAG 2.2 AA: keyboard paths, contrast and screen-reader labels."),
    ("Annual report", "Collect the numbers, write the story and publish the annual report."),
    ("Localization", "Ship the product in German, French and Japanese."),
];

const TASKS: [(&str, &str); 36] = [
    (
        "Write the project brief",
        "One page: the problem, who has it, what done looks like.",
    ),
    (
        "Set up the CI pipeline",
        "Build, lint and test on every push; block merges on red.",
    ),
    (
        "Draft the timeline",
        "Milestones with owners and dates; share it for comments.",
    ),
    (
        "Interview five customers",
        "Ask how they do this today and what annoys them most.",
    ),
    (
        "Fix the login redirect loop",
        "Users with an expired session bounce between two pages.",
    ),
    (
        "Review the analytics events",
        "Remove events nobody reads; document the rest.",
    ),
    (
        "Update the dependency list",
        "Upgrade what is behind; note anything that needs a migration.",
    ),
    (
        "Write the rollout plan",
        "Who gets it first, what we watch, how we roll back.",
    ),
    (
        "Design the settings page",
        "Group the options people change most at the top.",
    ),
    (
        "Load-test the new endpoint",
        "Find where it falls over and write the number down.",
    ),
    (
        "Prepare the demo",
        "A ten-minute walkthrough for Friday's all-hands.",
    ),
    (
        "Clean up the backlog",
        "Close what is stale, merge duplicates, size the rest.",
    ),
    (
        "Add monitoring alerts",
        "Page on error rate and latency, not on CPU.",
    ),
    (
        "Document the architecture",
        "A diagram and the three decisions that shaped it.",
    ),
    (
        "Migrate the old records",
        "Copy, verify the counts, then switch reads over.",
    ),
    (
        "Write the announcement",
        "Blog post and changelog entry; keep it short.",
    ),
    (
        "Triage the bug reports",
        "Label, reproduce, and assign the top ten.",
    ),
    (
        "Run the usability test",
        "Five participants, one task each, recorded.",
    ),
    (
        "Set up the staging environment",
        "Same configuration as production, smaller machines.",
    ),
    (
        "Negotiate the vendor contract",
        "Get the price for two years and an exit clause.",
    ),
    (
        "Write the onboarding checklist",
        "Everything a new teammate needs in their first week.",
    ),
    (
        "Translate the help pages",
        "Start with the ten most visited ones.",
    ),
    (
        "Review the access permissions",
        "Remove accounts that left; check every admin.",
    ),
    (
        "Create the email templates",
        "Welcome, reset and receipt; plain text first.",
    ),
    (
        "Plan the team offsite",
        "Two days, one agenda, no laptops in the afternoon.",
    ),
    (
        "Benchmark the search",
        "Compare the two candidates on our own data.",
    ),
    (
        "Refactor the export job",
        "Stream rows instead of building the file in memory.",
    ),
    (
        "Write the incident review",
        "Timeline, impact, what we change so it does not repeat.",
    ),
    (
        "Add keyboard shortcuts",
        "The five actions power users do all day.",
    ),
    (
        "Set the quarterly goals",
        "Three goals, each with a number.",
    ),
    (
        "Archive the old dashboards",
        "Keep the three that are still opened every week.",
    ),
    (
        "Check the legal wording",
        "Terms, privacy notice and cookie banner.",
    ),
    (
        "Budget review",
        "Compare spend with the plan; flag anything 10% over.",
    ),
    (
        "Record the walkthrough video",
        "Five minutes, captions included.",
    ),
    (
        "Pick the analytics tool",
        "Shortlist two, trial both for a week.",
    ),
    (
        "Close out the retrospective actions",
        "Every action gets an owner or is dropped.",
    ),
];

const TAGS: [&str; 12] = [
    "backend",
    "frontend",
    "design",
    "bug",
    "infra",
    "docs",
    "customer",
    "security",
    "research",
    "ops",
    "legal",
    "quick-win",
];
