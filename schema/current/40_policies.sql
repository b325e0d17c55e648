-- Current state (docs/schema.md, "Migrations"): applied by schema.Migrate
-- after the numbered migrations, in one transaction, on every migrate.
-- Edit the definition here; never copy it into a numbered migration.
-- Row-level security policies, each dropped and created again. Enabling
-- row-level security on a table is a table change: numbered migrations do it.

DROP POLICY IF EXISTS job_read ON kiln.job;
CREATE POLICY job_read ON kiln.job FOR SELECT TO kiln_reader
    USING (submitter = session_user OR kiln.bucket_readable(bucket));
COMMENT ON POLICY job_read ON kiln.job IS 'People read every job except those in private buckets they may not read; their own they always read.';

DROP POLICY IF EXISTS job_read_farm ON kiln.job;
CREATE POLICY job_read_farm ON kiln.job FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
COMMENT ON POLICY job_read_farm ON kiln.job IS 'The farm''s daemons and admins read every job.';

DROP POLICY IF EXISTS job_submit ON kiln.job;
CREATE POLICY job_submit ON kiln.job FOR INSERT TO kiln_submitter
    WITH CHECK (submitter = session_user);
COMMENT ON POLICY job_submit ON kiln.job IS 'A submitter inserts jobs in their own name only (a trigger sets submitter to session_user).';

DROP POLICY IF EXISTS job_validate ON kiln.job;
CREATE POLICY job_validate ON kiln.job FOR UPDATE TO kiln_splitter
    USING (status = 'submitted') WITH CHECK (status IN ('submitted', 'invalid'));
COMMENT ON POLICY job_validate ON kiln.job IS 'The splitter records the validation outcome of a job still waiting for it (its tasks then decide its status).';

DROP POLICY IF EXISTS package_read ON kiln.package;
CREATE POLICY package_read ON kiln.package FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id));
COMMENT ON POLICY package_read ON kiln.package IS 'Packages are readable with their job.';

DROP POLICY IF EXISTS package_read_farm ON kiln.package;
CREATE POLICY package_read_farm ON kiln.package FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
COMMENT ON POLICY package_read_farm ON kiln.package IS 'The farm''s daemons and admins read every package.';

DROP POLICY IF EXISTS package_submit ON kiln.package;
CREATE POLICY package_submit ON kiln.package FOR INSERT TO kiln_submitter
    WITH CHECK (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id AND j.submitter = session_user AND j.status = 'submitted')
                AND (kiln.blob_readable(blob_sha256) OR kiln.blob_stored_here(blob_sha256)));
COMMENT ON POLICY package_submit ON kiln.package IS 'A submitter adds packages only to their own job while it is submitted, pointing only at blobs they may read or stored in the same transaction.';

DROP POLICY IF EXISTS package_validate ON kiln.package;
CREATE POLICY package_validate ON kiln.package FOR UPDATE TO kiln_splitter
    USING (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id AND j.status = 'submitted'));
COMMENT ON POLICY package_validate ON kiln.package IS 'The splitter records what it parsed from the packages of a job still waiting for validation.';

DROP POLICY IF EXISTS package_file_read ON kiln.package_file;
CREATE POLICY package_file_read ON kiln.package_file FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id));
COMMENT ON POLICY package_file_read ON kiln.package_file IS 'Package files are readable with their job.';

DROP POLICY IF EXISTS package_file_read_farm ON kiln.package_file;
CREATE POLICY package_file_read_farm ON kiln.package_file FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
COMMENT ON POLICY package_file_read_farm ON kiln.package_file IS 'The farm''s daemons and admins read every package file.';

DROP POLICY IF EXISTS package_file_submit ON kiln.package_file;
CREATE POLICY package_file_submit ON kiln.package_file FOR INSERT TO kiln_submitter
    WITH CHECK (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id AND j.submitter = session_user AND j.status = 'submitted')
                AND (kiln.blob_readable(blob_sha256) OR kiln.blob_stored_here(blob_sha256)));
COMMENT ON POLICY package_file_submit ON kiln.package_file IS 'A submitter adds files only to their own job while it is submitted, pointing only at blobs they may read or stored in the same transaction.';

DROP POLICY IF EXISTS task_read ON kiln.task;
CREATE POLICY task_read ON kiln.task FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id));
COMMENT ON POLICY task_read ON kiln.task IS 'Tasks are readable with their job.';

DROP POLICY IF EXISTS task_read_farm ON kiln.task;
CREATE POLICY task_read_farm ON kiln.task FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
COMMENT ON POLICY task_read_farm ON kiln.task IS 'The farm''s daemons and admins read every task.';

DROP POLICY IF EXISTS task_split ON kiln.task;
CREATE POLICY task_split ON kiln.task FOR INSERT TO kiln_splitter
    WITH CHECK (true);
COMMENT ON POLICY task_split ON kiln.task IS 'The splitter creates tasks.';

DROP POLICY IF EXISTS task_split_river ON kiln.task;
CREATE POLICY task_split_river ON kiln.task FOR UPDATE TO kiln_splitter
    USING (true);
COMMENT ON POLICY task_split_river ON kiln.task IS 'The splitter links tasks to their River jobs.';

DROP POLICY IF EXISTS task_build ON kiln.task;
CREATE POLICY task_build ON kiln.task FOR UPDATE TO kiln_builder
    USING (status = 'pending' OR builder IN (SELECT kiln.own_builders()))
    WITH CHECK (builder IS NULL OR builder IN (SELECT kiln.own_builders()));
COMMENT ON POLICY task_build ON kiln.task IS 'A builder takes a pending task for one of its own builders, and changes only tasks its own builders hold.';

DROP POLICY IF EXISTS task_repair ON kiln.task;
CREATE POLICY task_repair ON kiln.task FOR UPDATE TO kiln_janitor
    USING (true);
COMMENT ON POLICY task_repair ON kiln.task IS 'The janitor requeues, times out and repairs any task.';

DROP POLICY IF EXISTS attempt_read ON kiln.attempt;
CREATE POLICY attempt_read ON kiln.attempt FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.task t WHERE t.id = task_id));
COMMENT ON POLICY attempt_read ON kiln.attempt IS 'Attempts are readable with their task.';

DROP POLICY IF EXISTS attempt_read_farm ON kiln.attempt;
CREATE POLICY attempt_read_farm ON kiln.attempt FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
COMMENT ON POLICY attempt_read_farm ON kiln.attempt IS 'The farm''s daemons and admins read every attempt.';

DROP POLICY IF EXISTS attempt_start ON kiln.attempt;
CREATE POLICY attempt_start ON kiln.attempt FOR INSERT TO kiln_builder
    WITH CHECK (builder IN (SELECT kiln.own_builders()));
COMMENT ON POLICY attempt_start ON kiln.attempt IS 'A builder records attempts of its own builders only.';

DROP POLICY IF EXISTS attempt_build ON kiln.attempt;
CREATE POLICY attempt_build ON kiln.attempt FOR UPDATE TO kiln_builder
    USING (builder IN (SELECT kiln.own_builders()))
    WITH CHECK (builder IN (SELECT kiln.own_builders()));
COMMENT ON POLICY attempt_build ON kiln.attempt IS 'A builder finishes only its own builders'' attempts.';

DROP POLICY IF EXISTS attempt_repair ON kiln.attempt;
CREATE POLICY attempt_repair ON kiln.attempt FOR UPDATE TO kiln_janitor
    USING (true);
COMMENT ON POLICY attempt_repair ON kiln.attempt IS 'The janitor marks any attempt lost or timed out.';

DROP POLICY IF EXISTS log_chunk_read ON kiln.log_chunk;
CREATE POLICY log_chunk_read ON kiln.log_chunk FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.task t WHERE t.id = task_id));
COMMENT ON POLICY log_chunk_read ON kiln.log_chunk IS 'Logs are readable with their task.';

DROP POLICY IF EXISTS log_chunk_read_farm ON kiln.log_chunk;
CREATE POLICY log_chunk_read_farm ON kiln.log_chunk FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
COMMENT ON POLICY log_chunk_read_farm ON kiln.log_chunk IS 'The farm''s daemons and admins read every log.';

DROP POLICY IF EXISTS log_chunk_write ON kiln.log_chunk;
CREATE POLICY log_chunk_write ON kiln.log_chunk FOR INSERT TO kiln_builder
    WITH CHECK (EXISTS (SELECT 1 FROM kiln.attempt a WHERE a.task_id = log_chunk.task_id AND a.attempt = log_chunk.attempt
                        AND a.builder IN (SELECT kiln.own_builders())));
COMMENT ON POLICY log_chunk_write ON kiln.log_chunk IS 'A builder writes logs only for its own builders'' attempts.';

DROP POLICY IF EXISTS log_chunk_prune ON kiln.log_chunk;
CREATE POLICY log_chunk_prune ON kiln.log_chunk FOR DELETE TO kiln_janitor
    USING (true);
COMMENT ON POLICY log_chunk_prune ON kiln.log_chunk IS 'The janitor prunes logs past retention.';

DROP POLICY IF EXISTS artifact_read ON kiln.artifact;
CREATE POLICY artifact_read ON kiln.artifact FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.task t WHERE t.id = task_id));
COMMENT ON POLICY artifact_read ON kiln.artifact IS 'Artifacts are readable with their task.';

DROP POLICY IF EXISTS artifact_read_farm ON kiln.artifact;
CREATE POLICY artifact_read_farm ON kiln.artifact FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
COMMENT ON POLICY artifact_read_farm ON kiln.artifact IS 'The farm''s daemons and admins read every artifact.';

DROP POLICY IF EXISTS artifact_store ON kiln.artifact;
CREATE POLICY artifact_store ON kiln.artifact FOR INSERT TO kiln_builder
    WITH CHECK (EXISTS (SELECT 1 FROM kiln.attempt a WHERE a.task_id = artifact.task_id AND a.attempt = artifact.attempt
                        AND a.builder IN (SELECT kiln.own_builders())));
COMMENT ON POLICY artifact_store ON kiln.artifact IS 'A builder stores artifacts only for its own builders'' attempts.';

DROP POLICY IF EXISTS artifact_prune ON kiln.artifact;
CREATE POLICY artifact_prune ON kiln.artifact FOR UPDATE TO kiln_janitor
    USING (true) WITH CHECK (blob_sha256 IS NULL);
COMMENT ON POLICY artifact_prune ON kiln.artifact IS 'The janitor prunes artifact content past retention: it may drop an artifact''s content, never point it at other bytes.';

DROP POLICY IF EXISTS event_read ON kiln.event;
CREATE POLICY event_read ON kiln.event FOR SELECT TO kiln_reader
    USING ((job_id IS NULL AND task_id IS NULL) OR EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id));
COMMENT ON POLICY event_read ON kiln.event IS 'Events of a job (every event naming a task names its job) are readable with the job, while it exists; events about no job or task (builders, janitor rounds) by everyone.';

DROP POLICY IF EXISTS event_read_farm ON kiln.event;
CREATE POLICY event_read_farm ON kiln.event FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
COMMENT ON POLICY event_read_farm ON kiln.event IS 'The farm''s daemons and admins read every event.';

DROP POLICY IF EXISTS event_record ON kiln.event;
CREATE POLICY event_record ON kiln.event FOR INSERT TO kiln_janitor
    WITH CHECK (kind LIKE 'janitor.%');
COMMENT ON POLICY event_record ON kiln.event IS 'The janitor records its rounds and repairs (janitor.* events); every other event is written by the triggers, as the owner.';

DROP POLICY IF EXISTS blob_read ON kiln.blob;
CREATE POLICY blob_read ON kiln.blob FOR SELECT TO kiln_reader
    USING (created_by = session_user
           OR EXISTS (SELECT 1 FROM kiln.package p WHERE p.blob_sha256 = blob.sha256)
           OR EXISTS (SELECT 1 FROM kiln.package_file f WHERE f.blob_sha256 = blob.sha256)
           OR EXISTS (SELECT 1 FROM kiln.artifact a WHERE a.blob_sha256 = blob.sha256));
COMMENT ON POLICY blob_read ON kiln.blob IS 'A blob is readable by whoever stored it and with any package or artifact that uses it.';

DROP POLICY IF EXISTS blob_read_farm ON kiln.blob;
CREATE POLICY blob_read_farm ON kiln.blob FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
COMMENT ON POLICY blob_read_farm ON kiln.blob IS 'The farm''s daemons and admins read every blob.';

DROP POLICY IF EXISTS blob_store ON kiln.blob;
CREATE POLICY blob_store ON kiln.blob FOR INSERT TO kiln_submitter, kiln_builder
    WITH CHECK (created_by = session_user);
COMMENT ON POLICY blob_store ON kiln.blob IS 'Submitters and builders store blobs in their own name.';

DROP POLICY IF EXISTS blob_verify ON kiln.blob;
CREATE POLICY blob_verify ON kiln.blob FOR UPDATE TO kiln_splitter
    USING (true);
COMMENT ON POLICY blob_verify ON kiln.blob IS 'The splitter marks blobs verified after re-hashing them.';

DROP POLICY IF EXISTS blob_prune ON kiln.blob;
CREATE POLICY blob_prune ON kiln.blob FOR DELETE TO kiln_janitor
    USING (true);
COMMENT ON POLICY blob_prune ON kiln.blob IS 'The janitor removes unreferenced blobs.';

DROP POLICY IF EXISTS builder_read ON kiln.builder;
CREATE POLICY builder_read ON kiln.builder FOR SELECT TO kiln_reader, kiln_splitter, kiln_builder, kiln_janitor
    USING (true);
COMMENT ON POLICY builder_read ON kiln.builder IS 'Everyone reads every builder.';

DROP POLICY IF EXISTS builder_register ON kiln.builder;
CREATE POLICY builder_register ON kiln.builder FOR INSERT TO kiln_builder
    WITH CHECK (role = session_user);
COMMENT ON POLICY builder_register ON kiln.builder IS 'A builder daemon registers builders in its own role only.';

DROP POLICY IF EXISTS builder_own ON kiln.builder;
CREATE POLICY builder_own ON kiln.builder FOR UPDATE TO kiln_builder
    USING (role = session_user) WITH CHECK (role = session_user);
COMMENT ON POLICY builder_own ON kiln.builder IS 'A builder daemon heart-beats and changes only its own builders.';

DROP POLICY IF EXISTS builder_manage ON kiln.builder;
CREATE POLICY builder_manage ON kiln.builder FOR UPDATE TO kiln_janitor, kiln_admin
    USING (true);
COMMENT ON POLICY builder_manage ON kiln.builder IS 'The janitor marks builders offline; admins enable, disable and drain them.';

DROP POLICY IF EXISTS builder_platform_read ON kiln.builder_platform;
CREATE POLICY builder_platform_read ON kiln.builder_platform FOR SELECT TO kiln_reader, kiln_splitter, kiln_builder, kiln_janitor
    USING (true);
COMMENT ON POLICY builder_platform_read ON kiln.builder_platform IS 'Everyone reads which builder builds which platform.';

DROP POLICY IF EXISTS builder_platform_own ON kiln.builder_platform;
CREATE POLICY builder_platform_own ON kiln.builder_platform FOR INSERT TO kiln_builder
    WITH CHECK (builder IN (SELECT kiln.own_builders()));
COMMENT ON POLICY builder_platform_own ON kiln.builder_platform IS 'A builder daemon declares platforms for its own builders only.';

DROP POLICY IF EXISTS builder_platform_own_delete ON kiln.builder_platform;
CREATE POLICY builder_platform_own_delete ON kiln.builder_platform FOR DELETE TO kiln_builder
    USING (builder IN (SELECT kiln.own_builders()));
COMMENT ON POLICY builder_platform_own_delete ON kiln.builder_platform IS 'A builder daemon withdraws platforms of its own builders only.';

DROP POLICY IF EXISTS job_delete_old ON kiln.job;
CREATE POLICY job_delete_old ON kiln.job FOR DELETE TO kiln_janitor
    USING (finished_at IS NOT NULL);
COMMENT ON POLICY job_delete_old ON kiln.job IS 'The janitor deletes finished jobs past retention when configured to (--delete-jobs-after); their packages, tasks, attempts, artifacts and logs go with them by cascade.';

DROP POLICY IF EXISTS blob_chunk_read ON kiln.blob_chunk;
CREATE POLICY blob_chunk_read ON kiln.blob_chunk FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.blob b WHERE b.sha256 = blob_chunk.sha256));
COMMENT ON POLICY blob_chunk_read ON kiln.blob_chunk IS 'A blob''s bytes are readable with its kiln.blob row: by its creator and with the packages and artifacts that use it.';

DROP POLICY IF EXISTS blob_chunk_read_farm ON kiln.blob_chunk;
CREATE POLICY blob_chunk_read_farm ON kiln.blob_chunk FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
COMMENT ON POLICY blob_chunk_read_farm ON kiln.blob_chunk IS 'The farm''s daemons and admins read every blob''s bytes.';

DROP POLICY IF EXISTS blob_chunk_store ON kiln.blob_chunk;
CREATE POLICY blob_chunk_store ON kiln.blob_chunk FOR INSERT TO kiln_submitter, kiln_builder
    WITH CHECK (true);
COMMENT ON POLICY blob_chunk_store ON kiln.blob_chunk IS 'Submitters and builders store chunks; the blob_chunk_guard trigger lets them only into a blob stored in the same transaction.';

DROP POLICY IF EXISTS blob_chunk_prune ON kiln.blob_chunk;
CREATE POLICY blob_chunk_prune ON kiln.blob_chunk FOR DELETE TO kiln_janitor
    USING (true);
COMMENT ON POLICY blob_chunk_prune ON kiln.blob_chunk IS 'The janitor removes the bytes of unreferenced blobs.';

DROP POLICY IF EXISTS river_job_work ON river.river_job;
CREATE POLICY river_job_work ON river.river_job FOR ALL TO kiln_splitter, kiln_janitor
    USING (true) WITH CHECK (true);
COMMENT ON POLICY river_job_work ON river.river_job IS 'The splitter and the janitor work, insert, retry, cancel and clean River jobs as River needs (their grants still decide which commands).';

-- Builders run River without leader election (riverjob), so they touch only
-- the River jobs they work: those of their own builders' platforms' queues.
-- The queues are an array made once per statement (an InitPlan), not a
-- hashed subquery: PostgreSQL charges a hashed subquery's start to every
-- probe of a nested loop, so River's completion of a batch (an UPDATE
-- joining its ids) was planned as a sequential scan of every River job
-- (6 ms for 30 jobs among 22,000; 60 ms for 500 among 100,000) rather than
-- one primary-key probe per job (1.3 and 6 ms; migration 0046).
DROP POLICY IF EXISTS river_job_build_read ON river.river_job;
CREATE POLICY river_job_build_read ON river.river_job FOR SELECT TO kiln_builder
    USING (true);
COMMENT ON POLICY river_job_build_read ON river.river_job IS 'Builders read every River job (they read every task anyway).';

DROP POLICY IF EXISTS river_job_build_work ON river.river_job;
CREATE POLICY river_job_build_work ON river.river_job FOR UPDATE TO kiln_builder
    USING (queue = ANY (ARRAY(SELECT 'build-' || bp.platform FROM kiln.builder_platform bp WHERE bp.builder IN (SELECT kiln.own_builders()))))
    WITH CHECK (queue = ANY (ARRAY(SELECT 'build-' || bp.platform FROM kiln.builder_platform bp WHERE bp.builder IN (SELECT kiln.own_builders()))));
COMMENT ON POLICY river_job_build_work ON river.river_job IS 'A builder fetches, completes, retries and snoozes only River jobs of the build queues (build-PLATFORM, riverjob.BuildQueue) of its own builders'' platforms, and cannot move one elsewhere: not another platform''s builds, not validate, report or janitor River jobs.';

DROP POLICY IF EXISTS river_job_build_delete ON river.river_job;
CREATE POLICY river_job_build_delete ON river.river_job FOR DELETE TO kiln_builder
    USING (queue = ANY (ARRAY(SELECT 'build-' || bp.platform FROM kiln.builder_platform bp WHERE bp.builder IN (SELECT kiln.own_builders()))));
COMMENT ON POLICY river_job_build_delete ON river.river_job IS 'A builder deletes only River jobs of its own builders'' platforms'' build queues.';

DROP POLICY IF EXISTS river_job_read_admin ON river.river_job;
CREATE POLICY river_job_read_admin ON river.river_job FOR SELECT TO kiln_admin
    USING (true);
COMMENT ON POLICY river_job_read_admin ON river.river_job IS 'Admins read every River job.';

DROP POLICY IF EXISTS river_job_submit ON river.river_job;
CREATE POLICY river_job_submit ON river.river_job FOR INSERT TO kiln_submitter
    WITH CHECK (state IN ('available', 'scheduled') AND kiln.own_validate_river_job(kind, queue, args, true));
COMMENT ON POLICY river_job_submit ON river.river_job IS 'A person enqueues only the validate River job of their own submitted job (kiln submit, kiln resubmit). No policy lets a person update or delete a River job.';

DROP POLICY IF EXISTS river_job_submit_read ON river.river_job;
CREATE POLICY river_job_submit_read ON river.river_job FOR SELECT TO kiln_submitter
    USING (kiln.own_validate_river_job(kind, queue, args, false));
COMMENT ON POLICY river_job_submit_read ON river.river_job IS 'A person reads the validate River jobs of their own jobs (River''s insert returns the row).';

DROP POLICY IF EXISTS job_give_up ON kiln.job;
CREATE POLICY job_give_up ON kiln.job FOR UPDATE TO kiln_janitor
    USING (status = 'submitted') WITH CHECK (status = 'invalid');
COMMENT ON POLICY job_give_up ON kiln.job IS 'The janitor marks invalid a job whose validation failed to complete too often (docs/janitor.md).';

DROP POLICY IF EXISTS event_builder ON kiln.event;
CREATE POLICY event_builder ON kiln.event FOR INSERT TO kiln_builder
    WITH CHECK (kind LIKE 'builder.%');
COMMENT ON POLICY event_builder ON kiln.event IS 'Builders record their own builder.* events (builder.recover); every other event is written by the triggers or the janitor.';

DROP POLICY IF EXISTS river_job_web_resubmit ON river.river_job;
CREATE POLICY river_job_web_resubmit ON river.river_job FOR INSERT TO kiln_web
    WITH CHECK (state IN ('available', 'scheduled') AND kind = 'validate' AND queue = 'incoming'
                AND jsonb_typeof(args -> 'job_id') = 'number'
                AND EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = (args ->> 'job_id')::bigint
                            AND j.status = 'submitted' AND j.resubmit_of IS NOT NULL));
COMMENT ON POLICY river_job_web_resubmit ON river.river_job IS 'kiln-web enqueues only the validate River job of a job just resubmitted through kiln.web_resubmit.';

DROP POLICY IF EXISTS river_job_web_read ON river.river_job;
CREATE POLICY river_job_web_read ON river.river_job FOR SELECT TO kiln_web
    USING (kind = 'validate' AND queue = 'incoming');
COMMENT ON POLICY river_job_web_read ON river.river_job IS 'kiln-web reads validate River jobs (River''s insert returns the row).';

-- Admins queue the environment River job of an sbuild platform that has an
-- environment spec (kiln admin environment create|refresh), and nothing
-- else. River inserts unique jobs with ON CONFLICT ... DO UPDATE SET kind =
-- kind, hence the UPDATE policy, which admits environment jobs only.
DROP POLICY IF EXISTS river_job_environment_admin ON river.river_job;
CREATE POLICY river_job_environment_admin ON river.river_job FOR INSERT TO kiln_admin
    WITH CHECK (kind = 'environment' AND queue = 'build-' || (args ->> 'platform')
                AND EXISTS (SELECT 1 FROM kiln.platform_environment pe WHERE pe.platform = args ->> 'platform'));
COMMENT ON POLICY river_job_environment_admin ON river.river_job IS 'An admin enqueues only the environment River job of a platform with an environment spec, in that platform''s build queue.';

DROP POLICY IF EXISTS river_job_environment_admin_unique ON river.river_job;
CREATE POLICY river_job_environment_admin_unique ON river.river_job FOR UPDATE TO kiln_admin
    USING (kind = 'environment') WITH CHECK (kind = 'environment');
COMMENT ON POLICY river_job_environment_admin_unique ON river.river_job IS 'River''s unique insert touches the waiting environment job it would duplicate (DO UPDATE SET kind = kind); nothing else of River''s is an admin''s to change.';

DROP POLICY IF EXISTS snapshot_read ON kiln.snapshot;
CREATE POLICY snapshot_read ON kiln.snapshot FOR SELECT TO kiln_reader USING (kiln.bucket_readable(bucket));
COMMENT ON POLICY snapshot_read ON kiln.snapshot IS 'People read the snapshots of buckets whose jobs they may read.';

DROP POLICY IF EXISTS snapshot_read_farm ON kiln.snapshot;
CREATE POLICY snapshot_read_farm ON kiln.snapshot FOR SELECT TO kiln_janitor, kiln_admin USING (true);
COMMENT ON POLICY snapshot_read_farm ON kiln.snapshot IS 'The janitor and admins read every snapshot.';

DROP POLICY IF EXISTS snapshot_publish ON kiln.snapshot;
CREATE POLICY snapshot_publish ON kiln.snapshot TO kiln_publisher USING (true) WITH CHECK (created_by = session_user);
COMMENT ON POLICY snapshot_publish ON kiln.snapshot IS 'The publisher writes snapshots in its own name.';

DROP POLICY IF EXISTS repository_file_read ON kiln.repository_file;
CREATE POLICY repository_file_read ON kiln.repository_file FOR SELECT TO kiln_reader USING (kiln.bucket_readable(bucket));
COMMENT ON POLICY repository_file_read ON kiln.repository_file IS 'People read the files of buckets whose jobs they may read.';

DROP POLICY IF EXISTS repository_file_read_farm ON kiln.repository_file;
CREATE POLICY repository_file_read_farm ON kiln.repository_file FOR SELECT TO kiln_janitor, kiln_admin USING (true);
COMMENT ON POLICY repository_file_read_farm ON kiln.repository_file IS 'The janitor and admins read every repository file.';

DROP POLICY IF EXISTS repository_file_publish ON kiln.repository_file;
CREATE POLICY repository_file_publish ON kiln.repository_file TO kiln_publisher USING (true);
COMMENT ON POLICY repository_file_publish ON kiln.repository_file IS 'The publisher writes the manifests.';

DROP POLICY IF EXISTS bucket_publication_read ON kiln.bucket_publication;
CREATE POLICY bucket_publication_read ON kiln.bucket_publication FOR SELECT TO kiln_reader USING (kiln.bucket_readable(bucket));
COMMENT ON POLICY bucket_publication_read ON kiln.bucket_publication IS 'People see which snapshot is served for buckets they may read.';

DROP POLICY IF EXISTS bucket_publication_read_farm ON kiln.bucket_publication;
CREATE POLICY bucket_publication_read_farm ON kiln.bucket_publication FOR SELECT TO kiln_janitor, kiln_admin USING (true);
COMMENT ON POLICY bucket_publication_read_farm ON kiln.bucket_publication IS 'The janitor and admins see every bucket''s served snapshot.';

DROP POLICY IF EXISTS bucket_publication_publish ON kiln.bucket_publication;
CREATE POLICY bucket_publication_publish ON kiln.bucket_publication TO kiln_publisher USING (true);
COMMENT ON POLICY bucket_publication_publish ON kiln.bucket_publication IS 'The publisher moves the served snapshot.';

DROP POLICY IF EXISTS repo_token_own ON kiln.repo_token;
CREATE POLICY repo_token_own ON kiln.repo_token FOR SELECT TO kiln_reader USING (person = session_user);
COMMENT ON POLICY repo_token_own ON kiln.repo_token IS 'People see (the hashes of) their own tokens only.';

DROP POLICY IF EXISTS repo_token_admin ON kiln.repo_token;
CREATE POLICY repo_token_admin ON kiln.repo_token TO kiln_admin USING (true);
COMMENT ON POLICY repo_token_admin ON kiln.repo_token IS 'Admins see and revoke every token.';

-- The publisher reads what it publishes from, in every bucket.
DROP POLICY IF EXISTS job_read_publisher ON kiln.job;
CREATE POLICY job_read_publisher ON kiln.job FOR SELECT TO kiln_publisher USING (true);
COMMENT ON POLICY job_read_publisher ON kiln.job IS 'The publisher reads every job (to publish it when it ends).';

DROP POLICY IF EXISTS task_read_publisher ON kiln.task;
CREATE POLICY task_read_publisher ON kiln.task FOR SELECT TO kiln_publisher USING (true);
COMMENT ON POLICY task_read_publisher ON kiln.task IS 'The publisher reads every task (which succeeded).';

DROP POLICY IF EXISTS artifact_read_publisher ON kiln.artifact;
CREATE POLICY artifact_read_publisher ON kiln.artifact FOR SELECT TO kiln_publisher USING (true);
COMMENT ON POLICY artifact_read_publisher ON kiln.artifact IS 'The publisher reads every artifact (the binary packages it publishes).';

-- Blobs of published files are readable with the snapshot that uses them.
DROP POLICY IF EXISTS blob_read_published ON kiln.blob;
CREATE POLICY blob_read_published ON kiln.blob FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.repository_file f WHERE f.blob_sha256 = blob.sha256));
COMMENT ON POLICY blob_read_published ON kiln.blob IS 'A blob is readable with any snapshot file (that the reader may read) that uses it.';

DROP POLICY IF EXISTS blob_read_publisher ON kiln.blob;
CREATE POLICY blob_read_publisher ON kiln.blob FOR SELECT TO kiln_publisher USING (true);
COMMENT ON POLICY blob_read_publisher ON kiln.blob IS 'The publisher reads every blob (the packages it publishes).';

DROP POLICY IF EXISTS blob_store_publisher ON kiln.blob;
CREATE POLICY blob_store_publisher ON kiln.blob FOR INSERT TO kiln_publisher WITH CHECK (created_by = session_user);
COMMENT ON POLICY blob_store_publisher ON kiln.blob IS 'The publisher stores repository metadata as blobs in its own name.';

DROP POLICY IF EXISTS blob_chunk_read_publisher ON kiln.blob_chunk;
CREATE POLICY blob_chunk_read_publisher ON kiln.blob_chunk FOR SELECT TO kiln_publisher USING (true);
COMMENT ON POLICY blob_chunk_read_publisher ON kiln.blob_chunk IS 'The publisher reads the bytes of the packages it publishes.';

DROP POLICY IF EXISTS blob_chunk_store_publisher ON kiln.blob_chunk;
CREATE POLICY blob_chunk_store_publisher ON kiln.blob_chunk FOR INSERT TO kiln_publisher WITH CHECK (true);
COMMENT ON POLICY blob_chunk_store_publisher ON kiln.blob_chunk IS 'The publisher stores the chunks of its metadata blobs (blob_chunk_guard: only into a blob stored in the same transaction).';
