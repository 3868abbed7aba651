-- The organization an account was created in: its own sign-up, or the organization whose admin
-- created it. Until the account's address is proven (email_verified_at), its password signs in to
-- that organization only, so an account registered for someone else's address gains nothing
-- when the real owner's organization adds it later. Null for a proven account's deleted origin.
alter table public.users
    add column origin_company_id uuid references public.companies (id) on delete set null;
create index users_origin_company on public.users (origin_company_id)
    where origin_company_id is not null;

-- Unproven accounts from before: their first organization is where they were created.
update public.users u
   set origin_company_id = (select m.company_id from public.memberships m
                             where m.user_id = u.id order by m.created_at, m.id limit 1)
 where u.email_verified_at is null;
