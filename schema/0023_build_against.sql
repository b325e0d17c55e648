-- 0023_build_against.sql: builds use the repositories.
--
-- An sbuild platform builds against the served snapshot of the job's bucket
-- (so a job can Build-Depend on what an earlier job published there) and of
-- the buckets its build_against setting names, in that order. The builder
-- learns which snapshots and keys through kiln.build_repositories; it reads
-- the files themselves from kiln-web like any apt client. See
-- docs/repositories.md.

ALTER TABLE kiln.bucket
    ADD COLUMN build_against text[] NOT NULL DEFAULT '{}'
        CONSTRAINT bucket_build_against_valid CHECK (
            cardinality(build_against) <= 8
            AND array_position(build_against, NULL) IS NULL
            AND NOT (name = ANY (build_against)));
COMMENT ON COLUMN kiln.bucket.build_against IS 'Further buckets whose served repositories builds of this bucket install build dependencies from, after the bucket''s own (devel: {testing,stable}); at most 8, not the bucket itself, buckets that do not exist (any more) are skipped.';

-- kiln.build_repositories, which builders ask, is current state:
-- schema/current/10_functions.sql.
