-- 0037_log_watch.sql: log batches notify only while someone follows the
-- task (docs/scaling.md, "Notifications wake every listener"). PostgreSQL
-- wakes every listening session of the database at each commit that
-- notifies, whatever the channel, so a NOTIFY kiln_log for every stored
-- batch of every running build made each builder's LISTEN session pay for
-- logs nobody read. Followers (kiln log -f, kiln-web's live pages) now say
-- what they follow with kiln.watch_logs, for a minute at a time, and
-- kiln.log_chunk_added notifies only for a watched task.
CREATE TABLE kiln.log_watch (
    task_id bigint PRIMARY KEY,
    until timestamptz NOT NULL
);
COMMENT ON TABLE kiln.log_watch IS 'Tasks whose log someone follows live: while now() is before until, each stored batch of the task''s log sends NOTIFY kiln_log. Written only by kiln.watch_logs; nobody reads it but the trigger.';
COMMENT ON COLUMN kiln.log_watch.task_id IS 'The followed task (a task that was not final when the watch began).';
COMMENT ON COLUMN kiln.log_watch.until IS 'When the watch ends unless a follower renews it (kiln.watch_logs sets it a minute ahead).';
