-- Invitations to join this tenant. The token is never stored: only its SHA-256, so a token is
-- bound to this schema (another tenant's host simply does not know it) and to the email it was
-- sent to. Status is derived: accepted, revoked, expired (expires_at passed) or pending.
create table invitations (
    id uuid primary key,
    email text not null check (length(email) between 3 and 254),
    -- Never owner: the owner role only moves by an ownership transfer.
    role text not null check (role in ('admin', 'member', 'viewer')),
    token_hash bytea not null unique check (length(token_hash) = 32),
    invited_by uuid references public.users (id) on delete set null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    accepted_at timestamptz,
    accepted_by uuid references public.users (id) on delete set null,
    revoked_at timestamptz,
    revoked_by uuid references public.users (id) on delete set null,
    constraint invitations_one_outcome check (accepted_at is null or revoked_at is null)
);
create index invitations_email on invitations (lower(email));
