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

CREATE FUNCTION kiln.quota_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.person = 'public' THEN
            RAISE EXCEPTION 'the default quotas (person public) cannot be removed; kiln admin quota reset restores the built-in ones'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN OLD;
    END IF;
    NEW.set_by := session_user;
    NEW.set_at := now();
    RETURN NEW;
END $$;
COMMENT ON FUNCTION kiln.quota_guard() IS 'Stamps kiln.quota.set_by (session_user) and set_at on every change and refuses to delete the defaults row (person public).';
CREATE TRIGGER quota_guard BEFORE INSERT OR UPDATE OR DELETE ON kiln.quota
    FOR EACH ROW EXECUTE FUNCTION kiln.quota_guard();

-- The limits that apply to a person: their own where set, else the defaults.
CREATE FUNCTION kiln.quota_limits(p_person name) RETURNS kiln.quota
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    q kiln.quota;
BEGIN
    SELECT p_person, coalesce(o.jobs_per_hour, d.jobs_per_hour), coalesce(o.bytes_per_day, d.bytes_per_day),
           coalesce(o.options_bytes, d.options_bytes), coalesce(o.platforms_per_job, d.platforms_per_job),
           coalesce(o.validate_river_jobs_per_job, d.validate_river_jobs_per_job),
           coalesce(o.river_job_bytes, d.river_job_bytes), coalesce(o.set_by, d.set_by), coalesce(o.set_at, d.set_at)
    INTO q
    FROM kiln.quota d LEFT JOIN kiln.quota o ON o.person = p_person AND p_person <> 'public'
    WHERE d.person = 'public';
    RETURN q;
END $$;
COMMENT ON FUNCTION kiln.quota_limits(name) IS 'The quotas that apply to p_person: the person''s own row where it sets a limit, the defaults (person public) elsewhere.';

------------------------------------------------------------------------------
-- Who is limited
------------------------------------------------------------------------------

-- A person: a member of kiln_submitter (admins are), not a superuser, not a
-- daemon. pg_has_role counts superusers as members of every role, hence the
-- first test. (These are PL/pgSQL, not SQL, functions: PostgreSQL 15 plans
-- a SQL function's body again at every call from a trigger, PL/pgSQL once
-- per session; it made a person's job insert 1 ms slower.)
CREATE FUNCTION kiln.quota_applies(p_role name) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    RETURN coalesce((SELECT NOT r.rolsuper
                            AND pg_catalog.pg_has_role(r.oid, 'kiln_submitter', 'MEMBER')
                            AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_builder', 'MEMBER')
                            AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_splitter', 'MEMBER')
                            AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_janitor', 'MEMBER')
                            AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_web', 'MEMBER')
                     FROM pg_catalog.pg_roles r WHERE r.rolname = p_role), false);
END $$;
COMMENT ON FUNCTION kiln.quota_applies(name) IS 'True when quotas limit role p_role: a member of kiln_submitter (so also an admin) that is neither a superuser nor a member of a daemon group (kiln_builder, kiln_splitter, kiln_janitor, kiln_web).';

-- The limits of a role if quotas limit it, in one query (the triggers'
-- path): kiln.quota_applies and kiln.quota_limits together.
CREATE FUNCTION kiln.quota_for(p_role name) RETURNS kiln.quota
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    q kiln.quota;
BEGIN
    SELECT p_role, coalesce(o.jobs_per_hour, d.jobs_per_hour), coalesce(o.bytes_per_day, d.bytes_per_day),
           coalesce(o.options_bytes, d.options_bytes), coalesce(o.platforms_per_job, d.platforms_per_job),
           coalesce(o.validate_river_jobs_per_job, d.validate_river_jobs_per_job),
           coalesce(o.river_job_bytes, d.river_job_bytes), coalesce(o.set_by, d.set_by), coalesce(o.set_at, d.set_at)
    INTO q
    FROM pg_catalog.pg_roles r
    JOIN kiln.quota d ON d.person = 'public'
    LEFT JOIN kiln.quota o ON o.person = r.rolname
    WHERE r.rolname = p_role AND NOT r.rolsuper
      AND pg_catalog.pg_has_role(r.oid, 'kiln_submitter', 'MEMBER')
      AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_builder', 'MEMBER')
      AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_splitter', 'MEMBER')
      AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_janitor', 'MEMBER')
      AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_web', 'MEMBER');
    RETURN q;
END $$;
COMMENT ON FUNCTION kiln.quota_for(name) IS 'The quotas that limit role p_role (as kiln.quota_limits), or a row of NULLs when quotas do not limit it (kiln.quota_applies is false).';

CREATE FUNCTION kiln.quota_web_session() RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    RETURN coalesce((SELECT NOT r.rolsuper AND pg_catalog.pg_has_role(r.oid, 'kiln_web', 'MEMBER')
                     FROM pg_catalog.pg_roles r WHERE r.rolname = session_user), false);
END $$;
COMMENT ON FUNCTION kiln.quota_web_session() IS 'True when the session is kiln-web''s (a member of kiln_web, not a superuser): its writes for a person count against that person''s quotas.';

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

-- One lock per person for every charge, always taken before the counter
-- row: two sessions of one person are counted in turn, and no two charges
-- can wait for each other in opposite orders.
CREATE FUNCTION kiln.quota_lock(p_person name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    -- 1802596212 is 'kqot' in ASCII: kiln's key space for quota locks.
    PERFORM pg_catalog.pg_advisory_xact_lock(1802596212, pg_catalog.hashtext(p_person::text));
END $$;
COMMENT ON FUNCTION kiln.quota_lock(name) IS 'Takes the transaction-scoped advisory lock (1802596212, hashtext(person)) that orders all quota charges of one person.';

-- Adds p_amount to the person's use of p_quota (jobs_per_hour or
-- bytes_per_day) in the current window and returns the window's new total,
-- with its start and end as messages give them.
CREATE FUNCTION kiln.quota_charge(p_person name, p_quota text, p_amount bigint,
                                  OUT total bigint, OUT since text, OUT resets text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    unit text := CASE p_quota WHEN 'jobs_per_hour' THEN 'hour' ELSE 'day' END;
    w timestamptz;
BEGIN
    w := date_trunc(unit, clock_timestamp(), 'UTC');
    PERFORM kiln.quota_lock(p_person);
    INSERT INTO kiln.quota_usage AS u (person, quota, window_start, used)
    VALUES (p_person, p_quota, w, p_amount)
    ON CONFLICT (person, quota, window_start) DO UPDATE SET used = u.used + EXCLUDED.used
    RETURNING u.used INTO total;
    IF total = p_amount THEN
        -- The window's first charge: forget this person's windows older than a week.
        DELETE FROM kiln.quota_usage
        WHERE person = p_person AND quota = p_quota AND window_start < w - interval '7 days';
    END IF;
    since := to_char(w AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC';
    resets := to_char((w + ('1 ' || unit)::interval) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC';
END $$;
COMMENT ON FUNCTION kiln.quota_charge(name, text, bigint) IS 'Under the person''s quota lock, adds p_amount to kiln.quota_usage for p_person and p_quota in the current window (the clock hour for jobs_per_hour, the UTC day for bytes_per_day); returns the window''s new total, its start (since) and its end (resets) as YYYY-MM-DD HH24:MI UTC. Called only by the quota triggers; executable by no role directly.';

-- Raises the quota refusal: SQLSTATE KL001, the message, a DETAIL that
-- names the quota's column (quota=...) for programs, and a hint.
CREATE FUNCTION kiln.quota_refuse(p_person name, p_quota text, p_message text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    title text := CASE p_quota
        WHEN 'jobs_per_hour' THEN 'jobs per hour'
        WHEN 'bytes_per_day' THEN 'bytes per day'
        WHEN 'options_bytes' THEN 'options size'
        WHEN 'platforms_per_job' THEN 'platforms in a list'
        WHEN 'validate_river_jobs_per_job' THEN 'validate River jobs per job'
        WHEN 'river_job_bytes' THEN 'River job size'
    END;
BEGIN
    RAISE EXCEPTION 'quota "%" exceeded for %: %', title, p_person, p_message
        USING ERRCODE = 'KL001',
              DETAIL = 'quota=' || p_quota,
              HINT = 'a kiln admin may raise it: kiln admin quota set --' || replace(p_quota, '_', '-') || ' N '
                     || p_person || '; see docs/quotas.md';
END $$;
COMMENT ON FUNCTION kiln.quota_refuse(name, text, text) IS 'Raises SQLSTATE KL001: quota "<title>" exceeded for <person>: <message>, with DETAIL quota=<column of kiln.quota> and a HINT naming the admin command.';

------------------------------------------------------------------------------
-- Jobs: how many per hour, how large
------------------------------------------------------------------------------

CREATE FUNCTION kiln.job_quota() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    who name;
    lim kiln.quota;
    n bigint;
    since text;
    resets text;
BEGIN
    -- On insert the person is the session's; kiln.web_resubmit inserts as
    -- kiln-web and then hands the job to the person (UPDATE OF submitter).
    who := CASE WHEN TG_OP = 'INSERT' THEN session_user ELSE NEW.submitter END;
    lim := kiln.quota_for(who);
    IF lim.person IS NULL THEN
        RETURN NEW;
    END IF;
    n := octet_length(NEW.options::text);
    IF n > lim.options_bytes THEN
        PERFORM kiln.quota_refuse(who, 'options_bytes', format('options of %s bytes (limit %s); a limit on each job, make the options smaller', n, lim.options_bytes));
    END IF;
    n := coalesce(cardinality(NEW.platforms), 0);
    IF n > lim.platforms_per_job THEN
        PERFORM kiln.quota_refuse(who, 'platforms_per_job', format('%s platforms in the list (limit %s); a limit on each job, name fewer or use all', n, lim.platforms_per_job));
    END IF;
    -- Not quotas but sizes no real value has: a platform entry is a name of
    -- at most 50 characters, perhaps with !; a bucket is a name too.
    IF EXISTS (SELECT 1 FROM unnest(NEW.platforms) e WHERE octet_length(e) > 51) THEN
        RAISE EXCEPTION 'a platform in the list is longer than 51 bytes; platform names have at most 50 characters'
            USING ERRCODE = 'check_violation';
    END IF;
    IF octet_length(NEW.bucket) > 50 THEN
        RAISE EXCEPTION 'bucket name of % bytes; bucket names have at most 50 characters', octet_length(NEW.bucket)
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT c.total, c.since, c.resets INTO n, since, resets FROM kiln.quota_charge(who, 'jobs_per_hour', 1) c;
    IF n > lim.jobs_per_hour THEN
        PERFORM kiln.quota_refuse(who, 'jobs_per_hour', format('%s jobs since %s (limit %s); resets at %s',
            n - 1, since, lim.jobs_per_hour, resets));
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION kiln.job_quota() IS 'Before a person''s job is inserted (or kiln.web_resubmit hands a job to a person): refuses options larger than options_bytes, more platforms than platforms_per_job, over-long platform entries or bucket names, and a job past jobs_per_hour in the current clock hour, which it charges.';
CREATE TRIGGER job_quota BEFORE INSERT ON kiln.job
    FOR EACH ROW EXECUTE FUNCTION kiln.job_quota();
CREATE TRIGGER job_quota_person BEFORE UPDATE OF submitter ON kiln.job
    FOR EACH ROW WHEN (OLD.submitter IS DISTINCT FROM NEW.submitter) EXECUTE FUNCTION kiln.job_quota();

------------------------------------------------------------------------------
-- Blobs: bytes stored per day
------------------------------------------------------------------------------

-- A blob is charged its declared size when its row is stored, once per
-- blob: a blob already stored and reused (blob.Put's deduplication) stores
-- no row and costs nothing; a blob nobody references costs its size like
-- any other; an upload past the day's bytes is refused before any chunk is
-- sent. After the insert, so that blob.Put's INSERT ... ON CONFLICT DO
-- NOTHING is charged only when it stores the row.
CREATE FUNCTION kiln.blob_quota() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    who name := session_user;
    lim bigint;
    total bigint;
    since text;
    resets text;
BEGIN
    IF NEW.size = 0 THEN
        RETURN NULL;
    END IF;
    lim := (kiln.quota_for(who)).bytes_per_day;
    IF lim IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT c.total, c.since, c.resets INTO total, since, resets FROM kiln.quota_charge(who, 'bytes_per_day', NEW.size) c;
    IF total > lim THEN
        PERFORM kiln.quota_refuse(who, 'bytes_per_day', format('storing a blob of %s would make %s bytes since %s (limit %s bytes, %s); resets at %s',
            pg_size_pretty(NEW.size), total, since, lim, pg_size_pretty(lim), resets));
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION kiln.blob_quota() IS 'After a person stores a blob row: charges its declared size to bytes_per_day of the current UTC day and refuses it past the limit.';
CREATE TRIGGER blob_quota AFTER INSERT ON kiln.blob
    FOR EACH ROW EXECUTE FUNCTION kiln.blob_quota();

-- What a person's chunks hold cannot exceed the size the blob declared (and
-- was charged): chunk seq holds at most chunk_size bytes and none past
-- size, so however the chunks are numbered they add up to size at most.
-- Runs after kiln.blob_chunk_guard (trigger names sort), which made sure
-- the blob is the session's own, stored in the same transaction.
CREATE FUNCTION kiln.blob_chunk_within_size() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    b kiln.blob%ROWTYPE;
BEGIN
    IF NOT kiln.quota_applies(session_user) THEN
        RETURN NEW;
    END IF;
    SELECT * INTO b FROM kiln.blob WHERE sha256 = NEW.sha256;
    IF octet_length(NEW.data) > b.chunk_size OR NEW.seq::bigint * b.chunk_size + octet_length(NEW.data) > b.size THEN
        RAISE EXCEPTION 'chunk % of blob % (% bytes) goes past the blob''s declared size of % bytes in chunks of %',
            NEW.seq, encode(NEW.sha256, 'hex'), octet_length(NEW.data), b.size, b.chunk_size
            USING ERRCODE = 'check_violation',
                  HINT = 'a blob''s declared size is what counts against the quota bytes per day (docs/quotas.md)';
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION kiln.blob_chunk_within_size() IS 'Before a person stores a blob chunk: refuses one longer than the blob''s chunk_size or reaching past its declared size, so a person stores no more bytes than were charged to bytes_per_day.';
CREATE TRIGGER blob_chunk_within_size BEFORE INSERT ON kiln.blob_chunk
    FOR EACH ROW EXECUTE FUNCTION kiln.blob_chunk_within_size();

------------------------------------------------------------------------------
-- River jobs: how many validate River jobs per job, how large
------------------------------------------------------------------------------

-- People insert only validate River jobs (row-level security, 0013), and so
-- does kiln-web for a resubmit (0014): the trigger fires for that kind only,
-- so the daemons' build River jobs never reach it. It runs after the row
-- passed row-level security, so only River jobs that would be stored count.
CREATE FUNCTION kiln.river_job_quota() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    who name;
    lim kiln.quota;
    job bigint;
    n bigint;
BEGIN
    IF jsonb_typeof(NEW.args -> 'job_id') = 'number' THEN
        job := (NEW.args ->> 'job_id')::bigint;
    END IF;
    lim := kiln.quota_for(session_user);
    IF lim.person IS NULL AND kiln.quota_web_session() AND job IS NOT NULL THEN
        lim := kiln.quota_for((SELECT j.submitter FROM kiln.job j WHERE j.id = job));
    END IF;
    IF lim.person IS NULL THEN
        RETURN NULL;
    END IF;
    who := lim.person;
    n := octet_length(NEW::text);
    IF n > lim.river_job_bytes THEN
        PERFORM kiln.quota_refuse(who, 'river_job_bytes', format('a River job of %s bytes (limit %s); a limit on each River job', n, lim.river_job_bytes));
    END IF;
    IF job IS NULL OR NOT EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job) THEN
        RETURN NULL;
    END IF;
    PERFORM kiln.quota_lock(who);
    INSERT INTO kiln.quota_river_jobs AS q (job_id, validate_river_jobs) VALUES (job, 1)
    ON CONFLICT (job_id) DO UPDATE SET validate_river_jobs = q.validate_river_jobs + 1
    RETURNING q.validate_river_jobs INTO n;
    IF n > lim.validate_river_jobs_per_job THEN
        PERFORM kiln.quota_refuse(who, 'validate_river_jobs_per_job', format('job %s already has %s validate River jobs (limit %s); a limit on each job, one is enough',
            job, n - 1, lim.validate_river_jobs_per_job));
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION kiln.river_job_quota() IS 'After a person (or kiln-web for a person) inserts a validate River job: refuses one larger than river_job_bytes, and past validate_river_jobs_per_job for its job, which it counts in kiln.quota_river_jobs.';
CREATE TRIGGER river_job_quota AFTER INSERT ON river.river_job
    FOR EACH ROW WHEN (NEW.kind = 'validate') EXECUTE FUNCTION kiln.river_job_quota();

-- The functions are the triggers' (which run as the owner), except
-- kiln.quota_limits, which reads kiln.quota with the caller's rights, for
-- anyone who may read it (kiln admin quota show), and kiln.quota_builtin,
-- which admins use to reset the defaults (roles/kiln_admin.sql).
REVOKE EXECUTE ON FUNCTION kiln.quota_charge(name, text, bigint), kiln.quota_lock(name),
    kiln.quota_refuse(name, text, text), kiln.quota_applies(name), kiln.quota_for(name),
    kiln.quota_web_session(), kiln.quota_builtin() FROM PUBLIC;
