-- Current state (docs/schema.md, "Migrations"): applied by schema.Migrate
-- after the numbered migrations, in one transaction, on every migrate.
-- Debian source packages in APT repositories (schema/0029_sources.sql,
-- docs/repositories.md "Source packages").

-- The publisher reads the source packages of the jobs it publishes through
-- this function only: it holds no grant on kiln.package or
-- kiln.package_file, so it learns nothing else about a job's submission.
CREATE OR REPLACE FUNCTION kiln.publisher_job_sources(p_job bigint)
    RETURNS TABLE (seq integer, file_name text, blob_sha256 bytea, size bigint, is_dsc boolean)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, kiln, pg_temp
AS $$
    SELECT p.seq, p.file_name, p.blob_sha256, p.size, true
      FROM kiln.package p
     WHERE p.job_id = p_job AND p.format = 'dsc' AND p.name IS NOT NULL AND p.reason IS NULL
    UNION ALL
    SELECT f.seq, f.file_name, f.blob_sha256, f.size, false
      FROM kiln.package p
      JOIN kiln.package_file f ON f.job_id = p.job_id AND f.seq = p.seq
     WHERE p.job_id = p_job AND p.format = 'dsc' AND p.name IS NOT NULL AND p.reason IS NULL
     ORDER BY 1, 5 DESC, 2
$$;
COMMENT ON FUNCTION kiln.publisher_job_sources(bigint) IS 'For kiln-publisher: the Debian source packages of job p_job that the splitter accepted (the .dsc first, is_dsc, then the files submitted with it), as stored blobs. The publisher checks every file against the .dsc itself before it publishes it.';
REVOKE ALL ON FUNCTION kiln.publisher_job_sources(bigint) FROM PUBLIC;

DROP POLICY IF EXISTS source_package_read ON kiln.source_package;
CREATE POLICY source_package_read ON kiln.source_package FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.repository_file f WHERE f.source_package = source_package.sha256));
COMMENT ON POLICY source_package_read ON kiln.source_package IS 'People read a source package while a repository file they may read (row-level security of kiln.repository_file: not of private buckets they may not read) belongs to it.';

DROP POLICY IF EXISTS source_package_read_farm ON kiln.source_package;
CREATE POLICY source_package_read_farm ON kiln.source_package FOR SELECT TO kiln_janitor, kiln_admin USING (true);
COMMENT ON POLICY source_package_read_farm ON kiln.source_package IS 'The janitor (blob references) and admins read every source package.';

DROP POLICY IF EXISTS source_package_publish ON kiln.source_package;
CREATE POLICY source_package_publish ON kiln.source_package TO kiln_publisher USING (true);
COMMENT ON POLICY source_package_publish ON kiln.source_package IS 'The publisher records and forgets source packages.';

CREATE OR REPLACE VIEW kiln.repository_source WITH (security_barrier, security_invoker) AS
SELECT s.bucket, f.platform, sp.name, sp.version, f.path, f.size,
       encode(f.blob_sha256, 'hex') AS sha256, f.job_id, s.seq AS snapshot_seq
FROM kiln.bucket_publication p
JOIN kiln.snapshot s ON s.id = p.current_snapshot
JOIN kiln.repository_file f ON f.bucket = s.bucket AND f.until_seq IS NULL AND f.blob_sha256 = f.source_package
JOIN kiln.source_package sp ON sp.sha256 = f.source_package;
COMMENT ON VIEW kiln.repository_source IS 'What each bucket serves now: one row per Debian source package (its .dsc) in the current snapshot of every APT repository (bucket, platform).';
COMMENT ON COLUMN kiln.repository_source.bucket IS 'The bucket.';
COMMENT ON COLUMN kiln.repository_source.platform IS 'The repository''s platform.';
COMMENT ON COLUMN kiln.repository_source.name IS 'Source package name.';
COMMENT ON COLUMN kiln.repository_source.version IS 'Its version.';
COMMENT ON COLUMN kiln.repository_source.path IS 'Path of its .dsc in the repository (under /repos/BUCKET/PLATFORM/).';
COMMENT ON COLUMN kiln.repository_source.size IS 'Size of the .dsc in bytes.';
COMMENT ON COLUMN kiln.repository_source.sha256 IS 'SHA-256 of the .dsc, hex.';
COMMENT ON COLUMN kiln.repository_source.job_id IS 'The job whose source it is.';
COMMENT ON COLUMN kiln.repository_source.snapshot_seq IS 'The bucket snapshot being served.';
