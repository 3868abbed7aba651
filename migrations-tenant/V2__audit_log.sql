-- The tenant's audit trail: append-only. Who (a user or an API key), did what, to which target,
-- with the state before and after, from where, in which request.
create table audit_log (
    id bigint generated always as identity primary key,
    at timestamptz not null default now(),
    actor_user_id uuid,
    actor_api_key_id uuid,
    action text not null,
    target_type text,
    target_id text,
    before jsonb,
    after jsonb,
    ip inet,
    user_agent text,
    request_id text
);
create index audit_log_action on audit_log (action, id);
create index audit_log_actor_user on audit_log (actor_user_id, id);
create index audit_log_at on audit_log (at);

-- Append-only: rows can be inserted, never changed or removed (dropping the schema with the
-- tenant is the only way out).
create function audit_log_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit_log is append-only' using errcode = '42501';
end;
$$;
create trigger audit_log_no_update_delete
    before update or delete on audit_log
    for each row execute function audit_log_append_only();
create trigger audit_log_no_truncate
    before truncate on audit_log
    for each statement execute function audit_log_append_only();
