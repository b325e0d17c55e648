-- 0021_repository.sql: buckets become package repositories.
--
-- A bucket publishes one repository per platform (an APT tree for deb
-- platforms, rpm-md for rpm platforms). Every publication is a bucket
-- snapshot: an immutable manifest of files (path -> blob). The served
-- repository is the snapshot kiln.bucket_publication.current_snapshot points
-- at; kiln-publisher (role kiln_publisher) moves the pointer in the same
-- transaction that writes the new snapshot, so a publisher that dies half way
-- leaves the previous snapshot served. Work reaches the publisher as rows of
-- kiln.publication_request (a finished job, a promotion), so nothing is lost
-- while it is down; NOTIFY kiln_publish only wakes it. See docs/repositories.md.
-- (Its functions, views, triggers and policies are current state in schema/current/:
-- docs/schema.md, "Migrations".)

------------------------------------------------------------------------------
-- Bucket settings
------------------------------------------------------------------------------

ALTER TABLE kiln.bucket
    ADD COLUMN publish_policy text NOT NULL DEFAULT 'whole_job'
        CONSTRAINT bucket_publish_policy_valid CHECK (publish_policy IN ('whole_job', 'per_task', 'none')),
    ADD COLUMN sign_packages boolean NOT NULL DEFAULT false,
    ADD COLUMN keep_snapshots integer NOT NULL DEFAULT 30
        CONSTRAINT bucket_keep_snapshots_positive CHECK (keep_snapshots BETWEEN 1 AND 100000);
COMMENT ON COLUMN kiln.bucket.publish_policy IS 'What enters the bucket''s repositories when a job ends: whole_job (every package of the job, only if every task succeeded; the default), per_task (the packages of each succeeded task) or none (nothing is published).';
COMMENT ON COLUMN kiln.bucket.sign_packages IS 'When true the publisher also signs the packages themselves (rpmsign for RPMs); repository metadata is always signed.';
COMMENT ON COLUMN kiln.bucket.keep_snapshots IS 'How many of the bucket''s latest snapshots retention keeps (the current one is always kept).';

CREATE FUNCTION kiln.safe_repo_path(p text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, kiln, pg_temp
RETURN p ~ '^[A-Za-z0-9_+~][A-Za-z0-9_.+~=-]*(/[A-Za-z0-9_+~][A-Za-z0-9_.+~=-]*)*$'
   AND octet_length(p) <= 1000
   AND position('..' IN p) = 0;
COMMENT ON FUNCTION kiln.safe_repo_path(text) IS 'True for a relative path of a repository file: slash-separated names of letters, digits and _.+~=-, none starting with a dot or dash, no .., at most 1000 bytes.';

------------------------------------------------------------------------------
-- Keys: public halves only. The secret keys stay on the publisher's host.
------------------------------------------------------------------------------

CREATE TABLE kiln.bucket_key (
    bucket      text NOT NULL REFERENCES kiln.bucket (name) ON DELETE CASCADE,
    fingerprint text NOT NULL CONSTRAINT bucket_key_fingerprint_valid CHECK (fingerprint ~ '^[0-9A-F]{40,64}$'),
    public_key  text NOT NULL CONSTRAINT bucket_key_armored CHECK (public_key LIKE '-----BEGIN PGP PUBLIC KEY BLOCK-----%'),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    PRIMARY KEY (bucket, fingerprint),
    CONSTRAINT bucket_key_retired_inactive CHECK ((retired_at IS NULL) = active)
);
CREATE UNIQUE INDEX bucket_key_one_active ON kiln.bucket_key (bucket) WHERE active;
COMMENT ON TABLE kiln.bucket_key IS 'The OpenPGP keys a bucket''s repositories are signed with: fingerprint and public key only; the secret key is held by the publisher''s host (its GNUPGHOME) and never stored here.';
COMMENT ON COLUMN kiln.bucket_key.bucket IS 'The bucket.';
COMMENT ON COLUMN kiln.bucket_key.fingerprint IS 'Full fingerprint of the key, upper-case hex.';
COMMENT ON COLUMN kiln.bucket_key.public_key IS 'The ASCII-armored public key, served at /repos/BUCKET/key.asc.';
COMMENT ON COLUMN kiln.bucket_key.active IS 'True for the key that signs new publications (one per bucket). Retired keys are still served next to it during a rotation.';
COMMENT ON COLUMN kiln.bucket_key.created_at IS 'When the publisher made the key.';
COMMENT ON COLUMN kiln.bucket_key.retired_at IS 'When a rotation retired the key; NULL while active.';

------------------------------------------------------------------------------
-- Binary packages, parsed once
------------------------------------------------------------------------------

CREATE TABLE kiln.binary_package (
    sha256    bytea PRIMARY KEY REFERENCES kiln.blob (sha256),
    format    text NOT NULL CONSTRAINT binary_package_format_valid CHECK (format IN ('deb', 'rpm')),
    name      text NOT NULL CONSTRAINT binary_package_name_valid CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9+._-]{0,199}$'),
    version   text NOT NULL CONSTRAINT binary_package_version_valid CHECK (version ~ '^[A-Za-z0-9.+~:_-]{1,200}$'),
    arch      text NOT NULL CONSTRAINT binary_package_arch_valid CHECK (arch ~ '^[a-z0-9_]{1,32}$'),
    source    text NOT NULL CONSTRAINT binary_package_source_valid CHECK (source ~ '^[A-Za-z0-9][A-Za-z0-9+._-]{0,199}$'),
    stanza    text NOT NULL DEFAULT '',
    parsed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kiln.binary_package IS 'A built binary package (.deb or .rpm) as the publisher read it, once, when it first published it: what repository indexes are made of.';
COMMENT ON COLUMN kiln.binary_package.sha256 IS 'The package file''s blob.';
COMMENT ON COLUMN kiln.binary_package.format IS 'deb or rpm.';
COMMENT ON COLUMN kiln.binary_package.name IS 'Binary package name (Package:, %{NAME}).';
COMMENT ON COLUMN kiln.binary_package.version IS 'Full version: [epoch:]upstream[-revision] for deb, [epoch:]version-release for rpm. A newer version replaces an older one of the same name and arch in a repository.';
COMMENT ON COLUMN kiln.binary_package.arch IS 'Architecture (amd64, all, x86_64, noarch, ...).';
COMMENT ON COLUMN kiln.binary_package.source IS 'Source package name.';
COMMENT ON COLUMN kiln.binary_package.stanza IS 'For deb: the control stanza (without Filename, Size and hashes, which the publisher appends), so an APT index is a concatenation of stored stanzas. Empty for rpm (createrepo_c reads the file).';
COMMENT ON COLUMN kiln.binary_package.parsed_at IS 'When the publisher read it.';

------------------------------------------------------------------------------
-- Snapshots
------------------------------------------------------------------------------

CREATE TABLE kiln.snapshot (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bucket     text NOT NULL REFERENCES kiln.bucket (name) ON DELETE CASCADE,
    seq        integer NOT NULL CONSTRAINT snapshot_seq_positive CHECK (seq >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by name NOT NULL DEFAULT session_user,
    note       text NOT NULL DEFAULT '',
    CONSTRAINT snapshot_seq_unique UNIQUE (bucket, seq)
);
COMMENT ON TABLE kiln.snapshot IS 'One immutable publication of a bucket: every repository (one per platform) as a manifest of files in kiln.repository_file. Served at /repos/BUCKET/snapshots/SEQ/.';
COMMENT ON COLUMN kiln.snapshot.id IS 'Snapshot number (global).';
COMMENT ON COLUMN kiln.snapshot.bucket IS 'The bucket.';
COMMENT ON COLUMN kiln.snapshot.seq IS 'Number of the snapshot within its bucket, from 1: the N of /repos/BUCKET/snapshots/N/.';
COMMENT ON COLUMN kiln.snapshot.created_at IS 'When it was published.';
COMMENT ON COLUMN kiln.snapshot.created_by IS 'Role that published it (session_user: the publisher).';
COMMENT ON COLUMN kiln.snapshot.note IS 'What the publication added (jobs, promotions), for people.';

CREATE TABLE kiln.repository_file (
    bucket      text NOT NULL REFERENCES kiln.bucket (name) ON DELETE CASCADE,
    platform    text NOT NULL REFERENCES kiln.platform (name),
    path        text NOT NULL CONSTRAINT repository_file_path_safe CHECK (kiln.safe_repo_path(path)),
    from_seq    integer NOT NULL,
    until_seq   integer,
    blob_sha256 bytea NOT NULL REFERENCES kiln.blob (sha256),
    size        bigint NOT NULL CONSTRAINT repository_file_size_nonnegative CHECK (size >= 0),
    package     bytea REFERENCES kiln.binary_package (sha256),
    job_id      bigint,
    PRIMARY KEY (bucket, platform, path, from_seq),
    CONSTRAINT repository_file_lifetime CHECK (from_seq >= 1 AND (until_seq IS NULL OR until_seq > from_seq)),
    CONSTRAINT repository_file_package_is_blob CHECK (package IS NULL OR package = blob_sha256)
);
COMMENT ON TABLE kiln.repository_file IS 'The manifests of a bucket''s snapshots, stored as lifetimes: a file of a repository (platform) is in every snapshot from from_seq up to, not including, until_seq. Adding a package to a big repository adds a few rows instead of copying the manifest.';
COMMENT ON COLUMN kiln.repository_file.bucket IS 'The bucket.';
COMMENT ON COLUMN kiln.repository_file.platform IS 'The repository (one per platform).';
COMMENT ON COLUMN kiln.repository_file.path IS 'Path inside the repository, such as dists/devel/InRelease or pool/main/h/hello/hello_1.0_amd64.deb. Made by the publisher from validated package fields, never from a build''s file name.';
COMMENT ON COLUMN kiln.repository_file.from_seq IS 'The first snapshot (kiln.snapshot.seq) that has the file. Not a foreign key: retention removes old snapshot rows while files they introduced live on.';
COMMENT ON COLUMN kiln.repository_file.until_seq IS 'The first snapshot that no longer has it (replaced or removed); NULL while the newest snapshot has it.';
COMMENT ON COLUMN kiln.repository_file.blob_sha256 IS 'The content (also the ETag it is served with).';
COMMENT ON COLUMN kiln.repository_file.size IS 'Size in bytes.';
COMMENT ON COLUMN kiln.repository_file.package IS 'For a package file: the binary package (the snapshot''s package list); NULL for metadata.';
COMMENT ON COLUMN kiln.repository_file.job_id IS 'For a package file: the job that built it (kept when promoted). Not a foreign key: jobs may be deleted while their packages stay published.';

CREATE UNIQUE INDEX repository_file_newest_idx ON kiln.repository_file (bucket, platform, path) WHERE until_seq IS NULL;
CREATE INDEX repository_file_blob_idx ON kiln.repository_file (blob_sha256);
CREATE INDEX repository_file_job_idx ON kiln.repository_file (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE kiln.bucket_publication (
    bucket           text PRIMARY KEY REFERENCES kiln.bucket (name) ON DELETE CASCADE,
    current_snapshot bigint REFERENCES kiln.snapshot (id),
    published_at     timestamptz
);
COMMENT ON TABLE kiln.bucket_publication IS 'The served snapshot of each bucket. The publisher locks this row for the length of a publication, so publications of one bucket never interleave, and moves current_snapshot in the same transaction that writes the snapshot.';
COMMENT ON COLUMN kiln.bucket_publication.bucket IS 'The bucket.';
COMMENT ON COLUMN kiln.bucket_publication.current_snapshot IS 'The snapshot served at /repos/BUCKET/: always the bucket''s newest (a rollback publishes a new snapshot with an older one''s packages); NULL before the first publication.';
COMMENT ON COLUMN kiln.bucket_publication.published_at IS 'When current_snapshot last moved.';

------------------------------------------------------------------------------
-- Work for the publisher
------------------------------------------------------------------------------

CREATE TABLE kiln.publication_request (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bucket       text NOT NULL REFERENCES kiln.bucket (name) ON DELETE CASCADE,
    kind         text NOT NULL CONSTRAINT publication_request_kind_valid CHECK (kind IN ('job', 'promote', 'rollback', 'rebuild', 'remove')),
    job_id       bigint,
    snapshot_seq integer,
    package_name text CONSTRAINT publication_request_package_name_valid CHECK (package_name ~ '^[A-Za-z0-9][A-Za-z0-9+._-]{0,199}$'),
    platform     text REFERENCES kiln.platform (name),
    requested_by name NOT NULL DEFAULT session_user,
    requested_at timestamptz NOT NULL DEFAULT now(),
    done_at      timestamptz,
    snapshot_id  bigint REFERENCES kiln.snapshot (id) ON DELETE SET NULL,
    outcome      text,
    CONSTRAINT publication_request_job CHECK ((job_id IS NOT NULL) = (kind IN ('job', 'promote'))),
    CONSTRAINT publication_request_seq CHECK ((snapshot_seq IS NOT NULL) = (kind = 'rollback')),
    CONSTRAINT publication_request_remove CHECK ((package_name IS NOT NULL) = (kind = 'remove') AND (platform IS NULL OR kind = 'remove')),
    CONSTRAINT publication_request_done CHECK ((done_at IS NULL) = (outcome IS NULL))
);
COMMENT ON TABLE kiln.publication_request IS 'Work for kiln-publisher: a finished job to publish into its bucket, a promotion of a job into another bucket, a rollback, a rebuild of the metadata (after a key rotation). The publisher takes every pending request of a bucket at once (coalescing) and marks them done in the publication''s transaction.';
COMMENT ON COLUMN kiln.publication_request.id IS 'Request number.';
COMMENT ON COLUMN kiln.publication_request.bucket IS 'The bucket to publish into.';
COMMENT ON COLUMN kiln.publication_request.kind IS 'job (a job of this bucket ended), promote (copy a job''s published packages here), rollback (serve snapshot_seq again), rebuild (regenerate and re-sign the metadata), remove (take a binary package out).';
COMMENT ON COLUMN kiln.publication_request.package_name IS 'For remove: the binary package name to take out.';
COMMENT ON COLUMN kiln.publication_request.platform IS 'For remove: only from this platform''s repository; NULL for every repository of the bucket.';
COMMENT ON COLUMN kiln.publication_request.job_id IS 'For job and promote: the job.';
COMMENT ON COLUMN kiln.publication_request.snapshot_seq IS 'For rollback: the bucket snapshot to serve again.';
COMMENT ON COLUMN kiln.publication_request.requested_by IS 'Role that asked (session_user; the job trigger runs as the role that finished the job).';
COMMENT ON COLUMN kiln.publication_request.requested_at IS 'When it was asked.';
COMMENT ON COLUMN kiln.publication_request.done_at IS 'When the publisher handled it; NULL while pending.';
COMMENT ON COLUMN kiln.publication_request.snapshot_id IS 'The snapshot that the handling published, if any.';
COMMENT ON COLUMN kiln.publication_request.outcome IS 'What came of it: published, nothing to publish (and why), or the error that made the publisher give up on it.';

CREATE INDEX publication_request_pending_idx ON kiln.publication_request (bucket, id) WHERE done_at IS NULL;

------------------------------------------------------------------------------
-- Private buckets: per-person tokens for apt and dnf
------------------------------------------------------------------------------

CREATE TABLE kiln.repo_token (
    token_sha256 bytea PRIMARY KEY CONSTRAINT repo_token_sha256_length CHECK (length(token_sha256) = 32),
    person       name NOT NULL DEFAULT session_user,
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kiln.repo_token IS 'Per-person tokens for reading private repositories with apt (auth.conf) or dnf (.repo password): only the SHA-256 of the token is stored. A token reads what its person may read.';
COMMENT ON COLUMN kiln.repo_token.token_sha256 IS 'SHA-256 of the token.';
COMMENT ON COLUMN kiln.repo_token.person IS 'The person (session_user when it was made).';
COMMENT ON COLUMN kiln.repo_token.created_at IS 'When it was made.';

------------------------------------------------------------------------------
-- Row-level security: repositories of private buckets are as private as their jobs
------------------------------------------------------------------------------

ALTER TABLE kiln.snapshot ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.repository_file ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.bucket_publication ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.repo_token ENABLE ROW LEVEL SECURITY;
