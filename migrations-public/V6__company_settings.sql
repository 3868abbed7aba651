-- Each organization's settings: its time zone (for due dates in emails and the worker's daily
-- jobs), how long before a task is due its assignee is reminded, and how long completed tasks are
-- kept. One row per company, in a table of its own rather than columns of `companies`, because
-- every change to `companies` notifies each server to empty its routing cache
-- (`companies_routing_change`) and membership changes lock the company row (`for no key update`):
-- a settings change touches neither. The worker still reads every tenant's settings in one query
-- (`companies join company_settings`).
create table public.company_settings (
    company_id uuid primary key references public.companies (id) on delete cascade,
    -- `UTC` or an IANA region name (`Europe/Berlin`, `America/Argentina/Buenos_Aires`); that
    -- PostgreSQL knows the name (`pg_timezone_names`) is checked when it is set.
    timezone text not null default 'UTC'
        check (length(timezone) <= 64 and (timezone = 'UTC' or timezone ~
            '^(Africa|America|Antarctica|Arctic|Asia|Atlantic|Australia|Europe|Indian|Pacific)(/[A-Za-z][A-Za-z_-]*){1,2}$')),
    reminder_lead_hours integer not null default 24 check (reminder_lead_hours between 1 and 168),
    -- Null: completed tasks are kept forever.
    completed_task_retention_days integer
        check (completed_task_retention_days between 7 and 3650),
    updated_at timestamptz not null default now()
);

-- Every company has its row, with the defaults, from the moment it exists: the defaults live in
-- this table alone, and no code path that creates a company can forget it.
insert into public.company_settings (company_id) select id from public.companies;

create function public.create_company_settings() returns trigger language plpgsql as $$
begin
    insert into public.company_settings (company_id) values (new.id);
    return null;
end;
$$;

create trigger companies_settings
    after insert on public.companies
    for each row execute function public.create_company_settings();
