-- Past-due grace and the worker's subscription notices.
--
-- `past_due_since`: when the subscription became past_due (the `created` of the provider event
-- that made it so); set exactly while the status is past_due. Once `BILLING_PAST_DUE_GRACE_DAYS`
-- have passed since then the worker sets `past_due_locked_at`: writes answer 402 until the
-- subscription leaves past_due (an `invoice.paid`, or a subscription update back to active),
-- which clears both. This lock is kept apart from `payment_required` (over the plan's limits
-- after a trial or cancellation ended on free) so that lifting one never lifts the other.
--
-- `trial_reminder_for`: the `trial_end` the "trial ends in 3 days" email was sent for, so one
-- trial is reminded at most once (a new trial has another end).
alter table public.subscriptions
    add column past_due_since timestamptz,
    add column past_due_locked_at timestamptz,
    add column trial_reminder_for timestamptz;

update public.subscriptions
   set past_due_since = coalesce(last_event_at, updated_at)
 where status = 'past_due';

alter table public.subscriptions
    add constraint subscriptions_past_due_since
        check ((status = 'past_due') = (past_due_since is not null)),
    add constraint subscriptions_past_due_lock
        check (past_due_locked_at is null or past_due_since is not null);

-- A provider event that could not be applied because one of its provider ids already belongs
-- to another company: recorded as `conflict`, nothing applied. A redelivery of the same event
-- (Stripe's "resend", once an operator has sorted the ids out) is tried again.
alter table public.billing_events
    drop constraint billing_events_outcome_check,
    add constraint billing_events_outcome_check
        check (outcome in ('applied', 'ignored', 'stale', 'conflict'));
