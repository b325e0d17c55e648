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
-- (Its functions, views, triggers and policies are current state in schema/current/:
-- docs/schema.md, "Migrations".)

ALTER TABLE kiln.blob
    ADD COLUMN content_sha256 bytea CONSTRAINT blob_content_sha256_length CHECK (length(content_sha256) = 32),
    ADD COLUMN created_xact xid8;
COMMENT ON COLUMN kiln.blob.sha256 IS 'The blob''s key: the SHA-256 of its content (32 bytes; encode(sha256, ''hex'') for the usual form), except for a staged blob (content_sha256 set), whose key is random.';
COMMENT ON COLUMN kiln.blob.content_sha256 IS 'For a staged blob only: the SHA-256 its uploader says the content has (checked like any blob''s when verified). An upload is staged when a blob with that SHA-256 exists that the uploader may not reuse (not verified and not their own, or not readable by them). NULL otherwise.';
COMMENT ON COLUMN kiln.blob.created_xact IS 'Transaction that stored the blob (set by a trigger); chunks may be added only in it. NULL for blobs stored before migration 0012.';
COMMENT ON COLUMN kiln.blob.verified_at IS 'When a trusted process re-read the chunks and found they hash to the blob''s SHA-256 (content_sha256 for a staged blob): the splitter, or the builder that stored them. NULL until then. Unverified blobs are reused only by whoever stored them.';

CREATE INDEX blob_content_sha256_idx ON kiln.blob (content_sha256) WHERE content_sha256 IS NOT NULL;

ALTER TABLE kiln.blob_chunk ENABLE ROW LEVEL SECURITY;
