-- Tenant tables keep the ids of accounts (public.users) without foreign keys. Runs once per tenant
-- schema with search_path set to that schema only.
--
-- Why: a foreign key from a tenant table to public.users puts two triggers on public.users. With
-- thirteen such columns per tenant that is 26 triggers per tenant on one shared table: 260,000 at
-- 10,000 tenants. Every sign-up (which creates the keys) then locks public.users until it commits,
-- serialising sign-ups, and invalidates public.users in every backend's relation cache, whose next
-- query touching public.users (each login, each session check) rebuilds an entry with all those
-- triggers — tens of milliseconds at 800 tenants, measured (`just bench-scale`).
--
-- What guarded these columns instead: accounts are never deleted (they are deactivated:
-- `users.is_active`), so an id written here always names an account; and every write of one
-- checks it in the domain code (an assignee, project member or recipient must be an active
-- member of the organization; creators and actors are the authenticated caller). Foreign keys
-- between a tenant's own tables stay.
do $$
declare
    fk record;
begin
    for fk in
        select c.conname, c.conrelid::regclass as tbl
          from pg_catalog.pg_constraint c
         where c.contype = 'f'
           and c.confrelid = 'public.users'::regclass
           and c.connamespace = pg_catalog.to_regnamespace(pg_catalog.current_schema())
    loop
        execute format('alter table %s drop constraint %I', fk.tbl, fk.conname);
    end loop;
end
$$;
