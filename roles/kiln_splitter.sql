-- kiln_splitter: validates submitted jobs and splits them into tasks.
-- Start from nothing, so that applying this file again also withdraws what
-- it no longer grants (kiln admin roles apply).
REVOKE ALL ON ALL TABLES IN SCHEMA kiln, river FROM kiln_splitter;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA kiln, river FROM kiln_splitter;
GRANT USAGE ON SCHEMA kiln, river TO kiln_splitter;

GRANT SELECT ON kiln.platform, kiln.bucket, kiln.bucket_grant, kiln.blob, kiln.blob_chunk,
                kiln.job, kiln.package, kiln.package_file, kiln.task TO kiln_splitter;
-- Verification of uploaded bytes.
GRANT UPDATE (verified_at) ON kiln.blob TO kiln_splitter;
-- Validation outcome.
GRANT UPDATE (status, reason, validated_at, finished_at) ON kiln.job TO kiln_splitter;
GRANT UPDATE (name, epoch, version, release, exclusive_arch, exclude_arch, reason) ON kiln.package TO kiln_splitter;
-- Splitting: one task per platform.
GRANT INSERT (job_id, platform, status, reason, finished_at, river_job_id) ON kiln.task TO kiln_splitter;
GRANT UPDATE (river_job_id) ON kiln.task TO kiln_splitter;

-- River: a working client on queue incoming that inserts build River jobs.
GRANT SELECT, INSERT, UPDATE, DELETE ON river.river_job, river.river_leader, river.river_queue TO kiln_splitter;
GRANT USAGE ON SEQUENCE river.river_job_id_seq TO kiln_splitter;
