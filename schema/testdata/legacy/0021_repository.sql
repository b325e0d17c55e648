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

CREATE FUNCTION kiln.snapshot_files(p_bucket text, p_seq integer) RETURNS SETOF kiln.repository_file
LANGUAGE sql STABLE SET search_path = pg_catalog, kiln, pg_temp
AS $$ SELECT f.* FROM kiln.repository_file f
      WHERE f.bucket = p_bucket AND f.from_seq <= p_seq AND (f.until_seq IS NULL OR f.until_seq > p_seq) $$;
COMMENT ON FUNCTION kiln.snapshot_files(text, integer) IS 'The files of snapshot p_seq of a bucket (under the caller''s rights: row-level security applies).';

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

-- A job that ends asks for its publication (in the transaction that ended it,
-- so a request is never lost).
CREATE FUNCTION kiln.job_request_publication() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    IF NEW.status IN ('succeeded', 'failed', 'partially_failed', 'cancelled')
       AND OLD.status IS DISTINCT FROM NEW.status
       AND EXISTS (SELECT 1 FROM kiln.bucket b WHERE b.name = NEW.bucket AND b.publish_policy <> 'none') THEN
        INSERT INTO kiln.publication_request (bucket, kind, job_id) VALUES (NEW.bucket, 'job', NEW.id);
        PERFORM pg_notify('kiln_publish', json_build_object('bucket', NEW.bucket, 'job', NEW.id)::text);
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION kiln.job_request_publication() IS 'After a job reaches a final status (not invalid): queues a publication request for its bucket (unless the bucket publishes nothing) and sends NOTIFY kiln_publish. SECURITY DEFINER because whoever finishes the job (a builder, the janitor, a person cancelling) holds no grant on kiln.publication_request.';
REVOKE EXECUTE ON FUNCTION kiln.job_request_publication() FROM PUBLIC;

CREATE TRIGGER job_request_publication AFTER UPDATE OF status ON kiln.job
    FOR EACH ROW EXECUTE FUNCTION kiln.job_request_publication();

------------------------------------------------------------------------------
-- Promotion and rollback, for people
------------------------------------------------------------------------------

CREATE FUNCTION kiln.may_publish_to(p_person name, p_bucket text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp
RETURN pg_has_role(p_person, 'kiln_admin', 'MEMBER')
    OR EXISTS (SELECT 1 FROM kiln.bucket_grant g JOIN pg_catalog.pg_roles r ON r.rolname = g.grantee
               WHERE g.bucket = p_bucket AND pg_catalog.pg_has_role(p_person, r.oid, 'MEMBER'));
COMMENT ON FUNCTION kiln.may_publish_to(name, text) IS 'True when p_person may promote into or roll back the bucket: a member of one of its grantees (the same grant as submitting, without the open-bucket exception) or of kiln_admin.';
REVOKE EXECUTE ON FUNCTION kiln.may_publish_to(name, text) FROM PUBLIC;

CREATE FUNCTION kiln.promote_for(p_person name, p_job_id bigint, p_bucket text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    v_from text;
    v_id   bigint;
BEGIN
    SELECT j.bucket INTO v_from FROM kiln.job j WHERE j.id = p_job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', p_job_id USING ERRCODE = 'no_data_found';
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
END $$;
COMMENT ON FUNCTION kiln.promote_for(name, bigint, text) IS 'Queues the promotion of a job''s packages, as currently published in its own bucket, into p_bucket for p_person, who needs a grant on p_bucket. Returns the request id. Called by kiln.promote and kiln.web_promote, which establish who p_person is.';
REVOKE EXECUTE ON FUNCTION kiln.promote_for(name, bigint, text) FROM PUBLIC;

CREATE FUNCTION kiln.promote(p_job_id bigint, p_bucket text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp
RETURN kiln.promote_for(session_user, p_job_id, p_bucket);
COMMENT ON FUNCTION kiln.promote(bigint, text) IS 'kiln promote: queues the promotion of a job''s published packages into another bucket, with no rebuild; session_user needs a grant on the target bucket. Returns the publication request id.';
REVOKE EXECUTE ON FUNCTION kiln.promote(bigint, text) FROM PUBLIC;

CREATE FUNCTION kiln.web_promote(p_person name, p_job_id bigint, p_bucket text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_submitter');
    RETURN kiln.promote_for(p_person, p_job_id, p_bucket);
END $$;
COMMENT ON FUNCTION kiln.web_promote(name, bigint, text) IS 'The web interface promotes a job for the logged-in person p_person (checked by kiln.web_check_person).';
REVOKE EXECUTE ON FUNCTION kiln.web_promote(name, bigint, text) FROM PUBLIC;

CREATE FUNCTION kiln.rollback_bucket(p_bucket text, p_seq integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    v_id bigint;
BEGIN
    IF NOT kiln.may_publish_to(session_user, p_bucket) THEN
        RAISE EXCEPTION '% may not roll back bucket % (it needs a grant on the bucket)', session_user, p_bucket
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM kiln.snapshot s WHERE s.bucket = p_bucket AND s.seq = p_seq) THEN
        RAISE EXCEPTION 'bucket % has no snapshot %', p_bucket, p_seq USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO kiln.publication_request (bucket, kind, snapshot_seq) VALUES (p_bucket, 'rollback', p_seq)
        RETURNING id INTO v_id;
    PERFORM pg_notify('kiln_publish', json_build_object('bucket', p_bucket)::text);
    RETURN v_id;
END $$;
COMMENT ON FUNCTION kiln.rollback_bucket(text, integer) IS 'kiln repo rollback: queues a publication that serves the bucket''s snapshot p_seq again (as a new snapshot with the same files, re-signed). session_user needs a grant on the bucket. Returns the request id.';
REVOKE EXECUTE ON FUNCTION kiln.rollback_bucket(text, integer) FROM PUBLIC;

CREATE FUNCTION kiln.remove_package(p_bucket text, p_name text, p_platform text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    v_id bigint;
BEGIN
    IF NOT kiln.may_publish_to(session_user, p_bucket) THEN
        RAISE EXCEPTION '% may not remove packages of bucket % (it needs a grant on the bucket)', session_user, p_bucket
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO kiln.publication_request (bucket, kind, package_name, platform) VALUES (p_bucket, 'remove', p_name, p_platform)
        RETURNING id INTO v_id;
    PERFORM pg_notify('kiln_publish', json_build_object('bucket', p_bucket)::text);
    RETURN v_id;
END $$;
COMMENT ON FUNCTION kiln.remove_package(text, text, text) IS 'kiln repo rm: queues the removal of binary package p_name from the bucket''s repositories (only p_platform''s when not NULL). session_user needs a grant on the bucket. Returns the request id.';
REVOKE EXECUTE ON FUNCTION kiln.remove_package(text, text, text) FROM PUBLIC;

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

CREATE FUNCTION kiln.new_repo_token() RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    -- Two version 4 UUIDs: 244 bits from the server's strong random source.
    v_token text := replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
BEGIN
    INSERT INTO kiln.repo_token (token_sha256, person) VALUES (sha256(convert_to(v_token, 'UTF8')), session_user);
    RETURN v_token;
END $$;
COMMENT ON FUNCTION kiln.new_repo_token() IS 'kiln repo token: makes a new repository token for session_user and returns it (only its SHA-256 is kept).';
REVOKE EXECUTE ON FUNCTION kiln.new_repo_token() FROM PUBLIC;

CREATE FUNCTION kiln.web_repo_file(p_person name, p_token text, p_bucket text, p_seq integer, p_platform text, p_path text)
RETURNS TABLE (blob_sha256 bytea, size bigint, chunk_size integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    v_person name := p_person;
BEGIN
    IF NOT pg_has_role(session_user, 'kiln_web', 'MEMBER') THEN
        RAISE EXCEPTION 'only the web interface (a member of kiln_web) may read repositories for a person'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_token IS NOT NULL THEN
        SELECT t.person INTO v_person FROM kiln.repo_token t WHERE t.token_sha256 = sha256(convert_to(p_token, 'UTF8'));
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;
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
    RETURN QUERY
        SELECT f.blob_sha256, f.size, bl.chunk_size
        FROM kiln.repository_file f
        JOIN kiln.blob bl ON bl.sha256 = f.blob_sha256
        WHERE f.bucket = p_bucket AND f.platform = p_platform AND f.path = p_path
          AND CASE WHEN p_seq IS NULL THEN f.until_seq IS NULL
                   ELSE f.from_seq <= p_seq AND (f.until_seq IS NULL OR f.until_seq > p_seq)
                        AND EXISTS (SELECT 1 FROM kiln.snapshot s WHERE s.bucket = p_bucket AND s.seq = p_seq) END;
END $$;
COMMENT ON FUNCTION kiln.web_repo_file(name, text, text, integer, text, text) IS 'For kiln-web serving a private bucket''s repository: the blob of one file of the current snapshot (p_seq NULL) or of snapshot p_seq, if the person (p_person, logged in; or the owner of p_token) may read the bucket. No rows otherwise. Public buckets are read under row-level security without it.';
REVOKE EXECUTE ON FUNCTION kiln.web_repo_file(name, text, text, integer, text, text) FROM PUBLIC;

CREATE FUNCTION kiln.web_repo_chunk(p_person name, p_token text, p_bucket text, p_seq integer, p_platform text, p_path text, p_chunk integer)
RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp
RETURN (SELECT c.data FROM kiln.web_repo_file(p_person, p_token, p_bucket, p_seq, p_platform, p_path) f
        JOIN kiln.blob_chunk c ON c.sha256 = f.blob_sha256 AND c.seq = p_chunk);
COMMENT ON FUNCTION kiln.web_repo_chunk(name, text, text, integer, text, text, integer) IS 'For kiln-web serving a private bucket''s repository: chunk p_chunk of the file kiln.web_repo_file finds for the same arguments; NULL when the person may not read it.';
REVOKE EXECUTE ON FUNCTION kiln.web_repo_chunk(name, text, text, integer, text, text, integer) FROM PUBLIC;

------------------------------------------------------------------------------
-- Row-level security: repositories of private buckets are as private as their jobs
------------------------------------------------------------------------------

ALTER TABLE kiln.snapshot ENABLE ROW LEVEL SECURITY;
CREATE POLICY snapshot_read ON kiln.snapshot FOR SELECT TO kiln_reader USING (kiln.bucket_readable(bucket));
CREATE POLICY snapshot_read_farm ON kiln.snapshot FOR SELECT TO kiln_janitor, kiln_admin USING (true);
CREATE POLICY snapshot_publish ON kiln.snapshot TO kiln_publisher USING (true) WITH CHECK (created_by = session_user);
COMMENT ON POLICY snapshot_read ON kiln.snapshot IS 'People read the snapshots of buckets whose jobs they may read.';
COMMENT ON POLICY snapshot_read_farm ON kiln.snapshot IS 'The janitor and admins read every snapshot.';
COMMENT ON POLICY snapshot_publish ON kiln.snapshot IS 'The publisher writes snapshots in its own name.';

ALTER TABLE kiln.repository_file ENABLE ROW LEVEL SECURITY;
CREATE POLICY repository_file_read ON kiln.repository_file FOR SELECT TO kiln_reader USING (kiln.bucket_readable(bucket));
CREATE POLICY repository_file_read_farm ON kiln.repository_file FOR SELECT TO kiln_janitor, kiln_admin USING (true);
CREATE POLICY repository_file_publish ON kiln.repository_file TO kiln_publisher USING (true);
COMMENT ON POLICY repository_file_read ON kiln.repository_file IS 'People read the files of buckets whose jobs they may read.';
COMMENT ON POLICY repository_file_read_farm ON kiln.repository_file IS 'The janitor and admins read every repository file.';
COMMENT ON POLICY repository_file_publish ON kiln.repository_file IS 'The publisher writes the manifests.';

ALTER TABLE kiln.bucket_publication ENABLE ROW LEVEL SECURITY;
CREATE POLICY bucket_publication_read ON kiln.bucket_publication FOR SELECT TO kiln_reader USING (kiln.bucket_readable(bucket));
CREATE POLICY bucket_publication_read_farm ON kiln.bucket_publication FOR SELECT TO kiln_janitor, kiln_admin USING (true);
CREATE POLICY bucket_publication_publish ON kiln.bucket_publication TO kiln_publisher USING (true);
COMMENT ON POLICY bucket_publication_read ON kiln.bucket_publication IS 'People see which snapshot is served for buckets they may read.';
COMMENT ON POLICY bucket_publication_read_farm ON kiln.bucket_publication IS 'The janitor and admins see every bucket''s served snapshot.';
COMMENT ON POLICY bucket_publication_publish ON kiln.bucket_publication IS 'The publisher moves the served snapshot.';

ALTER TABLE kiln.repo_token ENABLE ROW LEVEL SECURITY;
CREATE POLICY repo_token_own ON kiln.repo_token FOR SELECT TO kiln_reader USING (person = session_user);
CREATE POLICY repo_token_admin ON kiln.repo_token TO kiln_admin USING (true);
COMMENT ON POLICY repo_token_own ON kiln.repo_token IS 'People see (the hashes of) their own tokens only.';
COMMENT ON POLICY repo_token_admin ON kiln.repo_token IS 'Admins see and revoke every token.';

-- The publisher reads what it publishes from, in every bucket.
CREATE POLICY job_read_publisher ON kiln.job FOR SELECT TO kiln_publisher USING (true);
CREATE POLICY task_read_publisher ON kiln.task FOR SELECT TO kiln_publisher USING (true);
CREATE POLICY artifact_read_publisher ON kiln.artifact FOR SELECT TO kiln_publisher USING (true);
COMMENT ON POLICY job_read_publisher ON kiln.job IS 'The publisher reads every job (to publish it when it ends).';
COMMENT ON POLICY task_read_publisher ON kiln.task IS 'The publisher reads every task (which succeeded).';
COMMENT ON POLICY artifact_read_publisher ON kiln.artifact IS 'The publisher reads every artifact (the binary packages it publishes).';

-- Blobs of published files are readable with the snapshot that uses them.
CREATE POLICY blob_read_published ON kiln.blob FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.repository_file f WHERE f.blob_sha256 = blob.sha256));
CREATE POLICY blob_read_publisher ON kiln.blob FOR SELECT TO kiln_publisher USING (true);
CREATE POLICY blob_store_publisher ON kiln.blob FOR INSERT TO kiln_publisher WITH CHECK (created_by = session_user);
COMMENT ON POLICY blob_read_published ON kiln.blob IS 'A blob is readable with any snapshot file (that the reader may read) that uses it.';
COMMENT ON POLICY blob_read_publisher ON kiln.blob IS 'The publisher reads every blob (the packages it publishes).';
COMMENT ON POLICY blob_store_publisher ON kiln.blob IS 'The publisher stores repository metadata as blobs in its own name.';
CREATE POLICY blob_chunk_read_publisher ON kiln.blob_chunk FOR SELECT TO kiln_publisher USING (true);
CREATE POLICY blob_chunk_store_publisher ON kiln.blob_chunk FOR INSERT TO kiln_publisher WITH CHECK (true);
COMMENT ON POLICY blob_chunk_read_publisher ON kiln.blob_chunk IS 'The publisher reads the bytes of the packages it publishes.';
COMMENT ON POLICY blob_chunk_store_publisher ON kiln.blob_chunk IS 'The publisher stores the chunks of its metadata blobs (blob_chunk_guard: only into a blob stored in the same transaction).';

------------------------------------------------------------------------------
-- Reporting
------------------------------------------------------------------------------

CREATE VIEW kiln.repository_package WITH (security_barrier, security_invoker) AS
SELECT s.bucket, f.platform, bp.name, bp.version, bp.arch, bp.source, f.path, f.size,
       encode(f.blob_sha256, 'hex') AS sha256, f.job_id, s.seq AS snapshot_seq
FROM kiln.bucket_publication p
JOIN kiln.snapshot s ON s.id = p.current_snapshot
JOIN kiln.repository_file f ON f.bucket = s.bucket AND f.until_seq IS NULL
JOIN kiln.binary_package bp ON bp.sha256 = f.package;
COMMENT ON VIEW kiln.repository_package IS 'What each bucket serves now: one row per binary package in the current snapshot of every repository (bucket, platform).';

CREATE VIEW kiln.repository_summary WITH (security_barrier, security_invoker) AS
SELECT s.bucket, f.platform, count(f.package) AS packages, sum(f.size) FILTER (WHERE f.package IS NOT NULL) AS package_bytes,
       s.seq AS snapshot_seq, s.created_at AS published_at
FROM kiln.bucket_publication p
JOIN kiln.snapshot s ON s.id = p.current_snapshot
JOIN kiln.repository_file f ON f.bucket = s.bucket AND f.until_seq IS NULL
GROUP BY s.bucket, f.platform, s.seq, s.created_at;
COMMENT ON VIEW kiln.repository_summary IS 'Per bucket and platform: how many binary packages the current snapshot serves, their total size, and which snapshot it is.';
COMMENT ON COLUMN kiln.repository_package.bucket IS 'The bucket.';
COMMENT ON COLUMN kiln.repository_package.platform IS 'The repository''s platform.';
COMMENT ON COLUMN kiln.repository_package.name IS 'Binary package name.';
COMMENT ON COLUMN kiln.repository_package.version IS 'Its version.';
COMMENT ON COLUMN kiln.repository_package.arch IS 'Its architecture.';
COMMENT ON COLUMN kiln.repository_package.source IS 'Its source package.';
COMMENT ON COLUMN kiln.repository_package.path IS 'Path of the file in the repository (under /repos/BUCKET/PLATFORM/).';
COMMENT ON COLUMN kiln.repository_package.size IS 'File size in bytes.';
COMMENT ON COLUMN kiln.repository_package.sha256 IS 'SHA-256 of the file, hex.';
COMMENT ON COLUMN kiln.repository_package.job_id IS 'The job that built it.';
COMMENT ON COLUMN kiln.repository_package.snapshot_seq IS 'The bucket snapshot being served.';
COMMENT ON COLUMN kiln.repository_summary.bucket IS 'The bucket.';
COMMENT ON COLUMN kiln.repository_summary.platform IS 'The repository''s platform.';
COMMENT ON COLUMN kiln.repository_summary.packages IS 'Binary packages served.';
COMMENT ON COLUMN kiln.repository_summary.package_bytes IS 'Their total size in bytes.';
COMMENT ON COLUMN kiln.repository_summary.snapshot_seq IS 'The bucket snapshot being served.';
COMMENT ON COLUMN kiln.repository_summary.published_at IS 'When that snapshot was published.';
