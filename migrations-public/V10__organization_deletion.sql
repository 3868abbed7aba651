-- An organization its owner deleted (`DELETE /api/v1/organization`): suspended at once and
-- dropped by the worker once `drop_after` has passed; `tenantctl tenant restore` clears both
-- columns within the grace period. The two go together, and a company pending deletion stays
-- suspended (an operator re-activates it through `restore`, which clears the mark first).

alter table public.companies
    add column deletion_requested_at timestamptz,
    add column drop_after timestamptz,
    add constraint companies_deletion_together check (
        (deletion_requested_at is null) = (drop_after is null)
        and (drop_after is null or drop_after > deletion_requested_at)),
    add constraint companies_deletion_suspended check (
        deletion_requested_at is null or status = 'suspended');

-- The worker's daily question: which companies are due to be dropped.
create index companies_drop_after on public.companies (drop_after) where drop_after is not null;
