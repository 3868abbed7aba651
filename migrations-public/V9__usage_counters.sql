-- Requests counted by the rate limiter, per company and period (an hour or a calendar month,
-- UTC, each named by its first instant). The server counts in Redis; the worker adds Redis's
-- counts here periodically, so monthly usage survives a Redis restart. Each flushed batch is
-- recorded in `usage_flushes` in the same transaction, so a batch that is flushed again (the
-- worker died between the commit and deleting the batch in Redis) is not counted twice.

create table public.usage_counters (
    company_id uuid not null references public.companies (id) on delete cascade,
    granularity text not null check (granularity in ('hour', 'month')),
    period_start timestamptz not null,
    requests bigint not null default 0 check (requests >= 0),
    primary key (company_id, granularity, period_start)
);

create table public.usage_flushes (
    batch text primary key check (length(batch) between 1 and 100),
    flushed_at timestamptz not null default now()
);

-- A plan's limits are part of each cached tenant route (the rate limiter reads
-- `requests_per_hour` from it): a change to plans empties the Host cache like a company change.
create trigger plans_routing_change
    after insert or update or delete on public.plans
    for each statement execute function public.notify_routing_change();
