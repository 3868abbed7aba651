-- Transactional outbox for emails: a row is written in the same transaction as the change that
-- causes the email, so a rolled-back request sends nothing and a committed one cannot lose it.
-- The API pushes committed rows to the apalis queue after commit; the worker relays any row the
-- API could not push (Redis down, process killed between commit and push).
create table public.outbox (
    id bigint generated always as identity primary key,
    payload jsonb not null,
    created_at timestamptz not null default now(),
    dispatched_at timestamptz
);
create index outbox_pending on public.outbox (id) where dispatched_at is null;
