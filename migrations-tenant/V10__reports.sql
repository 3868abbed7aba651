-- Project reports (POST /projects/{id}/reports): asked for by a member, built by the worker (the
-- project's tasks as CSV and its statistics as JSON), readable for seven days. The row is the
-- durable record of the request: it is written before anything is queued on Redis, and the
-- worker's sweep picks up rows still queued (or running on a worker that died), so a lost queue
-- push only delays a report. Runs once per tenant schema with search_path set to that schema.
create table reports (
    id uuid primary key,
    project_id uuid not null references projects (id) on delete cascade,
    requested_by uuid not null references public.users (id),
    status text not null default 'queued'
        check (status in ('queued', 'running', 'done', 'failed')),
    -- Why it failed (status failed only).
    error text check (length(error) <= 2000),
    -- The page the "ready" email links to, built by the API from the host the request came to.
    link text not null check (length(link) between 1 and 2000),
    csv text,
    summary jsonb,
    -- Builds started (a worker that died mid-build leaves it running; the sweep starts it again).
    attempts integer not null default 0 check (attempts >= 0),
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz,
    expires_at timestamptz not null,
    check (expires_at > created_at),
    check ((status = 'done') = (csv is not null and summary is not null and finished_at is not null)),
    check ((status = 'failed') = (error is not null))
);
-- The worker's sweep: reports still to build.
create index reports_pending on reports (created_at) where status in ('queued', 'running');
-- The weekly clean-up: expired reports.
create index reports_expiry on reports (expires_at);
-- A member's reports.
create index reports_requester on reports (requested_by, created_at);
