-- Emails sent about a task, one row per email: the record that keeps each kind of notification
-- from going out twice. Written in the transaction that writes the email to public.outbox, so a
-- row exists exactly when its email was queued. Runs once per tenant schema with search_path set
-- to that schema only.
create table notifications (
    id uuid primary key,
    task_id uuid not null references tasks (id) on delete cascade,
    -- manual_reminder: POST /tasks/{id}/remind; due_reminder and overdue_digest: the worker's.
    kind text not null check (kind in ('manual_reminder', 'due_reminder', 'overdue_digest')),
    recipient_id uuid not null references public.users (id),
    -- Which occurrence of `kind` this email is: the UTC hour for a manual reminder
    -- (`2026-05-01T13`), the due instant for a due reminder, the recipient's local date for a
    -- digest. A job that runs again computes the same key, and the unique constraint below makes
    -- its second insert fail: it can never send twice.
    period_key text not null check (length(period_key) between 1 and 100),
    -- Who asked for it; null when the worker sent it.
    sent_by uuid references public.users (id),
    sent_at timestamptz not null default now(),
    constraint notifications_once unique (task_id, kind, period_key)
);
-- "When was this task last reminded?" reads the unique index's (task_id, kind) prefix.
-- "What did this member receive?"
create index notifications_recipient on notifications (recipient_id, sent_at);
