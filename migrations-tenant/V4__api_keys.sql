-- API keys of this tenant. A key is shown once as `tnt_<prefix>_<secret>`; only the prefix (for
-- lookup) and the SHA-256 of the whole key are stored, never the secret. A key acts as its
-- creator with at most `role`, capped at request time by the creator's current membership.
create table api_keys (
    id uuid primary key,
    name text not null check (length(name) between 1 and 100),
    prefix text not null check (prefix ~ '^[a-z0-9]{12}$'),
    secret_hash bytea not null check (length(secret_hash) = 32),
    -- Never owner: the owner role is only handed over by an ownership transfer.
    role text not null check (role in ('admin', 'member', 'viewer')),
    created_by uuid not null references public.users (id),
    created_at timestamptz not null default now(),
    last_used_at timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz,
    revoked_by uuid references public.users (id)
);
create unique index api_keys_prefix on api_keys (prefix);
create index api_keys_created_by on api_keys (created_by);
create index audit_log_actor_api_key on audit_log (actor_api_key_id, id);
