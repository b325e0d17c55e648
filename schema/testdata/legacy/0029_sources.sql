-- 0029_sources.sql: Debian source packages in a bucket's APT repositories.
--
-- Next to its binary packages, a bucket's APT repository serves the source
-- packages of the jobs that entered it (dists/BUCKET/main/source/Sources and
-- the .dsc with the files it names, in the pool), so that apt-get source
-- works against it; with the bucket's sign_packages on, also a .changes per
-- published source, clear-signed with the bucket's key. Both are files of the
-- bucket's snapshots like any other (kiln.repository_file), marked with the
-- source package they belong to. See docs/repositories.md, "Source packages".
-- (Its functions and policies are current state in schema/current/13_sources.sql.)

CREATE TABLE kiln.source_package (
    sha256    bytea PRIMARY KEY REFERENCES kiln.blob (sha256),
    name      text NOT NULL CONSTRAINT source_package_name_valid CHECK (name ~ '^[a-z0-9][a-z0-9+.-]{1,199}$'),
    version   text NOT NULL CONSTRAINT source_package_version_valid CHECK (version ~ '^[A-Za-z0-9.+~:-]{1,200}$'),
    stanza    text NOT NULL CONSTRAINT source_package_stanza_one_paragraph CHECK (position(E'\n\n' IN stanza) = 0),
    parsed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kiln.source_package IS 'A Debian source package (.dsc and the files it names) as the publisher read and checked it, once, when it first published it: what Sources indexes are made of.';
COMMENT ON COLUMN kiln.source_package.sha256 IS 'The .dsc file''s blob.';
COMMENT ON COLUMN kiln.source_package.name IS 'Source package name (the .dsc''s Source).';
COMMENT ON COLUMN kiln.source_package.version IS 'Full version, [epoch:]upstream[-revision]. A newer version replaces an older one of the same name in a repository.';
COMMENT ON COLUMN kiln.source_package.stanza IS 'The Sources stanza without Directory (which the publisher appends): the .dsc''s fields with Source renamed Package, and Files and Checksums-Sha256 listing the .dsc itself and every file it names, with hashes the publisher computed from the stored bytes.';
COMMENT ON COLUMN kiln.source_package.parsed_at IS 'When the publisher read it.';

ALTER TABLE kiln.repository_file
    ADD COLUMN source_package bytea REFERENCES kiln.source_package (sha256),
    ADD CONSTRAINT repository_file_binary_or_source CHECK (package IS NULL OR source_package IS NULL);
COMMENT ON COLUMN kiln.repository_file.source_package IS 'For a file of a source package (the .dsc, a file it names, or the .changes the publisher signed for it): the source package; NULL otherwise.';

COMMENT ON COLUMN kiln.bucket.sign_packages IS 'When true the publisher also signs packages: rpmsign for RPMs, and for Debian a .changes of each published source package and its binaries, clear-signed with the bucket''s key (as debsign does). Repository metadata is always signed.';

CREATE INDEX repository_file_source_idx ON kiln.repository_file (source_package) WHERE source_package IS NOT NULL;

ALTER TABLE kiln.source_package ENABLE ROW LEVEL SECURITY;


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
