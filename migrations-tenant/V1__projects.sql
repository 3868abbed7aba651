-- Runs once per tenant schema with search_path set to that schema only. Tenant tables are never
-- schema-qualified; public tables always are.

create table projects (
    id uuid primary key,
    name text not null check (length(name) between 1 and 200),
    description text not null default '' check (length(description) <= 10000),
    status text not null default 'planned'
        check (status in ('planned', 'active', 'completed', 'archived')),
    start_date date,
    end_date date,
    owner_id uuid not null references public.users (id),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint projects_dates_ordered check (end_date is null or start_date is null or end_date >= start_date)
);
create index projects_owner_id on projects (owner_id);
