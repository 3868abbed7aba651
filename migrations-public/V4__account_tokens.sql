-- Single-use tokens mailed to an account: email verification and password reset. Only the
-- SHA-256 of a token is stored. A token is spent by setting used_at (under a row lock), and
-- issuing a new reset token spends the account's older unused ones.
create table public.account_tokens (
    id uuid primary key,
    user_id uuid not null references public.users (id) on delete cascade,
    purpose text not null check (purpose in ('verify_email', 'password_reset')),
    token_hash bytea not null unique check (length(token_hash) = 32),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at timestamptz
);
create index account_tokens_user on public.account_tokens (user_id, purpose) where used_at is null;

-- Delivery attempts of an outbox row, for operators (a row that keeps failing is visible).
alter table public.outbox add column attempts integer not null default 0;
alter table public.outbox add column last_error text;
