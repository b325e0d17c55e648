-- kiln_builder: builder daemons. Each builder host logs in as its own role
-- (builder_<host>), a member of kiln_builder.
-- Start from nothing, so that applying this file again also withdraws what
-- it no longer grants (kiln admin roles apply).
REVOKE ALL ON ALL TABLES IN SCHEMA kiln, river FROM kiln_builder;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA kiln, river FROM kiln_builder;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA kiln FROM kiln_builder;
GRANT USAGE ON SCHEMA kiln, river TO kiln_builder;

GRANT SELECT ON kiln.platform, kiln.job, kiln.package, kiln.package_file, kiln.blob, kiln.blob_chunk,
                kiln.task, kiln.attempt, kiln.builder, kiln.builder_platform TO kiln_builder;
-- Registration and heartbeat of its own builder rows (row-level security).
GRANT INSERT (name, host, slots, version, state, heartbeat_at, started_at) ON kiln.builder TO kiln_builder;
GRANT UPDATE (host, slots, version, state, draining, heartbeat_at, started_at) ON kiln.builder TO kiln_builder;
GRANT INSERT, DELETE ON kiln.builder_platform TO kiln_builder;
-- Tasks, attempts, logs and artifacts change only through the task protocol
-- (docs/protocol.md, schema/0016_task_protocol.sql): no INSERT or UPDATE on
-- kiln.task, kiln.attempt, kiln.log_chunk or kiln.artifact. Each function
-- checks that the builder named is one of this role's and that it holds the
-- attempt; attempts are created only by kiln.task_take_many (and
-- kiln.task_take, which calls it).
GRANT EXECUTE ON FUNCTION
    kiln.task_take(text, bigint, bigint, text),
    kiln.task_take_many(text, bigint[], bigint[], text[]),
    kiln.task_finish_many(text, bigint[], integer[], text[], text[], jsonb[], boolean[], text[], integer[], text[], bigint[], text[], text[], bytea[], bigint[], bytea[]),
    kiln.task_heartbeat(text, bigint[], integer[]),
    kiln.task_log(text, bigint, integer, integer, text, boolean),
    kiln.task_log_many(text, bigint[], integer[], integer[], text[], boolean[]),
    kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[]),
    kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[], text),
    kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[], text, bytea[], integer, text),
    kiln.task_give_back(text, bigint, integer),
    kiln.task_recover(text, bigint, integer)
TO kiln_builder;
-- The bytes of large artifacts, stored before kiln.task_finish names them
-- (small ones' bytes go with the finish, which stores them itself). A
-- builder vouches (verified_at) only for the bytes it stores itself, in the
-- transaction that stores them; it never marks other blobs verified.
GRANT INSERT (sha256, size, chunk_size, content_sha256, verified_at) ON kiln.blob TO kiln_builder;
GRANT INSERT (sha256, seq, data) ON kiln.blob_chunk TO kiln_builder;

-- River: a working client on its platforms' queues. It fetches, completes,
-- retries and snoozes River jobs (UPDATE) and records its queues
-- (river_queue). It never enqueues River jobs, so no INSERT on river_job.
-- Row-level security (river_job_build_work, river_job_build_delete) limits
-- its UPDATE and DELETE to the build queues of its own builders' platforms;
-- it runs without leader election (riverjob), so it never cleans others'.
GRANT SELECT, UPDATE, DELETE ON river.river_job TO kiln_builder;
GRANT SELECT, INSERT, UPDATE, DELETE ON river.river_leader, river.river_queue TO kiln_builder;
