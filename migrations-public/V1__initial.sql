-- Public schema: everything shared by all tenants. Tenant data never lives here.

create table public.plans (
    code text primary key check (code in ('free', 'starter', 'professional', 'enterprise')),
    name text not null,
    max_members integer,          -- null = unlimited
    max_projects integer,         -- null = unlimited
    max_storage_mb integer,       -- null = unlimited
    requests_per_hour integer,    -- null = unlimited
    sort_order integer not null
);

insert into public.plans (code, name, max_members, max_projects, max_storage_mb, requests_per_hour, sort_order) values
    ('free',         'Free',          5,    3,    100,    1000,   1),
    ('starter',      'Starter',       25,   25,   5120,   10000,  2),
    ('professional', 'Professional',  100,  250,  51200,  100000, 3),
    ('enterprise',   'Enterprise',    null, null, null,   null,   4);

create table public.companies (
    id uuid primary key,
    name text not null check (length(name) between 1 and 200),
    slug text not null unique,
    schema_name text not null unique,
    plan text not null references public.plans (code),
    status text not null default 'provisioning'
        check (status in ('provisioning', 'active', 'suspended')),
    -- Highest tenant migration applied to schema_name; null until the schema exists.
    schema_version integer,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create table public.domains (
    domain text primary key check (domain = lower(domain)),
    company_id uuid not null references public.companies (id) on delete cascade,
    is_primary boolean not null default false,
    created_at timestamptz not null default now()
);
create index domains_company_id on public.domains (company_id);
create unique index domains_one_primary on public.domains (company_id) where is_primary;

create table public.users (
    id uuid primary key,
    email text not null check (length(email) between 3 and 254),
    password_hash text not null,
    full_name text not null default '',
    email_verified_at timestamptz,
    is_active boolean not null default true,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
-- One account per email, whatever its case.
create unique index users_email_key on public.users (lower(email));

create table public.memberships (
    id uuid primary key,
    user_id uuid not null references public.users (id) on delete cascade,
    company_id uuid not null references public.companies (id) on delete cascade,
    role text not null check (role in ('owner', 'admin', 'member', 'viewer')),
    is_active boolean not null default true,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (user_id, company_id)
);
create index memberships_company_id on public.memberships (company_id);
-- At most one owner per company, checked immediately ...
create unique index memberships_one_owner on public.memberships (company_id) where role = 'owner';

-- ... and at least one, checked at commit so that an ownership transfer can demote then promote
-- inside one transaction.
create function public.check_single_owner() returns trigger language plpgsql as $$
declare
    cid uuid;
    owners integer;
begin
    if tg_table_name = 'companies' then
        cid := new.id;
    elsif tg_op = 'DELETE' then
        cid := old.company_id;
    else
        cid := new.company_id;
    end if;
    if not exists (select 1 from public.companies where id = cid) then
        return null;
    end if;
    select count(*) into owners from public.memberships where company_id = cid and role = 'owner';
    if owners <> 1 then
        raise exception 'company % must have exactly one owner, has %', cid, owners
            using errcode = '23514', constraint = 'memberships_exactly_one_owner';
    end if;
    return null;
end;
$$;

create constraint trigger companies_exactly_one_owner
    after insert on public.companies
    deferrable initially deferred
    for each row execute function public.check_single_owner();

create constraint trigger memberships_exactly_one_owner
    after insert or update or delete on public.memberships
    deferrable initially deferred
    for each row execute function public.check_single_owner();

-- Every change to routing data tells listening servers to drop their Host cache.
create function public.notify_routing_change() returns trigger language plpgsql as $$
begin
    perform pg_notify('tenantry_routing', tg_table_name);
    return null;
end;
$$;

create trigger companies_routing_change
    after insert or update or delete on public.companies
    for each statement execute function public.notify_routing_change();

create trigger domains_routing_change
    after insert or update or delete on public.domains
    for each statement execute function public.notify_routing_change();
