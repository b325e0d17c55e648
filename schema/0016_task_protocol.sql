-- 0016_task_protocol.sql: the task protocol as SQL functions, its one owner.
--
-- Builders and the janitor no longer write kiln.task, kiln.attempt,
-- kiln.log_chunk or kiln.artifact themselves (roles/kiln_builder.sql and
-- roles/kiln_janitor.sql grant no INSERT or UPDATE on them). Every step of the
-- protocol is one SECURITY DEFINER function below, which checks the caller's
-- right to make it:
--
--   builder steps  the builder named is one of session_user's builders, and
--                  (after the take) the task is building with that attempt
--                  and that builder: the caller holds the attempt;
--   janitor steps  session_user is a member of kiln_janitor, and the task is
--                  re-checked under its lock.
--
-- Locks are taken in the protocol's order: the job row, then the task row.
-- Attempt rows are created only by kiln.task_take, which also numbers them,
-- so no attempt number can be squatted. The limit on losses (max_lost) lives
-- in kiln.protocol_setting, read by the functions; the River job changes the
-- protocol needs (available again on requeue, cancelled when a task ends as
-- lost or timed out) happen inside the same functions, in the same
-- transaction. Only inserting a new River job stays with River's client (the
-- janitor), which alone knows River's row format; kiln.task_link_river_job
-- then records it on the task.
--
-- The Go side is internal/task (one function per step); docs/protocol.md
-- states the rules.
-- (Its functions, views, triggers and policies are current state in schema/current/:
-- docs/schema.md, "Migrations".)

------------------------------------------------------------------------------
-- Settings
------------------------------------------------------------------------------

CREATE TABLE kiln.protocol_setting (
    singleton  boolean PRIMARY KEY DEFAULT true CONSTRAINT protocol_setting_one_row CHECK (singleton),
    max_lost   integer NOT NULL DEFAULT 3 CONSTRAINT protocol_setting_max_lost_range CHECK (max_lost BETWEEN 0 AND 1000),
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE kiln.protocol_setting IS 'The task protocol''s limits, one row, read by the protocol functions (kiln.task_*). Changed with kiln.set_max_lost; nobody writes it directly.';
COMMENT ON COLUMN kiln.protocol_setting.singleton IS 'Always true: the table has exactly one row.';
COMMENT ON COLUMN kiln.protocol_setting.max_lost IS 'How many times a task may be lost (its builder went silent or crashed) and still be requeued; the next loss ends it as lost.';
COMMENT ON COLUMN kiln.protocol_setting.changed_at IS 'When the settings were last changed.';
COMMENT ON COLUMN kiln.protocol_setting.changed_by IS 'Who last changed them (session_user).';
INSERT INTO kiln.protocol_setting DEFAULT VALUES;
