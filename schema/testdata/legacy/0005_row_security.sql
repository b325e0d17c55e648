-- 0005_row_security.sql: row-level security.
--
-- The grants in roles/ say which tables and columns a role may touch; the
-- policies here say which rows:
--   * people read everything, except jobs in a private bucket, which only
--     their submitter, the bucket's grantees, admins and the farm's daemons
--     (splitter, builders, janitor) see, together with everything hanging off
--     those jobs (packages, tasks, attempts, logs, artifacts, events, blobs);
--   * a person adds packages only to their own job while it is submitted;
--   * a builder changes only its own builder rows and the tasks, attempts,
--     logs and artifacts of the builders it registered (kiln.builder.role =
--     session_user), and takes only pending tasks;
--   * cancelling goes through kiln.cancel_job/kiln.cancel_task, which check
--     the submitter; people hold no UPDATE grant on jobs or tasks at all.
--
-- The table owner (kiln_owner) is not subject to these policies (no FORCE), so
-- the SECURITY DEFINER trigger and cancel functions keep working for everyone.
-- A role without a policy for a command on one of these tables sees no rows
-- and changes none, whatever its grants.
--
-- blob_chunk has no policies: PostgreSQL refuses COPY into a table with
-- row-level security, and uploads stream into it with COPY. Its rows are
-- reachable only through a blob's SHA-256, which kiln.blob hides for private
-- jobs (see docs/kerberos.md for what that leaves open).

-- Whether the session may read the jobs of a bucket.
-- (No SET search_path, so that the planner can inline these two into the
-- policies; every name in them is schema-qualified.)
CREATE FUNCTION kiln.bucket_readable(p_bucket text) RETURNS boolean
LANGUAGE sql STABLE
RETURN NOT EXISTS (SELECT 1 FROM kiln.bucket b WHERE b.name = p_bucket AND b.private)
    OR EXISTS (SELECT 1 FROM kiln.bucket_grant g JOIN pg_roles r ON r.rolname = g.grantee
               WHERE g.bucket = p_bucket AND pg_has_role(session_user, r.oid, 'MEMBER'));
COMMENT ON FUNCTION kiln.bucket_readable(text) IS 'True when the session may read jobs of the bucket: it is not private, or session_user is (a member of) one of its grantees. Used by row-level security.';

-- The builders registered by the session's role.
CREATE FUNCTION kiln.own_builders() RETURNS SETOF text
LANGUAGE sql STABLE
AS $$ SELECT b.name FROM kiln.builder b WHERE b.role = session_user $$;
COMMENT ON FUNCTION kiln.own_builders() IS 'Names of the builders whose role is session_user: the rows a builder daemon may change. Used by row-level security.';

ALTER TABLE kiln.job ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_read ON kiln.job FOR SELECT TO kiln_reader
    USING (submitter = session_user OR kiln.bucket_readable(bucket));
CREATE POLICY job_read_farm ON kiln.job FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
CREATE POLICY job_submit ON kiln.job FOR INSERT TO kiln_submitter
    WITH CHECK (submitter = session_user);
CREATE POLICY job_validate ON kiln.job FOR UPDATE TO kiln_splitter
    USING (true);
COMMENT ON POLICY job_read ON kiln.job IS 'People read every job except those in private buckets they may not read; their own they always read.';
COMMENT ON POLICY job_read_farm ON kiln.job IS 'The farm''s daemons and admins read every job.';
COMMENT ON POLICY job_submit ON kiln.job IS 'A submitter inserts jobs in their own name only (a trigger sets submitter to session_user).';
COMMENT ON POLICY job_validate ON kiln.job IS 'The splitter records the validation outcome of any job.';

ALTER TABLE kiln.package ENABLE ROW LEVEL SECURITY;
CREATE POLICY package_read ON kiln.package FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id));
CREATE POLICY package_read_farm ON kiln.package FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
CREATE POLICY package_submit ON kiln.package FOR INSERT TO kiln_submitter
    WITH CHECK (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id AND j.submitter = session_user AND j.status = 'submitted'));
CREATE POLICY package_validate ON kiln.package FOR UPDATE TO kiln_splitter
    USING (true);
COMMENT ON POLICY package_read ON kiln.package IS 'Packages are readable with their job.';
COMMENT ON POLICY package_read_farm ON kiln.package IS 'The farm''s daemons and admins read every package.';
COMMENT ON POLICY package_submit ON kiln.package IS 'A submitter adds packages only to their own job, and only while it is submitted.';
COMMENT ON POLICY package_validate ON kiln.package IS 'The splitter records what it parsed from any package.';

ALTER TABLE kiln.package_file ENABLE ROW LEVEL SECURITY;
CREATE POLICY package_file_read ON kiln.package_file FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id));
CREATE POLICY package_file_read_farm ON kiln.package_file FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
CREATE POLICY package_file_submit ON kiln.package_file FOR INSERT TO kiln_submitter
    WITH CHECK (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id AND j.submitter = session_user AND j.status = 'submitted'));
COMMENT ON POLICY package_file_read ON kiln.package_file IS 'Package files are readable with their job.';
COMMENT ON POLICY package_file_read_farm ON kiln.package_file IS 'The farm''s daemons and admins read every package file.';
COMMENT ON POLICY package_file_submit ON kiln.package_file IS 'A submitter adds files only to their own job, and only while it is submitted.';

ALTER TABLE kiln.task ENABLE ROW LEVEL SECURITY;
CREATE POLICY task_read ON kiln.task FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id));
CREATE POLICY task_read_farm ON kiln.task FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
CREATE POLICY task_split ON kiln.task FOR INSERT TO kiln_splitter
    WITH CHECK (true);
CREATE POLICY task_split_river ON kiln.task FOR UPDATE TO kiln_splitter
    USING (true);
CREATE POLICY task_build ON kiln.task FOR UPDATE TO kiln_builder
    USING (status = 'pending' OR builder IN (SELECT kiln.own_builders()))
    WITH CHECK (builder IS NULL OR builder IN (SELECT kiln.own_builders()));
CREATE POLICY task_repair ON kiln.task FOR UPDATE TO kiln_janitor
    USING (true);
COMMENT ON POLICY task_read ON kiln.task IS 'Tasks are readable with their job.';
COMMENT ON POLICY task_read_farm ON kiln.task IS 'The farm''s daemons and admins read every task.';
COMMENT ON POLICY task_split ON kiln.task IS 'The splitter creates tasks.';
COMMENT ON POLICY task_split_river ON kiln.task IS 'The splitter links tasks to their River jobs.';
COMMENT ON POLICY task_build ON kiln.task IS 'A builder takes a pending task for one of its own builders, and changes only tasks its own builders hold.';
COMMENT ON POLICY task_repair ON kiln.task IS 'The janitor requeues, times out and repairs any task.';

ALTER TABLE kiln.attempt ENABLE ROW LEVEL SECURITY;
CREATE POLICY attempt_read ON kiln.attempt FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.task t WHERE t.id = task_id));
CREATE POLICY attempt_read_farm ON kiln.attempt FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
CREATE POLICY attempt_start ON kiln.attempt FOR INSERT TO kiln_builder
    WITH CHECK (builder IN (SELECT kiln.own_builders()));
CREATE POLICY attempt_build ON kiln.attempt FOR UPDATE TO kiln_builder
    USING (builder IN (SELECT kiln.own_builders()))
    WITH CHECK (builder IN (SELECT kiln.own_builders()));
CREATE POLICY attempt_repair ON kiln.attempt FOR UPDATE TO kiln_janitor
    USING (true);
COMMENT ON POLICY attempt_read ON kiln.attempt IS 'Attempts are readable with their task.';
COMMENT ON POLICY attempt_read_farm ON kiln.attempt IS 'The farm''s daemons and admins read every attempt.';
COMMENT ON POLICY attempt_start ON kiln.attempt IS 'A builder records attempts of its own builders only.';
COMMENT ON POLICY attempt_build ON kiln.attempt IS 'A builder finishes only its own builders'' attempts.';
COMMENT ON POLICY attempt_repair ON kiln.attempt IS 'The janitor marks any attempt lost or timed out.';

ALTER TABLE kiln.log_chunk ENABLE ROW LEVEL SECURITY;
CREATE POLICY log_chunk_read ON kiln.log_chunk FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.task t WHERE t.id = task_id));
CREATE POLICY log_chunk_read_farm ON kiln.log_chunk FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
CREATE POLICY log_chunk_write ON kiln.log_chunk FOR INSERT TO kiln_builder
    WITH CHECK (EXISTS (SELECT 1 FROM kiln.attempt a WHERE a.task_id = log_chunk.task_id AND a.attempt = log_chunk.attempt
                        AND a.builder IN (SELECT kiln.own_builders())));
CREATE POLICY log_chunk_prune ON kiln.log_chunk FOR DELETE TO kiln_janitor
    USING (true);
COMMENT ON POLICY log_chunk_read ON kiln.log_chunk IS 'Logs are readable with their task.';
COMMENT ON POLICY log_chunk_read_farm ON kiln.log_chunk IS 'The farm''s daemons and admins read every log.';
COMMENT ON POLICY log_chunk_write ON kiln.log_chunk IS 'A builder writes logs only for its own builders'' attempts.';
COMMENT ON POLICY log_chunk_prune ON kiln.log_chunk IS 'The janitor prunes logs past retention.';

ALTER TABLE kiln.artifact ENABLE ROW LEVEL SECURITY;
CREATE POLICY artifact_read ON kiln.artifact FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.task t WHERE t.id = task_id));
CREATE POLICY artifact_read_farm ON kiln.artifact FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
CREATE POLICY artifact_store ON kiln.artifact FOR INSERT TO kiln_builder
    WITH CHECK (EXISTS (SELECT 1 FROM kiln.attempt a WHERE a.task_id = artifact.task_id AND a.attempt = artifact.attempt
                        AND a.builder IN (SELECT kiln.own_builders())));
CREATE POLICY artifact_prune ON kiln.artifact FOR UPDATE TO kiln_janitor
    USING (true);
COMMENT ON POLICY artifact_read ON kiln.artifact IS 'Artifacts are readable with their task.';
COMMENT ON POLICY artifact_read_farm ON kiln.artifact IS 'The farm''s daemons and admins read every artifact.';
COMMENT ON POLICY artifact_store ON kiln.artifact IS 'A builder stores artifacts only for its own builders'' attempts.';
COMMENT ON POLICY artifact_prune ON kiln.artifact IS 'The janitor prunes artifact content past retention.';

ALTER TABLE kiln.event ENABLE ROW LEVEL SECURITY;
CREATE POLICY event_read ON kiln.event FOR SELECT TO kiln_reader
    USING (job_id IS NULL OR EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id));
CREATE POLICY event_read_farm ON kiln.event FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
CREATE POLICY event_record ON kiln.event FOR INSERT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    WITH CHECK (true);
COMMENT ON POLICY event_read ON kiln.event IS 'Events of a job are readable with the job; other events by everyone.';
COMMENT ON POLICY event_read_farm ON kiln.event IS 'The farm''s daemons and admins read every event.';
COMMENT ON POLICY event_record ON kiln.event IS 'Daemons and admins record events (a trigger stamps the actor).';

ALTER TABLE kiln.blob ENABLE ROW LEVEL SECURITY;
CREATE POLICY blob_read ON kiln.blob FOR SELECT TO kiln_reader
    USING (created_by = session_user
           OR EXISTS (SELECT 1 FROM kiln.package p WHERE p.blob_sha256 = blob.sha256)
           OR EXISTS (SELECT 1 FROM kiln.package_file f WHERE f.blob_sha256 = blob.sha256)
           OR EXISTS (SELECT 1 FROM kiln.artifact a WHERE a.blob_sha256 = blob.sha256));
CREATE POLICY blob_read_farm ON kiln.blob FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
CREATE POLICY blob_store ON kiln.blob FOR INSERT TO kiln_submitter, kiln_builder
    WITH CHECK (created_by = session_user);
CREATE POLICY blob_verify ON kiln.blob FOR UPDATE TO kiln_splitter, kiln_builder
    USING (true);
CREATE POLICY blob_prune ON kiln.blob FOR DELETE TO kiln_janitor
    USING (true);
COMMENT ON POLICY blob_read ON kiln.blob IS 'A blob is readable by whoever stored it and with any package or artifact that uses it.';
COMMENT ON POLICY blob_read_farm ON kiln.blob IS 'The farm''s daemons and admins read every blob.';
COMMENT ON POLICY blob_store ON kiln.blob IS 'Submitters and builders store blobs in their own name.';
COMMENT ON POLICY blob_verify ON kiln.blob IS 'The splitter and builders mark blobs verified.';
COMMENT ON POLICY blob_prune ON kiln.blob IS 'The janitor removes unreferenced blobs.';

ALTER TABLE kiln.builder ENABLE ROW LEVEL SECURITY;
CREATE POLICY builder_read ON kiln.builder FOR SELECT TO kiln_reader, kiln_splitter, kiln_builder, kiln_janitor
    USING (true);
CREATE POLICY builder_register ON kiln.builder FOR INSERT TO kiln_builder
    WITH CHECK (role = session_user);
CREATE POLICY builder_own ON kiln.builder FOR UPDATE TO kiln_builder
    USING (role = session_user) WITH CHECK (role = session_user);
CREATE POLICY builder_manage ON kiln.builder FOR UPDATE TO kiln_janitor, kiln_admin
    USING (true);
COMMENT ON POLICY builder_read ON kiln.builder IS 'Everyone reads every builder.';
COMMENT ON POLICY builder_register ON kiln.builder IS 'A builder daemon registers builders in its own role only.';
COMMENT ON POLICY builder_own ON kiln.builder IS 'A builder daemon heart-beats and changes only its own builders.';
COMMENT ON POLICY builder_manage ON kiln.builder IS 'The janitor marks builders offline; admins enable, disable and drain them.';

ALTER TABLE kiln.builder_platform ENABLE ROW LEVEL SECURITY;
CREATE POLICY builder_platform_read ON kiln.builder_platform FOR SELECT TO kiln_reader, kiln_splitter, kiln_builder, kiln_janitor
    USING (true);
CREATE POLICY builder_platform_own ON kiln.builder_platform FOR INSERT TO kiln_builder
    WITH CHECK (builder IN (SELECT kiln.own_builders()));
CREATE POLICY builder_platform_own_delete ON kiln.builder_platform FOR DELETE TO kiln_builder
    USING (builder IN (SELECT kiln.own_builders()));
COMMENT ON POLICY builder_platform_read ON kiln.builder_platform IS 'Everyone reads which builder builds which platform.';
COMMENT ON POLICY builder_platform_own ON kiln.builder_platform IS 'A builder daemon declares platforms for its own builders only.';
COMMENT ON POLICY builder_platform_own_delete ON kiln.builder_platform IS 'A builder daemon withdraws platforms of its own builders only.';

-- The SECURITY DEFINER functions people and daemons call are theirs only
-- (PostgreSQL lets PUBLIC execute new functions): cancelling for submitters
-- and admins (roles/kiln_submitter.sql), recomputing a job's status for the
-- janitor (roles/kiln_janitor.sql); the triggers call them as the owner.
REVOKE EXECUTE ON FUNCTION kiln.refresh_job_status(bigint), kiln.cancel_job(bigint), kiln.cancel_task(bigint) FROM PUBLIC;

-- The reporting views run with the reader's rights, so row-level security
-- applies to them too (a view otherwise reads as its owner, who bypasses it).
ALTER VIEW kiln.queue_depth SET (security_invoker = true);
ALTER VIEW kiln.builder_status SET (security_invoker = true);
ALTER VIEW kiln.job_summary SET (security_invoker = true);
ALTER VIEW kiln.build_duration SET (security_invoker = true);
