-- Fair-share turns (schema/0028_fair.sql, docs/queueing.md) are read and
-- written only by the trigger function kiln.fair_turn: no role sees who
-- queued how much (they are out of SELECT ON ALL TABLES of kiln_reader.sql
-- and kiln_janitor.sql, which sort before this file).
REVOKE ALL ON kiln.queue_turn FROM kiln_reader, kiln_janitor;
