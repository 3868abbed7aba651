-- Login sessions and their refresh tokens. A session is one login (a refresh-token family);
-- every refresh rotates the token, and presenting a rotated token revokes the whole session.

create table public.sessions (
    id uuid primary key,
    user_id uuid not null references public.users (id) on delete cascade,
    -- null for an account session (base host), else the company it was opened for.
    company_id uuid references public.companies (id) on delete cascade,
    created_at timestamptz not null default now(),
    last_used_at timestamptz not null default now(),
    expires_at timestamptz not null,
    revoked_at timestamptz,
    revoked_reason text,
    ip text,
    user_agent text
);
create index sessions_user_id on public.sessions (user_id) where revoked_at is null;

create table public.refresh_tokens (
    -- SHA-256 of the token's secret; the secret itself is never stored.
    token_hash bytea primary key,
    session_id uuid not null references public.sessions (id) on delete cascade,
    created_at timestamptz not null default now(),
    -- Set when the token was exchanged for its successor; presenting it again is reuse.
    rotated_at timestamptz
);
create index refresh_tokens_session_id on public.refresh_tokens (session_id);
