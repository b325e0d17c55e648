-- 0012_blob_integrity.sql: nobody can spoil or peek at someone else's bytes.
--
-- Three rules, each closing a hole that content addressing left open:
--
--   * A blob's chunks are written only in the transaction that stored the
--     blob row (a trigger), so nobody adds chunks to someone else's blob, or
--     to a blob that was already verified.
--   * An upload never lands on top of someone else's unverified blob: blob.Put
--     reuses a stored blob only when it is verified or the uploader's own, and
--     otherwise stores the bytes under a fresh random key, recording the
--     SHA-256 they claim in content_sha256 (a staged blob). The splitter
--     verifies a staged blob against that digest like any other. So a blob
--     stored ahead of time under a SHA-256 with garbage in it only ever spoils
--     the jobs of whoever stored it.
--   * Bytes are read only by who may read a job or artifact that uses them
--     (row-level security on kiln.blob_chunk follows kiln.blob's), and a
--     person references only blobs they may read or stored in the same
--     transaction, so knowing a private file's SHA-256 gives nothing.
--
-- Row-level security on kiln.blob_chunk means PostgreSQL refuses COPY into it
-- for the roles it applies to; uploads insert the chunks in pipelined batches.
-- See docs/schema.md ("Blobs").

ALTER TABLE kiln.blob
    ADD COLUMN content_sha256 bytea CONSTRAINT blob_content_sha256_length CHECK (length(content_sha256) = 32),
    ADD COLUMN created_xact xid8;
COMMENT ON COLUMN kiln.blob.sha256 IS 'The blob''s key: the SHA-256 of its content (32 bytes; encode(sha256, ''hex'') for the usual form), except for a staged blob (content_sha256 set), whose key is random.';
COMMENT ON COLUMN kiln.blob.content_sha256 IS 'For a staged blob only: the SHA-256 its uploader says the content has (checked like any blob''s when verified). An upload is staged when a blob with that SHA-256 exists that the uploader may not reuse (not verified and not their own, or not readable by them). NULL otherwise.';
COMMENT ON COLUMN kiln.blob.created_xact IS 'Transaction that stored the blob (set by a trigger); chunks may be added only in it. NULL for blobs stored before migration 0012.';
COMMENT ON COLUMN kiln.blob.verified_at IS 'When a trusted process re-read the chunks and found they hash to the blob''s SHA-256 (content_sha256 for a staged blob): the splitter, or the builder that stored them. NULL until then. Unverified blobs are reused only by whoever stored them.';

CREATE INDEX blob_content_sha256_idx ON kiln.blob (content_sha256) WHERE content_sha256 IS NOT NULL;

CREATE FUNCTION kiln.blob_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.created_by := session_user;
    NEW.created_xact := pg_current_xact_id();
    RETURN NEW;
END $$;
COMMENT ON FUNCTION kiln.blob_stamp() IS 'Sets kiln.blob.created_by to session_user and created_xact to the current transaction on insert, whatever the client sent.';
CREATE TRIGGER blob_stamp BEFORE INSERT ON kiln.blob
    FOR EACH ROW EXECUTE FUNCTION kiln.blob_stamp();

CREATE FUNCTION kiln.blob_chunk_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM kiln.blob b WHERE b.sha256 = NEW.sha256 AND b.created_xact = pg_current_xact_id()) THEN
        RAISE EXCEPTION 'chunks of blob % may only be stored by the transaction that stored the blob', encode(NEW.sha256, 'hex')
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION kiln.blob_chunk_guard() IS 'Refuses a chunk unless its blob row was stored in the same transaction: stored bytes never change afterwards, whoever asks.';
CREATE TRIGGER blob_chunk_guard BEFORE INSERT ON kiln.blob_chunk
    FOR EACH ROW EXECUTE FUNCTION kiln.blob_chunk_guard();

-- Whether the session may read a blob: the row-level security of kiln.blob
-- decides (its creator, or a readable package, package file or artifact uses
-- it). A function, so that a policy on kiln.package may ask without the
-- policies of kiln.blob and kiln.package referring to each other.
CREATE FUNCTION kiln.blob_readable(p_sha256 bytea) RETURNS boolean
LANGUAGE sql STABLE
RETURN EXISTS (SELECT 1 FROM kiln.blob b WHERE b.sha256 = p_sha256);
COMMENT ON FUNCTION kiln.blob_readable(bytea) IS 'True when the session may read the blob under row-level security (runs with the caller''s rights).';

-- Whether the blob was stored in the current transaction (by this session,
-- which is the only one that can see it uncommitted).
CREATE FUNCTION kiln.blob_stored_here(p_sha256 bytea) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, kiln
RETURN EXISTS (SELECT 1 FROM kiln.blob b WHERE b.sha256 = p_sha256 AND b.created_xact = pg_current_xact_id());
COMMENT ON FUNCTION kiln.blob_stored_here(bytea) IS 'True when the blob was stored in the current transaction.';

ALTER POLICY package_submit ON kiln.package
    WITH CHECK (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id AND j.submitter = session_user AND j.status = 'submitted')
                AND (kiln.blob_readable(blob_sha256) OR kiln.blob_stored_here(blob_sha256)));
COMMENT ON POLICY package_submit ON kiln.package IS 'A submitter adds packages only to their own job while it is submitted, pointing only at blobs they may read or stored in the same transaction.';
ALTER POLICY package_file_submit ON kiln.package_file
    WITH CHECK (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id AND j.submitter = session_user AND j.status = 'submitted')
                AND (kiln.blob_readable(blob_sha256) OR kiln.blob_stored_here(blob_sha256)));
COMMENT ON POLICY package_file_submit ON kiln.package_file IS 'A submitter adds files only to their own job while it is submitted, pointing only at blobs they may read or stored in the same transaction.';

-- Only the splitter marks stored blobs verified; a builder vouches only for
-- the bytes it stores itself, when it stores them.
ALTER POLICY blob_verify ON kiln.blob TO kiln_splitter;
COMMENT ON POLICY blob_verify ON kiln.blob IS 'The splitter marks blobs verified after re-hashing them.';

ALTER TABLE kiln.blob_chunk ENABLE ROW LEVEL SECURITY;
CREATE POLICY blob_chunk_read ON kiln.blob_chunk FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.blob b WHERE b.sha256 = blob_chunk.sha256));
CREATE POLICY blob_chunk_read_farm ON kiln.blob_chunk FOR SELECT TO kiln_splitter, kiln_builder, kiln_janitor, kiln_admin
    USING (true);
CREATE POLICY blob_chunk_store ON kiln.blob_chunk FOR INSERT TO kiln_submitter, kiln_builder
    WITH CHECK (true);
CREATE POLICY blob_chunk_prune ON kiln.blob_chunk FOR DELETE TO kiln_janitor
    USING (true);
COMMENT ON POLICY blob_chunk_read ON kiln.blob_chunk IS 'A blob''s bytes are readable with its kiln.blob row: by its creator and with the packages and artifacts that use it.';
COMMENT ON POLICY blob_chunk_read_farm ON kiln.blob_chunk IS 'The farm''s daemons and admins read every blob''s bytes.';
COMMENT ON POLICY blob_chunk_store ON kiln.blob_chunk IS 'Submitters and builders store chunks; the blob_chunk_guard trigger lets them only into a blob stored in the same transaction.';
COMMENT ON POLICY blob_chunk_prune ON kiln.blob_chunk IS 'The janitor removes the bytes of unreferenced blobs.';

-- Submitters call it through their policies (roles/kiln_submitter.sql).
REVOKE EXECUTE ON FUNCTION kiln.blob_stored_here(bytea) FROM PUBLIC;
