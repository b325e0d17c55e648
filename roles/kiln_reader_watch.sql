-- Live-log watches (schema/0037_log_watch.sql): whoever may read the farm
-- may follow its logs, through kiln.watch_logs only. The table itself is
-- read by the trigger alone, so no one learns which logs are followed.
-- (After kiln_reader.sql, which grants SELECT on every table of kiln.)
REVOKE ALL ON kiln.log_watch FROM kiln_reader, kiln_janitor;
GRANT EXECUTE ON FUNCTION kiln.watch_logs(bigint[]) TO kiln_reader;
