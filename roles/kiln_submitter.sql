-- kiln_submitter: people submitting, cancelling and resubmitting jobs.
-- Member of kiln_reader. The submitter column is set from session_user by a
-- trigger, whatever the client sends.
-- Start from nothing, so that applying this file again also withdraws what
-- it no longer grants (kiln admin roles apply).
REVOKE ALL ON ALL TABLES IN SCHEMA kiln, river FROM kiln_submitter;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA kiln, river FROM kiln_submitter;
GRANT USAGE ON SCHEMA kiln, river TO kiln_submitter;

-- Upload: blobs and their chunks (insert only; a submitter never changes or
-- removes stored bytes, and adds chunks only to a blob stored in the same
-- transaction). content_sha256 is for staged uploads (docs/schema.md, Blobs);
-- the policies on kiln.package and kiln.package_file ask
-- kiln.blob_stored_here whether a blob was stored in the same transaction.
GRANT INSERT (sha256, size, chunk_size, content_sha256) ON kiln.blob TO kiln_submitter;
GRANT INSERT (sha256, seq, data) ON kiln.blob_chunk TO kiln_submitter;
GRANT EXECUTE ON FUNCTION kiln.blob_stored_here(bytea) TO kiln_submitter;

-- The job and its packages, inserted in the submit transaction.
GRANT INSERT (bucket, platforms, priority, policy, note, options, submission_key, resubmit_of) ON kiln.job TO kiln_submitter;
GRANT INSERT (job_id, seq, file_name, format, blob_sha256, size) ON kiln.package TO kiln_submitter;
GRANT INSERT (job_id, seq, file_name, blob_sha256, size) ON kiln.package_file TO kiln_submitter;

-- Cancelling: own jobs only (row-level security), through kiln.cancel_job/kiln.cancel_task.
GRANT EXECUTE ON FUNCTION kiln.cancel_job(bigint), kiln.cancel_task(bigint) TO kiln_submitter;
-- Resubmitting: jobs one may read, through kiln.resubmit (kiln.resubmit_for).
GRANT EXECUTE ON FUNCTION kiln.resubmit(bigint, text[], text) TO kiln_submitter;

-- River: an insert-only client (the validate River job in the submit
-- transaction). River's insert is INSERT ... ON CONFLICT DO UPDATE SET kind =
-- kind ... RETURNING, which needs SELECT, INSERT and UPDATE of kind; row-level
-- security (schema/0013_guards.sql) admits only the validate River job of the
-- person's own submitted job and lets no person update or delete a River job.
GRANT SELECT, INSERT ON river.river_job TO kiln_submitter;
GRANT UPDATE (kind) ON river.river_job TO kiln_submitter;
GRANT USAGE ON SEQUENCE river.river_job_id_seq TO kiln_submitter;

-- Repositories (docs/repositories.md): promotion and rollback need a grant on
-- the target bucket (checked inside); tokens for apt and dnf are one's own.
GRANT EXECUTE ON FUNCTION kiln.promote(bigint, text), kiln.rollback_bucket(text, integer),
    kiln.remove_package(text, text, text), kiln.new_repo_token() TO kiln_submitter;
