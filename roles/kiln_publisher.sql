-- kiln_publisher: kiln-publisher, which turns finished jobs into repository
-- snapshots of their buckets (docs/repositories.md). It reads jobs, tasks,
-- artifacts and blobs, stores metadata blobs, writes snapshots and moves a
-- bucket's served snapshot. It builds nothing, submits nothing and changes
-- no job or task. Signing keys are not in the database at all: the secret
-- halves stay in the publisher host's GNUPGHOME; only public keys are stored.
-- Start from nothing, so that applying this file again also withdraws what
-- it no longer grants (kiln admin roles apply).
REVOKE ALL ON ALL TABLES IN SCHEMA kiln, river FROM kiln_publisher;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA kiln, river FROM kiln_publisher;
GRANT USAGE ON SCHEMA kiln TO kiln_publisher;

-- What it publishes from.
GRANT SELECT ON kiln.bucket, kiln.bucket_grant, kiln.platform, kiln.job, kiln.task, kiln.artifact TO kiln_publisher;
GRANT SELECT ON kiln.blob, kiln.blob_chunk TO kiln_publisher;
-- Metadata files (Packages, Release, repodata) it stores as blobs.
-- It hashes what it writes, so it stores them verified.
GRANT INSERT (sha256, size, chunk_size, verified_at) ON kiln.blob TO kiln_publisher;
GRANT INSERT (sha256, seq, data) ON kiln.blob_chunk TO kiln_publisher;
-- Repositories: parsed packages, snapshots, the served pointer, its work.
GRANT SELECT, INSERT, DELETE ON kiln.binary_package TO kiln_publisher;
GRANT SELECT, INSERT, DELETE ON kiln.snapshot TO kiln_publisher;
GRANT SELECT, INSERT, UPDATE (until_seq), DELETE ON kiln.repository_file TO kiln_publisher;
GRANT SELECT, INSERT, UPDATE (current_snapshot, published_at) ON kiln.bucket_publication TO kiln_publisher;
GRANT SELECT, UPDATE (done_at, snapshot_id, outcome) ON kiln.publication_request TO kiln_publisher;
GRANT INSERT (bucket, kind) ON kiln.publication_request TO kiln_publisher;
GRANT USAGE ON SEQUENCE kiln.publication_request_id_seq TO kiln_publisher;
-- Keys: it makes them, so it records their public halves.
GRANT SELECT, INSERT, UPDATE (active, retired_at) ON kiln.bucket_key TO kiln_publisher;
