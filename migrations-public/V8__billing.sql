-- Organizations as customers: plan prices, one subscription per company, the billing provider's
-- webhook events (each applied once) and the invoices it reported paid.

-- Prices per month in the currency's minor unit; null for a plan that is not sold on-line
-- (enterprise: contact sales). `lookup_key` is the provider price's lookup key that names the
-- plan in subscription events; `self_service` says whether sign-up and plan changes may choose it.
alter table public.plans
    add column monthly_price_cents integer check (monthly_price_cents >= 0),
    add column currency text not null default 'usd' check (currency ~ '^[a-z]{3}$'),
    add column lookup_key text unique,
    add column self_service boolean not null default true;

update public.plans set monthly_price_cents = 0,     lookup_key = 'free_monthly'         where code = 'free';
update public.plans set monthly_price_cents = 1900,  lookup_key = 'starter_monthly'      where code = 'starter';
update public.plans set monthly_price_cents = 9900,  lookup_key = 'professional_monthly' where code = 'professional';
update public.plans set monthly_price_cents = null,  lookup_key = 'enterprise_monthly',
                        self_service = false                                             where code = 'enterprise';

-- One row per company. `plan` is the plan in force; `companies.plan` (what every limit check
-- reads) follows it through the triggers below, so the two never disagree.
create table public.subscriptions (
    company_id uuid primary key references public.companies (id) on delete cascade,
    plan text not null references public.plans (code),
    status text not null default 'active'
        check (status in ('trialing', 'active', 'past_due', 'canceled')),
    current_period_end timestamptz,
    trial_end timestamptz,
    cancel_at_period_end boolean not null default false,
    -- A downgrade waiting for the period end; null when nothing is scheduled.
    scheduled_plan text references public.plans (code),
    provider_customer_id text unique check (length(provider_customer_id) between 1 and 255),
    provider_subscription_id text unique check (length(provider_subscription_id) between 1 and 255),
    -- `created` of the last provider event applied: an older event changes nothing.
    last_event_at timestamptz,
    -- Set when a trial or a cancelled subscription ended on free while the organization was over
    -- free's limits: writes answer 402 until it is on a plan it fits (or fits free again).
    payment_required boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint subscriptions_trial_has_end check (status <> 'trialing' or trial_end is not null)
);

-- Every existing company: active on the plan it is on.
insert into public.subscriptions (company_id, plan, status)
    select id, plan, 'active' from public.companies;

create function public.create_subscription() returns trigger language plpgsql as $$
begin
    insert into public.subscriptions (company_id, plan) values (new.id, new.plan);
    return null;
end;
$$;

create trigger companies_subscription
    after insert on public.companies
    for each row execute function public.create_subscription();

-- The plan in force is written in one place (`subscriptions.plan`) and copied to
-- `companies.plan`; an operator who sets `companies.plan` by hand moves the subscription too.
create function public.subscription_plan_to_company() returns trigger language plpgsql as $$
begin
    update public.companies set plan = new.plan, updated_at = now()
     where id = new.company_id and plan is distinct from new.plan;
    return null;
end;
$$;

create trigger subscriptions_plan
    after update of plan on public.subscriptions
    for each row execute function public.subscription_plan_to_company();

create function public.company_plan_to_subscription() returns trigger language plpgsql as $$
begin
    update public.subscriptions set plan = new.plan, scheduled_plan = null, updated_at = now()
     where company_id = new.id and plan is distinct from new.plan;
    return null;
end;
$$;

create trigger companies_plan
    after update of plan on public.companies
    for each row execute function public.company_plan_to_subscription();

-- Every provider event received, by its id: the unique key makes a redelivery a no-op, and the
-- row is written in the transaction of the event's effect.
create table public.billing_events (
    id text primary key check (length(id) between 1 and 255),
    type text not null check (length(type) between 1 and 255),
    created timestamptz not null,
    company_id uuid references public.companies (id) on delete set null,
    outcome text not null check (outcome in ('applied', 'ignored', 'stale')),
    received_at timestamptz not null default now()
);

-- Billing history: invoices the provider reported paid.
create table public.invoices (
    id text primary key check (length(id) between 1 and 255),
    company_id uuid not null references public.companies (id) on delete cascade,
    amount_paid_cents bigint not null check (amount_paid_cents >= 0),
    currency text not null check (currency ~ '^[a-z]{3}$'),
    period_start timestamptz,
    period_end timestamptz,
    paid_at timestamptz not null,
    hosted_invoice_url text,
    created_at timestamptz not null default now()
);
create index invoices_company_paid on public.invoices (company_id, paid_at desc, id desc);
