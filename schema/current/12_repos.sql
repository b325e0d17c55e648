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
