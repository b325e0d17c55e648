-- 0023_build_against.sql: builds use the repositories.
--
-- An sbuild platform builds against the served snapshot of the job's bucket
-- (so a job can Build-Depend on what an earlier job published there) and of
-- the buckets its build_against setting names, in that order. The builder
-- learns which snapshots and keys through kiln.build_repositories; it reads
-- the files themselves from kiln-web like any apt client. See
-- docs/repositories.md.

ALTER TABLE kiln.bucket
    ADD COLUMN build_against text[] NOT NULL DEFAULT '{}'
        CONSTRAINT bucket_build_against_valid CHECK (
            cardinality(build_against) <= 8
            AND array_position(build_against, NULL) IS NULL
            AND NOT (name = ANY (build_against)));
COMMENT ON COLUMN kiln.bucket.build_against IS 'Further buckets whose served repositories builds of this bucket install build dependencies from, after the bucket''s own (devel: {testing,stable}); at most 8, not the bucket itself, buckets that do not exist (any more) are skipped.';

CREATE FUNCTION kiln.build_repositories(p_job bigint, p_platform text)
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
                    WHERE f.platform = p_platform AND f.path = 'dists/' || b.name || '/InRelease')
     ORDER BY u.ord
$$;
COMMENT ON FUNCTION kiln.build_repositories(bigint, text) IS 'The APT repositories a build of job p_job on platform p_platform installs build dependencies from: the served snapshot of the job''s bucket, then of each bucket of its build_against setting, each with its active signing key; buckets without a served APT repository for the platform are left out. For builders (public keys and snapshot numbers only).';
REVOKE ALL ON FUNCTION kiln.build_repositories(bigint, text) FROM PUBLIC;
