-- Periodic job runs, one row per job, tenant (null: platform-wide) and period. A worker runs a
-- period's job only after inserting (or taking over) its row, so however many workers fire the
-- same schedule, each period runs once; a claim that never finishes is taken over after a
-- timeout, and a failed run is retried with backoff until it is left dead.

create table public.job_runs (
    id bigint generated always as identity primary key,
    job text not null check (length(job) between 1 and 100),
    company_id uuid references public.companies (id) on delete cascade,
    period text not null check (length(period) between 1 and 100),
    status text not null check (status in ('running', 'done', 'skipped', 'failed')),
    attempts integer not null default 1 check (attempts >= 1),
    claimed_at timestamptz not null,
    finished_at timestamptz,
    -- What the run did (counts), as the job reports it.
    outcome jsonb,
    last_error text,
    constraint job_runs_once unique nulls not distinct (job, company_id, period)
);
create index job_runs_recent on public.job_runs (job, claimed_at desc);
