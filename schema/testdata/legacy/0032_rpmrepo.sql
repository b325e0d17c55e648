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
