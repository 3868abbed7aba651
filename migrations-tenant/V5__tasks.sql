-- Tasks of a project. Runs once per tenant schema with search_path set to that schema only.

create table tasks (
    id uuid primary key,
    project_id uuid not null references projects (id) on delete cascade,
    title text not null check (length(title) between 1 and 300),
    description text not null default '' check (length(description) <= 20000),
    status text not null default 'todo'
        check (status in ('todo', 'in_progress', 'in_review', 'done', 'cancelled')),
    priority text not null default 'medium' check (priority in ('low', 'medium', 'high', 'urgent')),
    assignee_id uuid references public.users (id),
    created_by uuid not null references public.users (id),
    due_at timestamptz,
    completed_at timestamptz,
    tags text[] not null default '{}' check (cardinality(tags) <= 20),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- `completed_at` is set exactly while the task is done.
    constraint tasks_completed_when_done check ((status = 'done') = (completed_at is not null))
);
-- Keyset pages of one project, and of everything (newest first).
create index tasks_project_id on tasks (project_id, id desc);
-- "My open tasks" and the worker's due/overdue scans only ever look at open tasks.
create index tasks_open_by_assignee on tasks (assignee_id, due_at)
    where status not in ('done', 'cancelled');
create index tasks_open_by_due on tasks (due_at)
    where status not in ('done', 'cancelled') and due_at is not null;
