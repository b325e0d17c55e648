-- kiln_janitor: periodic upkeep (lost builders, runaway builds, retention,
-- consistency). It takes back lost tasks and times out runaway builds of any
-- builder through the task protocol's functions, prunes logs, artifacts and
-- blobs, but never submits or builds.
-- Start from nothing, so that applying this file again also withdraws what
-- it no longer grants (kiln admin roles apply).
REVOKE ALL ON ALL TABLES IN SCHEMA kiln, river FROM kiln_janitor;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA kiln, river FROM kiln_janitor;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA kiln FROM kiln_janitor;
GRANT USAGE ON SCHEMA kiln, river TO kiln_janitor;

GRANT SELECT ON ALL TABLES IN SCHEMA kiln TO kiln_janitor;
-- Tasks and attempts change only through the task protocol (docs/protocol.md,
-- schema/0016_task_protocol.sql): no INSERT or UPDATE on kiln.task or
-- kiln.attempt. Each function checks membership of kiln_janitor and re-checks
-- the task under the job's and the task's lock.
GRANT EXECUTE ON FUNCTION
    kiln.task_take_back_lost(bigint, interval),
    kiln.task_time_out(bigint, interval),
    kiln.task_link_river_job(bigint, bigint)
TO kiln_janitor;
GRANT UPDATE (state) ON kiln.builder TO kiln_janitor;
GRANT UPDATE (blob_sha256, pruned_at) ON kiln.artifact TO kiln_janitor;
GRANT DELETE ON kiln.log_chunk, kiln.blob, kiln.blob_chunk TO kiln_janitor;
-- Only with --delete-jobs-after: old jobs go with their packages, tasks,
-- attempts, artifacts and logs (foreign keys cascade); events stay.
GRANT DELETE ON kiln.job TO kiln_janitor;
-- A job whose validation never completes is marked invalid after a few tries
-- (row-level security: submitted -> invalid only).
GRANT UPDATE (status, reason, validated_at, finished_at) ON kiln.job TO kiln_janitor;
GRANT EXECUTE ON FUNCTION kiln.refresh_job_status(bigint), kiln.lock_job(bigint) TO kiln_janitor;
-- Its own janitor.* events (row-level security); the triggers and the
-- protocol functions write the rest.
GRANT INSERT ON kiln.event TO kiln_janitor;

-- River: a working client (periodic jobs, leader election) that also inserts
-- build River jobs for pending tasks that lost theirs (River's own insert)
-- and cancels stray ones.
GRANT SELECT, INSERT, UPDATE, DELETE ON river.river_job, river.river_leader, river.river_queue TO kiln_janitor;
GRANT USAGE ON SEQUENCE river.river_job_id_seq TO kiln_janitor;
