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

-- What 0037 changed in schema/current, as it was when 0037 landed (the
-- legacy layout kept every function and trigger in a numbered migration).

CREATE OR REPLACE FUNCTION kiln.log_chunk_added()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    IF EXISTS (SELECT 1 FROM kiln.log_watch w WHERE w.task_id = NEW.task_id AND w.until > pg_catalog.now()) THEN
        PERFORM pg_notify('kiln_log', json_build_object('task', NEW.task_id, 'attempt', NEW.attempt, 'seq', NEW.seq)::text);
    END IF;
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.log_chunk_added() IS 'After a log batch is stored: NOTIFY kiln_log so followers fetch it, only while someone watches the task''s log (kiln.watch_logs): every notifying commit wakes every listening session of the database.';

-- Followers of live logs (kiln log -f, kiln-web) watch the tasks they
-- follow, a minute at a time, and renew the watch while they follow. A
-- watch costs nothing but notifications, and its answer is the same for a
-- task that does not exist, one that is final and one the caller may not
-- read, so anyone who may read the farm may call it. Rows are bounded by
-- the tasks not final; expired ones are removed here.
CREATE OR REPLACE FUNCTION kiln.watch_logs(p_tasks bigint[])
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    IF cardinality(p_tasks) > 10000 THEN
        RAISE EXCEPTION 'watch at most 10000 task logs at once, not %', cardinality(p_tasks)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    DELETE FROM kiln.log_watch WHERE until < now();
    INSERT INTO kiln.log_watch (task_id, until)
    SELECT t.id, now() + interval '1 minute'
      FROM kiln.task t
     WHERE t.id = ANY (p_tasks) AND t.status IN ('pending', 'building')
    ON CONFLICT (task_id) DO UPDATE SET until = greatest(log_watch.until, EXCLUDED.until);
END $function$;
COMMENT ON FUNCTION kiln.watch_logs(bigint[]) IS 'Follow the live logs of tasks (at most 10,000 per call): for a minute from now, each stored batch of their logs sends NOTIFY kiln_log. Followers call it again within the minute while they follow. Tasks that do not exist or are final are left out, without an error.';
REVOKE EXECUTE ON FUNCTION kiln.watch_logs(bigint[]) FROM PUBLIC;
