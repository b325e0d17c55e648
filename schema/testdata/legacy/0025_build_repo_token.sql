-- Builds against private buckets: a credential per build attempt and bucket,
-- never a person's token (schema/current/12_repos.sql).
CREATE TABLE kiln.build_repo_token (
    token_sha256 bytea PRIMARY KEY CONSTRAINT build_repo_token_sha256_length CHECK (length(token_sha256) = 32),
    bucket       text NOT NULL REFERENCES kiln.bucket (name) ON DELETE CASCADE,
    task_id      bigint NOT NULL REFERENCES kiln.task (id) ON DELETE CASCADE,
    attempt      integer NOT NULL CONSTRAINT build_repo_token_attempt_positive CHECK (attempt > 0),
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kiln.build_repo_token IS 'Read-only credentials a builder gets for one build attempt to read one private bucket''s repositories through kiln-web (HTTP basic password, as with kiln.repo_token). Only the SHA-256 is stored. A token reads that bucket only, and only while its attempt is building and before it expires.';
COMMENT ON COLUMN kiln.build_repo_token.token_sha256 IS 'SHA-256 of the token.';
COMMENT ON COLUMN kiln.build_repo_token.bucket IS 'The one bucket whose repositories the token reads.';
COMMENT ON COLUMN kiln.build_repo_token.task_id IS 'The task whose build the token is for.';
COMMENT ON COLUMN kiln.build_repo_token.attempt IS 'The attempt of the task: the token stops working when the task is no longer building this attempt.';
COMMENT ON COLUMN kiln.build_repo_token.expires_at IS 'When the token stops working at the latest (made with the platform''s timeout).';
COMMENT ON COLUMN kiln.build_repo_token.created_at IS 'When it was made.';
CREATE INDEX build_repo_token_task_idx ON kiln.build_repo_token (task_id);
ALTER TABLE kiln.build_repo_token ENABLE ROW LEVEL SECURITY;

-- As kiln did before current-state files: the functions of this version
-- (schema/current/12_repos.sql, and kiln.web_repo_file in 10_functions.sql).
CREATE OR REPLACE FUNCTION kiln.web_repo_file(p_person name, p_token text, p_bucket text, p_seq integer, p_platform text, p_path text)
 RETURNS TABLE(blob_sha256 bytea, size bigint, chunk_size integer)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_person name := p_person;
    v_build kiln.build_repo_token%ROWTYPE;
BEGIN
    IF NOT pg_has_role(session_user, 'kiln_web', 'MEMBER') THEN
        RAISE EXCEPTION 'only the web interface (a member of kiln_web) may read repositories for a person'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_token IS NOT NULL THEN
        SELECT bt.* INTO v_build FROM kiln.build_repo_token bt WHERE bt.token_sha256 = sha256(convert_to(p_token, 'UTF8'));
        IF FOUND THEN
            -- A build's token: its one bucket, while its attempt builds.
            IF v_build.bucket <> p_bucket OR v_build.expires_at <= now()
               OR NOT EXISTS (SELECT 1 FROM kiln.task t WHERE t.id = v_build.task_id AND t.status = 'building'
                                                          AND t.attempt = v_build.attempt) THEN
                RETURN;
            END IF;
        ELSE
            SELECT t.person INTO v_person FROM kiln.repo_token t WHERE t.token_sha256 = sha256(convert_to(p_token, 'UTF8'));
            IF NOT FOUND THEN
                RETURN;
            END IF;
        END IF;
    END IF;
    IF v_build.token_sha256 IS NULL THEN
        -- A person: logged in, or the owner of a person's token.
        IF v_person IS NULL OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_person AND rolcanlogin AND NOT rolsuper)
           OR pg_has_role(v_person, 'kiln_web', 'MEMBER') THEN
            RETURN;
        END IF;
        IF EXISTS (SELECT 1 FROM kiln.bucket b WHERE b.name = p_bucket AND b.private)
           AND NOT pg_has_role(v_person, 'kiln_admin', 'MEMBER')
           AND NOT EXISTS (SELECT 1 FROM kiln.bucket_grant g JOIN pg_catalog.pg_roles r ON r.rolname = g.grantee
                           WHERE g.bucket = p_bucket AND pg_has_role(v_person, r.oid, 'MEMBER')) THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
        SELECT f.blob_sha256, f.size, bl.chunk_size
        FROM kiln.repository_file f
        JOIN kiln.blob bl ON bl.sha256 = f.blob_sha256
        WHERE f.bucket = p_bucket AND f.platform = p_platform AND f.path = p_path
          AND CASE WHEN p_seq IS NULL THEN f.until_seq IS NULL
                   ELSE f.from_seq <= p_seq AND (f.until_seq IS NULL OR f.until_seq > p_seq)
                        AND EXISTS (SELECT 1 FROM kiln.snapshot s WHERE s.bucket = p_bucket AND s.seq = p_seq) END;
END $function$;
COMMENT ON FUNCTION kiln.web_repo_file(name, text, text, integer, text, text) IS 'For kiln-web serving a private bucket''s repository: the blob of one file of the current snapshot (p_seq NULL) or of snapshot p_seq, if the person (p_person, logged in; or the owner of p_token) may read the bucket, or if p_token is a build''s token (kiln.build_repo_token) for this bucket whose attempt is still building. No rows otherwise. Public buckets are read under row-level security without it.';

-- Buckets as package repositories: what a build used.

-- The repositories of kiln.build_repositories with the snapshot's signed
-- index, so that a build's record names exactly the metadata it installed
-- build dependencies from.
CREATE OR REPLACE FUNCTION kiln.build_repository_snapshots(p_job bigint, p_platform text)
    RETURNS TABLE (bucket text, seq integer, fingerprint text, public_key text, index_path text, index_sha256 text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, kiln, pg_temp
AS $$
    SELECT r.bucket, r.seq, r.fingerprint, r.public_key, f.path, pg_catalog.encode(f.blob_sha256, 'hex')
      FROM kiln.build_repositories(p_job, p_platform) WITH ORDINALITY AS r(bucket, seq, fingerprint, public_key, ord)
      JOIN kiln.snapshot_files(r.bucket, r.seq) f
        ON f.platform = p_platform AND f.path = 'dists/' || r.bucket || '/InRelease'
     ORDER BY r.ord
$$;
COMMENT ON FUNCTION kiln.build_repository_snapshots(bigint, text) IS 'kiln.build_repositories with, for each repository, the path and sha256 (hex) of its snapshot''s signed index (dists/BUCKET/InRelease), which a build records in its build info. For builders.';
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
