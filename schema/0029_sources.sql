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
