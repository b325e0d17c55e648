-- kiln_builder: builder daemons. Each builder host logs in as its own role
-- (builder_<host>), a member of kiln_builder.
-- Start from nothing, so that applying this file again also withdraws what
-- it no longer grants (kiln admin roles apply).
REVOKE ALL ON ALL TABLES IN SCHEMA kiln, river FROM kiln_builder;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA kiln, river FROM kiln_builder;
GRANT USAGE ON SCHEMA kiln, river TO kiln_builder;

GRANT SELECT ON kiln.platform, kiln.job, kiln.package, kiln.package_file, kiln.blob, kiln.blob_chunk,
                kiln.task, kiln.attempt, kiln.builder, kiln.builder_platform TO kiln_builder;
-- Registration and heartbeat.
GRANT INSERT (name, host, slots, version, state, heartbeat_at, started_at) ON kiln.builder TO kiln_builder;
GRANT UPDATE (host, slots, version, state, draining, heartbeat_at, started_at) ON kiln.builder TO kiln_builder;
GRANT INSERT, DELETE ON kiln.builder_platform TO kiln_builder;
-- Taking, heart-beating and finishing tasks; the job row is locked first
-- (docs/protocol.md) through kiln.lock_job, since SELECT ... FOR UPDATE would
-- need UPDATE on kiln.job.
GRANT EXECUTE ON FUNCTION kiln.lock_job(bigint) TO kiln_builder;
GRANT UPDATE (status, attempt, builder, heartbeat_at, started_at, finished_at, reason) ON kiln.task TO kiln_builder;
-- A restarted builder gives back the tasks its crashed run left, counted as
-- lost (docs/builder.md).
GRANT UPDATE (lost_count) ON kiln.task TO kiln_builder;
GRANT INSERT (task_id, attempt, builder, status, started_at) ON kiln.attempt TO kiln_builder;
GRANT UPDATE (status, finished_at, reason, build_info, log_bytes, log_truncated) ON kiln.attempt TO kiln_builder;
-- Results: logs, artifacts and their bytes.
GRANT INSERT (task_id, attempt, seq, data) ON kiln.log_chunk TO kiln_builder;
GRANT INSERT (task_id, attempt, kind, file_name, blob_sha256, size) ON kiln.artifact TO kiln_builder;
-- A builder vouches (verified_at) only for the bytes it stores itself, in
-- the transaction that stores them; it never marks other blobs verified.
GRANT INSERT (sha256, size, chunk_size, content_sha256, verified_at) ON kiln.blob TO kiln_builder;
GRANT INSERT (sha256, seq, data) ON kiln.blob_chunk TO kiln_builder;

-- River: a working client on its platforms' queues. It fetches, completes,
-- retries and snoozes River jobs (UPDATE), its job cleaner deletes old ones
-- when it is the leader, it elects a leader (river_leader) and records its
-- queues (river_queue, upsert and cleaner). It never enqueues River jobs, so
-- no INSERT on river_job.
GRANT SELECT, UPDATE, DELETE ON river.river_job TO kiln_builder;
GRANT SELECT, INSERT, UPDATE, DELETE ON river.river_leader, river.river_queue TO kiln_builder;
-- Events: only builder.* (builder.recover, when a restarted builder gives
-- back the tasks its crashed run left); row-level security checks the kind.
GRANT INSERT ON kiln.event TO kiln_builder;
