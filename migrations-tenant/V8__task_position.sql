-- A task's place inside its project (drag-and-drop order), and the indexes of the task list's
-- orderings. Runs once per tenant schema with search_path set to that schema only.

alter table tasks add column position bigint;
-- Existing tasks keep their creation order.
update tasks t set position = ranked.n
  from (select id, row_number() over (partition by project_id order by created_at, id) as n
          from tasks) ranked
 where ranked.id = t.id;
-- New tasks get max + 1 in their project from the application; rows written by hand get 0.
alter table tasks alter column position set not null, alter column position set default 0,
    add constraint tasks_position_not_negative check (position >= 0);
create index tasks_project_position on tasks (project_id, position, id);
-- "My tasks by due date" (GET /tasks/mine and assignee=me&ordering=due_at) of any status.
create index tasks_assignee_due on tasks (assignee_id, due_at, id);
