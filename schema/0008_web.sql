-- 0008_web.sql: what the web interface needs.
--
-- 1. Actions on behalf of a person. kiln-web authenticates people with
--    Kerberos over HTTP (SPNEGO) and connects to the database as its own
--    login role, a member of kiln_web. session_user is therefore the web's
--    role, not the person's, and kiln.cancel_job (which checks session_user)
--    would refuse or misattribute. The functions below take the person's
--    role name as an argument and are executable by kiln_web only (EXECUTE
--    is revoked from PUBLIC here and granted in roles/kiln_web.sql). kiln-web
--    passes the name it derived from a verified Kerberos ticket, never one
--    the browser sends. Each function checks that the person may do the
--    action exactly as the direct path checks session_user, records the
--    person where the direct path records session_user (cancelled_by, the
--    reason, the new job's submitter) and writes a web.* event naming the
--    person; kiln.event.actor stays session_user (the web's role), so the
--    history says truthfully that kiln-web acted and for whom.
--    See docs/web.md for why this was chosen over logging in as the person.
--
-- 2. Indexes for the page queries at a million jobs.
-- (Its functions, views, triggers and policies are current state in schema/current/:
-- docs/schema.md, "Migrations".)

------------------------------------------------------------------------------
-- Indexes for the pages
------------------------------------------------------------------------------

-- kiln.queue_depth (dashboard, platforms page, /metrics) counts the pending
-- and building tasks of each platform; without this it reads every task.
CREATE INDEX task_unfinished_platform_idx ON kiln.task (platform, status, created_at)
    WHERE status IN ('pending', 'building');
COMMENT ON INDEX kiln.task_unfinished_platform_idx IS 'Pending and building tasks per platform (kiln.queue_depth, the web dashboard and /metrics).';

-- /metrics sums up the builds of the last hour (kiln.build_duration).
CREATE INDEX attempt_finished_idx ON kiln.attempt (finished_at) WHERE finished_at IS NOT NULL;
COMMENT ON INDEX kiln.attempt_finished_idx IS 'Attempts by end time: the recent builds /metrics sums up.';

-- /metrics counts the jobs that finished in the last hour by status.
CREATE INDEX job_finished_idx ON kiln.job (finished_at) WHERE finished_at IS NOT NULL;
COMMENT ON INDEX kiln.job_finished_idx IS 'Jobs by end time: the recently finished jobs /metrics counts.';
