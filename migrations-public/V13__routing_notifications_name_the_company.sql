-- Routing notifications name the company that changed (ARCHITECTURE, "Host routing"). Every server
-- keeps every tenant's hosts in memory, loaded whole at start-up; a notification carrying the
-- company's id lets it reload that company's routes alone instead of forgetting every host (which
-- made each of them a database lookup again, 10,000 of them after every sign-up at 10,000 tenants).
--
-- Row-level triggers: a statement may touch several companies, and each is named once (PostgreSQL
-- folds identical notifications of one transaction into one, so a sign-up's insert, domain and
-- status update notify once). The id is read from the row, never from tg_table_name, which on Citus
-- names the local table's shard. Plans keep their statement-level trigger and its payload (the
-- table's name): a plan change reloads every route, as a listener does with any payload that is not
-- a company id.
create function public.notify_company_route() returns trigger language plpgsql as $$
begin
    if tg_op <> 'INSERT' then
        perform pg_notify('tenantry_routing', old.id::text);
    end if;
    if tg_op <> 'DELETE' then
        perform pg_notify('tenantry_routing', new.id::text);
    end if;
    return null;
end;
$$;

create function public.notify_domain_route() returns trigger language plpgsql as $$
begin
    if tg_op <> 'INSERT' then
        perform pg_notify('tenantry_routing', old.company_id::text);
    end if;
    if tg_op <> 'DELETE' then
        perform pg_notify('tenantry_routing', new.company_id::text);
    end if;
    return null;
end;
$$;

drop trigger companies_routing_change on public.companies;
create trigger companies_routing_change
    after insert or update or delete on public.companies
    for each row execute function public.notify_company_route();

drop trigger domains_routing_change on public.domains;
create trigger domains_routing_change
    after insert or update or delete on public.domains
    for each row execute function public.notify_domain_route();
