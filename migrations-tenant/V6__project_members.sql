-- The team of each project, and indexes for the project list's orderings. Runs once per tenant
-- schema with search_path set to that schema only.

create table project_members (
    project_id uuid not null references projects (id) on delete cascade,
    user_id uuid not null references public.users (id),
    role text not null check (role in ('lead', 'contributor')),
    added_at timestamptz not null default now(),
    primary key (project_id, user_id)
);
-- "Every team this user is on", for removals from the organization.
create index project_members_user_id on project_members (user_id);

-- The project owner is always on the team: every existing project gets its owner as lead.
insert into project_members (project_id, user_id, role)
select id, owner_id, 'lead' from projects;

-- Keyset pages of `GET /projects?ordering=…` (each ordering is (column, id); nulls last).
create index projects_created_at on projects (created_at, id);
create index projects_updated_at on projects (updated_at, id);
create index projects_name on projects (name, id);
create index projects_start_date on projects (start_date, id);
create index projects_end_date on projects (end_date, id);
