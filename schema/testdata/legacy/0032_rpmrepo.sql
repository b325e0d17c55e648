-- 0032_rpmrepo.sql: mock platforms build against the buckets' rpm-md
-- repositories (docs/repositories.md, "mock platforms"). No table or data
-- changes: kiln.build_repositories and kiln.build_repository_snapshots
-- (schema/current/10_functions.sql and 12_repos.sql) now also offer a
-- bucket whose snapshot has an rpm-md repository for the platform
-- (repodata/repomd.xml), not only an APT one (dists/BUCKET/InRelease).

-- As kiln did before current-state files: the functions of this version.
CREATE OR REPLACE FUNCTION kiln.build_repositories(p_job bigint, p_platform text)
    RETURNS TABLE (bucket text, seq integer, fingerprint text, public_key text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, kiln, pg_temp
AS $$
    SELECT b.name, s.seq, k.fingerprint, k.public_key
      FROM kiln.job j
      JOIN kiln.bucket jb ON jb.name = j.bucket
      CROSS JOIN LATERAL unnest(ARRAY[jb.name] || jb.build_against) WITH ORDINALITY AS u(name, ord)
      JOIN kiln.bucket b ON b.name = u.name
      JOIN kiln.bucket_publication p ON p.bucket = b.name
      JOIN kiln.snapshot s ON s.id = p.current_snapshot
      JOIN kiln.bucket_key k ON k.bucket = b.name AND k.active
     WHERE j.id = p_job
       AND EXISTS (SELECT 1 FROM kiln.snapshot_files(b.name, s.seq) f
                    WHERE f.platform = p_platform AND f.path IN ('dists/' || b.name || '/InRelease', 'repodata/repomd.xml'))
     ORDER BY u.ord
$$;
COMMENT ON FUNCTION kiln.build_repositories(bigint, text) IS 'The repositories (APT, or rpm-md for RPM platforms) a build of job p_job on platform p_platform installs build dependencies from: the served snapshot of the job''s bucket, then of each bucket of its build_against setting, each with its active signing key; buckets without a served repository for the platform are left out. For builders (public keys and snapshot numbers only).';

CREATE OR REPLACE FUNCTION kiln.build_repository_snapshots(p_job bigint, p_platform text)
    RETURNS TABLE (bucket text, seq integer, fingerprint text, public_key text, index_path text, index_sha256 text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, kiln, pg_temp
AS $$
    SELECT r.bucket, r.seq, r.fingerprint, r.public_key, f.path, pg_catalog.encode(f.blob_sha256, 'hex')
      FROM kiln.build_repositories(p_job, p_platform) WITH ORDINALITY AS r(bucket, seq, fingerprint, public_key, ord)
      JOIN kiln.snapshot_files(r.bucket, r.seq) f
        ON f.platform = p_platform AND f.path IN ('dists/' || r.bucket || '/InRelease', 'repodata/repomd.xml')
     ORDER BY r.ord
$$;
COMMENT ON FUNCTION kiln.build_repository_snapshots(bigint, text) IS 'kiln.build_repositories with, for each repository, the path and sha256 (hex) of its snapshot''s signed index (dists/BUCKET/InRelease for APT, repodata/repomd.xml for rpm-md), which a build records in its build info. For builders.';

-- As kiln did before current-state files: the audit of issue 12 (promotion
-- of jobs the person may read only; the janitor's pruning; builders' River jobs).
CREATE OR REPLACE FUNCTION kiln.promote_for(p_person name, p_job_id bigint, p_bucket text)
 RETURNS bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_from text;
    v_id   bigint;
BEGIN
    -- The job must be one p_person may read (as kiln.web_resubmit checks):
    -- this function runs as the owner, past row-level security, and a
    -- private job promoted into a bucket p_person publishes to would serve
    -- its packages there. Someone else's private job is a missing job.
    SELECT j.bucket INTO v_from FROM kiln.job j WHERE j.id = p_job_id
        AND (j.submitter = p_person
             OR pg_catalog.pg_has_role(p_person, 'kiln_admin', 'MEMBER')
             OR NOT EXISTS (SELECT 1 FROM kiln.bucket b WHERE b.name = j.bucket AND b.private)
             OR EXISTS (SELECT 1 FROM kiln.bucket_grant g JOIN pg_catalog.pg_roles r ON r.rolname = g.grantee
                        WHERE g.bucket = j.bucket AND pg_catalog.pg_has_role(p_person, r.oid, 'MEMBER')));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist or is not visible to you', p_job_id USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM kiln.bucket b WHERE b.name = p_bucket) THEN
        RAISE EXCEPTION 'bucket % does not exist', p_bucket USING ERRCODE = 'no_data_found';
    END IF;
    IF v_from = p_bucket THEN
        RAISE EXCEPTION 'job % is already in bucket %', p_job_id, p_bucket USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT kiln.may_publish_to(p_person, p_bucket) THEN
        RAISE EXCEPTION '% may not promote to bucket % (it needs a grant on the bucket)', p_person, p_bucket
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM kiln.repository_file f
                   WHERE f.bucket = v_from AND f.job_id = p_job_id AND f.until_seq IS NULL) THEN
        RAISE EXCEPTION 'job % has no packages published in bucket %', p_job_id, v_from
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO kiln.publication_request (bucket, kind, job_id, requested_by)
        VALUES (p_bucket, 'promote', p_job_id, p_person) RETURNING id INTO v_id;
    PERFORM pg_notify('kiln_publish', json_build_object('bucket', p_bucket, 'job', p_job_id)::text);
    RETURN v_id;
END $function$;
COMMENT ON FUNCTION kiln.promote_for(name, bigint, text) IS 'Queues the promotion of a job''s packages, as currently published in its own bucket, into p_bucket for p_person, who must be able to read the job (someone else''s private job is answered as a missing one) and needs a grant on p_bucket. Returns the request id. Called by kiln.promote and kiln.web_promote, which establish who p_person is.';

DROP POLICY IF EXISTS artifact_prune ON kiln.artifact;
CREATE POLICY artifact_prune ON kiln.artifact FOR UPDATE TO kiln_janitor
    USING (true) WITH CHECK (blob_sha256 IS NULL);
COMMENT ON POLICY artifact_prune ON kiln.artifact IS 'The janitor prunes artifact content past retention: it may drop an artifact''s content, never point it at other bytes.';

DROP POLICY IF EXISTS river_job_work ON river.river_job;
CREATE POLICY river_job_work ON river.river_job FOR ALL TO kiln_splitter, kiln_janitor
    USING (true) WITH CHECK (true);
COMMENT ON POLICY river_job_work ON river.river_job IS 'The splitter and the janitor work, insert, retry, cancel and clean River jobs as River needs (their grants still decide which commands).';

-- Builders run River without leader election (riverjob), so they touch only
-- the River jobs they work: those of their own builders' platforms' queues.
DROP POLICY IF EXISTS river_job_build_read ON river.river_job;
CREATE POLICY river_job_build_read ON river.river_job FOR SELECT TO kiln_builder
    USING (true);
COMMENT ON POLICY river_job_build_read ON river.river_job IS 'Builders read every River job (they read every task anyway).';

DROP POLICY IF EXISTS river_job_build_work ON river.river_job;
CREATE POLICY river_job_build_work ON river.river_job FOR UPDATE TO kiln_builder
    USING (queue IN (SELECT 'build-' || bp.platform FROM kiln.builder_platform bp WHERE bp.builder IN (SELECT kiln.own_builders())))
    WITH CHECK (queue IN (SELECT 'build-' || bp.platform FROM kiln.builder_platform bp WHERE bp.builder IN (SELECT kiln.own_builders())));
COMMENT ON POLICY river_job_build_work ON river.river_job IS 'A builder fetches, completes, retries and snoozes only River jobs of the build queues (build-PLATFORM, riverjob.BuildQueue) of its own builders'' platforms, and cannot move one elsewhere: not another platform''s builds, not validate, report or janitor River jobs.';

DROP POLICY IF EXISTS river_job_build_delete ON river.river_job;
CREATE POLICY river_job_build_delete ON river.river_job FOR DELETE TO kiln_builder
    USING (queue IN (SELECT 'build-' || bp.platform FROM kiln.builder_platform bp WHERE bp.builder IN (SELECT kiln.own_builders())));
COMMENT ON POLICY river_job_build_delete ON river.river_job IS 'A builder deletes only River jobs of its own builders'' platforms'' build queues.';
