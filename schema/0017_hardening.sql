-- 0017_hardening.sql: closes, by construction, the holes an attack on the
-- database found (docs/security.md).
--
-- 1. Name resolution. A function with SET search_path = pg_catalog, kiln
--    still searches pg_temp *first* for relations and types, because
--    PostgreSQL puts the session's temporary schema in front of a path that
--    does not name it. A person could create pg_temp.name (a domain whose
--    CHECK calls their own function) and have kiln.cancel_task_for, which
--    declares `who name`, run that function as kiln_owner. Every function
--    in schema kiln now runs with
--        search_path = pg_catalog, kiln, pg_temp
--    pg_catalog first (built-ins cannot be shadowed), kiln next, pg_temp
--    last (and PostgreSQL never searches pg_temp for functions or
--    operators). The bodies name kiln's and River's objects schema-
--    qualified, so nothing they use can resolve to pg_temp.
--
--    Left without SET, on purpose: the five SQL-language helpers with
--    SQL-standard bodies (RETURN ...), which PostgreSQL parses when the
--    function is created and stores resolved to object ids (prosqlbody): a
--    call looks up no name at all, whatever the caller's search_path, so a
--    SET would only add a configuration change and a search-path
--    recomputation to every call, and they are called for every row a
--    policy or CHECK constraint looks at. (Inlining is not at stake:
--    PostgreSQL inlines none of them, SET or not: valid_name and
--    safe_file_name are STRICT with bodies that are not, and the other
--    three hold EXISTS subqueries. The comment in 0005 expected otherwise.)
--    None is SECURITY DEFINER. schema/search_path_test.go
--    enumerates every function and knows each exception and why;
--    docs/security.md has the measurement.
--
-- 2. Private data. Every event that names a task names its job too (the
--    event trigger takes it from the task), and people read an event only
--    with its job; attempt.status events used to carry no job id, so any
--    reader saw the reasons of tasks in private buckets. NOTIFY payloads
--    (anyone may LISTEN) carry ids only, no status: listeners re-read what
--    they follow with their own rights. Cancelling or resubmitting a job or
--    task a person may not see answers "does not exist or is not yours",
--    the same as for one that does not exist.
-- (Its functions, views, triggers and policies are current state in schema/current/:
-- docs/schema.md, "Migrations".)

-- The events written before this migration: attempt.status events named no
-- job. Filling in a fact they lacked is the one change ever made to stored
-- events (the guard refuses updates, so it is set aside for this statement).
ALTER TABLE kiln.event DISABLE TRIGGER USER;
UPDATE kiln.event e SET job_id = t.job_id
FROM kiln.task t
WHERE e.task_id = t.id AND e.job_id IS DISTINCT FROM t.job_id;
ALTER TABLE kiln.event ENABLE TRIGGER USER;
