-- 0018_quotas.sql: per-person quotas, enforced where a person's role writes.
--
-- Without them one person could insert 20,000 jobs in seconds, a 20 MB
-- options object, a 200,000-element platform list, blobs nobody references
-- and any number of River jobs. Now triggers refuse, with SQLSTATE KL001, a
-- message naming the quota and when it resets, and a hint:
--
--   jobs per hour                kiln.job inserts (kiln submit, kiln resubmit,
--                                and kiln.web_resubmit for the person)
--   bytes per day                sizes of the blobs a person stores (reused,
--                                deduplicated blobs cost nothing; chunks
--                                cannot hold more than the size declared)
--   options size                 bytes of a job's options (JSON text)
--   platforms in a list          entries of a job's platform list
--   validate River jobs per job  validate River jobs inserted for one job
--   River job size               bytes of one River job a person inserts
--
-- Limits live in kiln.quota: the row for person 'public' holds the defaults
-- (public can never be a role's name), a row per person overrides some of
-- them. Admins change them (roles/kiln_admin.sql, kiln admin quota); people
-- only read them. Only people are limited (members of kiln_submitter, which
-- admins are too); the farm's daemons (splitter, builders, janitor, web),
-- superusers and the owner are not, and pay one membership check at most.
--
-- Counting is per fixed window in kiln.quota_usage (the clock hour, the UTC
-- day), one row per person, quota and window, updated by the same
-- transaction that writes: a rolled-back submit costs nothing, and the
-- count is a primary-key lookup however many jobs the farm holds. Windows
-- follow clock_timestamp(), so a transaction held open for hours charges the
-- hour it writes in, not the one it began in. Every charge first takes a
-- transaction-scoped advisory lock of the person (kiln.quota_lock), so two
-- sessions of one person are counted one after the other and cannot both
-- slip past a limit; different people never wait for each other (short of
-- a hash collision). See docs/quotas.md.
-- (Its functions, views, triggers and policies are current state in schema/current/:
-- docs/schema.md, "Migrations".)

------------------------------------------------------------------------------
-- Limits
------------------------------------------------------------------------------

CREATE TABLE kiln.quota (
    person                      name PRIMARY KEY,
    jobs_per_hour               integer,
    bytes_per_day               bigint,
    options_bytes               integer,
    platforms_per_job           integer,
    validate_river_jobs_per_job integer,
    river_job_bytes             integer,
    set_by                      name NOT NULL DEFAULT session_user,
    set_at                      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT quota_limits_nonnegative CHECK (jobs_per_hour >= 0 AND bytes_per_day >= 0 AND options_bytes >= 0
        AND platforms_per_job >= 0 AND validate_river_jobs_per_job >= 0 AND river_job_bytes >= 0),
    CONSTRAINT quota_defaults_complete CHECK (person <> 'public' OR (jobs_per_hour IS NOT NULL AND bytes_per_day IS NOT NULL
        AND options_bytes IS NOT NULL AND platforms_per_job IS NOT NULL AND validate_river_jobs_per_job IS NOT NULL
        AND river_job_bytes IS NOT NULL))
);
COMMENT ON TABLE kiln.quota IS 'Per-person quotas. The row of person public holds the defaults; a row per person overrides the limits it sets (NULL: the default). Enforced by triggers on kiln.job, kiln.blob, kiln.blob_chunk and river.river_job (docs/quotas.md); admins change them with kiln admin quota.';
COMMENT ON COLUMN kiln.quota.person IS 'The person''s login role, or public for the defaults everyone has.';
COMMENT ON COLUMN kiln.quota.jobs_per_hour IS 'Most jobs the person may submit in one clock hour (UTC); resubmits count.';
COMMENT ON COLUMN kiln.quota.bytes_per_day IS 'Most bytes of blobs (their declared sizes) the person may store in one UTC day; blobs already stored and reused cost nothing.';
COMMENT ON COLUMN kiln.quota.options_bytes IS 'Largest options object of a job, in bytes of its JSON text.';
COMMENT ON COLUMN kiln.quota.platforms_per_job IS 'Most entries in a job''s platform list (names, all, !name).';
COMMENT ON COLUMN kiln.quota.validate_river_jobs_per_job IS 'Most validate River jobs the person (or kiln-web for them) may insert for one job; a submit needs one.';
COMMENT ON COLUMN kiln.quota.river_job_bytes IS 'Largest River job the person may insert, in bytes of the whole row as text (args, metadata, tags, ...).';
COMMENT ON COLUMN kiln.quota.set_by IS 'Role that last changed the row (session_user, set by a trigger).';
COMMENT ON COLUMN kiln.quota.set_at IS 'When the row was last changed (set by a trigger).';

-- The built-in defaults, for a busy real person (docs/quotas.md says why
-- each): what the migration starts with and what kiln admin quota reset
-- restores. (set_by and set_at are placeholders: kiln.quota_guard stamps
-- the real ones.)
CREATE FUNCTION kiln.quota_builtin() RETURNS kiln.quota
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, kiln, pg_temp
RETURN ROW('public'::name, 500, 20::bigint * 1024 * 1024 * 1024, 64 * 1024, 1000, 5, 8 * 1024,
           'kiln_owner'::name, '-infinity'::timestamptz)::kiln.quota;
COMMENT ON FUNCTION kiln.quota_builtin() IS 'The built-in default quotas (500 jobs per hour, 20 GiB per day, 64 KiB options, 1000 platforms, 5 validate River jobs per job, 8 KiB River jobs) as a kiln.quota row for person public.';

INSERT INTO kiln.quota (person, jobs_per_hour, bytes_per_day, options_bytes, platforms_per_job, validate_river_jobs_per_job, river_job_bytes)
SELECT person, jobs_per_hour, bytes_per_day, options_bytes, platforms_per_job, validate_river_jobs_per_job, river_job_bytes
FROM kiln.quota_builtin();

------------------------------------------------------------------------------
-- Counting
------------------------------------------------------------------------------

CREATE TABLE kiln.quota_usage (
    person       name NOT NULL,
    quota        text NOT NULL CONSTRAINT quota_usage_quota_valid CHECK (quota IN ('jobs_per_hour', 'bytes_per_day')),
    window_start timestamptz NOT NULL,
    used         bigint NOT NULL CONSTRAINT quota_usage_used_nonnegative CHECK (used >= 0),
    PRIMARY KEY (person, quota, window_start)
);
COMMENT ON TABLE kiln.quota_usage IS 'What each person used of a counted quota in one window (the clock hour for jobs, the UTC day for bytes), written by the quota triggers in the writing transaction. Windows older than a week are dropped as new ones start.';
COMMENT ON COLUMN kiln.quota_usage.person IS 'The person''s login role.';
COMMENT ON COLUMN kiln.quota_usage.quota IS 'jobs_per_hour or bytes_per_day (a column of kiln.quota).';
COMMENT ON COLUMN kiln.quota_usage.window_start IS 'Start of the window: a whole hour (jobs) or midnight UTC (bytes). It resets when the next one starts.';
COMMENT ON COLUMN kiln.quota_usage.used IS 'Jobs submitted, or bytes of blobs stored, in the window.';

CREATE TABLE kiln.quota_river_jobs (
    job_id              bigint PRIMARY KEY REFERENCES kiln.job (id) ON DELETE CASCADE,
    validate_river_jobs integer NOT NULL CONSTRAINT quota_river_jobs_count_positive CHECK (validate_river_jobs > 0)
);
COMMENT ON TABLE kiln.quota_river_jobs IS 'How many validate River jobs people (and kiln-web for them) inserted for each job, against quota validate_river_jobs_per_job. Not decreased when River cleans its jobs away.';
COMMENT ON COLUMN kiln.quota_river_jobs.job_id IS 'The job the validate River jobs are for.';
COMMENT ON COLUMN kiln.quota_river_jobs.validate_river_jobs IS 'How many were inserted.';
