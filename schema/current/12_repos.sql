-- Buckets as package repositories: what a build used.

-- The repositories of kiln.build_repositories with the snapshot's signed
-- index (InRelease, or rpm-md's repomd.xml), so that a build's record names
-- exactly the metadata it installed build dependencies from.
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
REVOKE ALL ON FUNCTION kiln.build_repository_snapshots(bigint, text) FROM PUBLIC;

-- Builds against private buckets: a builder asks, for the attempt it is
-- building, a token that reads one bucket's repositories through kiln-web
-- (kiln.web_repo_file accepts it while the attempt builds). Never a
-- person's token: it reads nothing else, and dies with the attempt.
CREATE OR REPLACE FUNCTION kiln.build_repository_token(p_builder text, p_task bigint, p_attempt integer, p_bucket text)
    RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, kiln, pg_temp
AS $$
DECLARE
    v_task kiln.task%ROWTYPE;
    v_timeout interval;
    -- Two version 4 UUIDs: 244 bits from the server's strong random source.
    v_token text := pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '')
                    || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '');
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    SELECT t.* INTO v_task FROM kiln.task t
     WHERE t.id = p_task AND t.status = 'building' AND t.builder = p_builder AND t.attempt = p_attempt;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'builder % is not building attempt % of task %', p_builder, p_attempt, p_task
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM kiln.build_repositories(v_task.job_id, v_task.platform) r WHERE r.bucket = p_bucket) THEN
        RAISE EXCEPTION 'task % does not build against bucket %', p_task, p_bucket
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT (SELECT b.private FROM kiln.bucket b WHERE b.name = p_bucket) THEN
        RETURN NULL;
    END IF;
    SELECT pl.timeout INTO v_timeout FROM kiln.platform pl WHERE pl.name = v_task.platform;
    DELETE FROM kiln.build_repo_token t WHERE t.expires_at < pg_catalog.now();
    INSERT INTO kiln.build_repo_token (token_sha256, bucket, task_id, attempt, expires_at)
    VALUES (pg_catalog.sha256(pg_catalog.convert_to(v_token, 'UTF8')), p_bucket, p_task, p_attempt,
            pg_catalog.now() + v_timeout);
    RETURN v_token;
END $$;
COMMENT ON FUNCTION kiln.build_repository_token(text, bigint, integer, text) IS 'For a builder (one of session_user''s, kiln.task_check_builder) building attempt p_attempt of task p_task: a token that reads the private bucket p_bucket''s repositories through kiln-web while that attempt builds, at most for the platform''s timeout (kiln.build_repo_token); NULL for a public bucket. Refused for a bucket the task does not build against (kiln.build_repositories).';
REVOKE ALL ON FUNCTION kiln.build_repository_token(text, bigint, integer, text) FROM PUBLIC;
