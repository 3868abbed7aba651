-- Cluster mode (README, "Running on Citus"; ARCHITECTURE, "Cluster topology"). On plain PostgreSQL
-- this migration does nothing. On a Citus coordinator (the citus extension is installed in this
-- database) it makes public.users a reference table, copied to every node: tenant tables live on
-- workers (each tenant schema is a distributed schema) and join public.users (an assignee's or a
-- member's email, a creator's name), which Citus routes to the tenant's worker only when a copy
-- of public.users is there. (Tenant V11 dropped the tenants' foreign keys to public.users; Citus
-- would have allowed them only to a reference table too.)
--
-- Every other public table stays on the coordinator. Citus turns the tables linked to users by
-- foreign keys (companies, memberships, sessions, ...) into "Citus local tables" as it creates the
-- reference table: still single copies on the coordinator, now known to Citus so that tenant
-- queries may join them. They stay there because their triggers need one copy: the deferred
-- exactly-one-owner constraint triggers, the LISTEN/NOTIFY routing triggers (the listeners are on
-- the coordinator), and the triggers that write companies' settings and subscriptions. Citus runs
-- triggers on local tables as PostgreSQL does; on reference tables it would run them on every
-- copy (and refuses them unless citus.enable_unsafe_triggers is on). The outbox and the job
-- tables are claimed with FOR UPDATE SKIP LOCKED, which is only plain on one copy too.
--
-- Citus runs the triggers of a Citus local table on its shard (public.companies_102008), so
-- tg_table_name is no longer the table's name: check_single_owner tells a membership from a
-- company by its columns instead (on every topology, as the same function serves both).
--
-- A reference table may reference a local table only with NO ACTION or RESTRICT; the
-- users.origin_company_id key sets null on delete, so on Citus it goes, and dropping a tenant
-- clears its users' origin itself (tenantry_tenant::provision::drop_tenant does on every
-- topology).
create or replace function public.check_single_owner() returns trigger language plpgsql as $$
declare
    cid uuid;
    owners integer;
begin
    if tg_op = 'DELETE' then
        cid := old.company_id;
    elsif to_jsonb(new) ? 'company_id' then
        cid := new.company_id;
    else
        cid := new.id;
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

do $$
begin
    if not exists (select 1 from pg_catalog.pg_extension where extname = 'citus') then
        return;
    end if;
    alter table public.users drop constraint if exists users_origin_company_id_fkey;
    perform create_reference_table('public.users');
end
$$;
