-- Current state (docs/schema.md, "Migrations"): applied by schema.Migrate
-- after the numbered migrations, in one transaction, on every migrate.
-- Edit the definition here; never copy it into a numbered migration.
-- Where a task stands and when it will build (docs/queueing.md,
-- "Estimates"): kiln.task_eta_rows and the reporting view kiln.task_eta.

-- One row per pending or building task the session may read, with its
-- place in its platform's queue and estimated start and end. It runs with
-- the owner's rights because the place in line counts every task ahead,
-- private buckets' too, and River's order lives in river.river_job, which
-- people may not read; what it returns is limited to the tasks the session
-- could read from kiln.task (the rule of the policies job_read and
-- job_read_farm: one's own, the buckets one may read, everything for
-- admins), and what it says of the others is anonymous: a count ahead and
-- their share in the estimated start.
--
-- The estimate (docs/queueing.md):
--   * a task's build time is the median of the last 5 finished builds
--     (succeeded, failed or timed out) of the same source packages among
--     the platform's last 2,000, else the median of the platform's last
--     100 finished builds, else unknown (one pass over those builds and
--     hash joins, so a read costs the same with 50,000 tasks queued of as
--     many packages). The build time shown for a task (and its end) counts
--     only the earlier builds the session may read, so that a private
--     build of a package of the same name does not show through; the work
--     of the tasks ahead, an anonymous sum, counts them all;
--   * a building task ends at its start plus its build time;
--   * a pending task's place is River's fetch order in build-<platform>:
--     priority, scheduled_at (fair share sets it), River job id (a task
--     whose River job is missing, which the janitor repairs, comes after
--     those of its priority that have one, by task id); it starts
--     now when fewer tasks are ahead of it than the platform's usable slots
--     are free, else when the work of the platform's building tasks still
--     to do plus the build time of every task ahead, spread over the
--     usable slots (online, enabled, not draining builders), is done; and
--     no earlier than its River job is scheduled (a retry after a backoff).
--
-- kiln.task_eta_on computes the queues of the platforms it is given only
-- (all of them for NULL): a task's place and estimate depend only on its
-- own platform's queue, builders and history, so kiln show and kiln queue
-- pay for the platforms they show, not for the whole farm's.
CREATE OR REPLACE FUNCTION kiln.task_eta_on(p_platforms text[])
 RETURNS TABLE (task_id bigint, job_id bigint, platform text, status text, queue_position bigint, ahead bigint,
                slots bigint, free_slots bigint, estimated_duration interval, duration_basis text,
                estimated_start timestamptz, estimated_end timestamptz)
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
WITH hidden AS (
    -- The buckets whose jobs the session may not read, but for its own
    -- (kiln.bucket_readable, as the policy job_read asks it; none for admins).
    SELECT b.name FROM kiln.bucket b
     WHERE NOT kiln.bucket_readable(b.name) AND NOT pg_catalog.pg_has_role(session_user, 'kiln_admin', 'USAGE')
),
live AS (
    SELECT t.id, t.job_id, t.platform, t.status, t.started_at, j.priority,
           (j.submitter = session_user OR j.bucket NOT IN (SELECT h.name FROM hidden h)) AS seen,
           s.source,
           r.priority AS r_priority, r.scheduled_at AS r_at, r.id AS r_id
      FROM kiln.task t
      JOIN kiln.job j ON j.id = t.job_id
      LEFT JOIN (SELECT p.job_id, array_agg(p.name ORDER BY p.seq) AS source
                   FROM kiln.package p
                  WHERE p.job_id IN (SELECT t0.job_id FROM kiln.task t0 WHERE t0.status IN ('pending', 'building')
                                        AND (p_platforms IS NULL OR t0.platform = ANY (p_platforms)))
                  GROUP BY p.job_id) s ON s.job_id = t.job_id
      LEFT JOIN river.river_job r ON r.id = t.river_job_id AND r.queue = 'build-' || t.platform
           AND r.state IN ('available', 'scheduled', 'retryable', 'pending', 'running')
     WHERE t.status IN ('pending', 'building') AND (p_platforms IS NULL OR t.platform = ANY (p_platforms))
),
hist AS (
    -- The platform's last 2,000 finished builds, newest first.
    SELECT h.*,
           row_number() OVER (PARTITION BY h.platform ORDER BY h.finished_at DESC) AS n_platform,
           row_number() OVER (PARTITION BY h.platform, h.source ORDER BY h.finished_at DESC) AS n_all,
           row_number() OVER (PARTITION BY h.platform, h.source, h.seen ORDER BY h.finished_at DESC) AS n_seen
      FROM (SELECT p.name AS platform, f.*
              FROM kiln.platform p
             CROSS JOIN LATERAL (
                   SELECT t2.finished_at, a.finished_at - a.started_at AS d,
                          (SELECT array_agg(p1.name ORDER BY p1.seq) FROM kiln.package p1 WHERE p1.job_id = t2.job_id) AS source,
                          (j2.submitter = session_user OR j2.bucket NOT IN (SELECT h.name FROM hidden h)) AS seen
                     FROM kiln.task t2
                     JOIN kiln.attempt a ON a.task_id = t2.id AND a.attempt = t2.attempt
                     JOIN kiln.job j2 ON j2.id = t2.job_id
                    WHERE t2.platform = p.name AND t2.finished_at IS NOT NULL
                      AND a.status IN ('succeeded', 'failed', 'timed_out')
                    ORDER BY t2.finished_at DESC LIMIT 2000) f
             WHERE p.name IN (SELECT l.platform FROM live l)) h
),
plat AS (
    SELECT p.name,
           coalesce(b.slots, 0) AS slots,
           greatest(coalesce(b.slots, 0) - coalesce(b.busy, 0), 0) AS free_slots,
           (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY h.d) FROM hist h
             WHERE h.platform = p.name AND h.n_platform <= 100) AS median
      FROM kiln.platform p
      LEFT JOIN LATERAL (
          SELECT sum(b.slots) AS slots,
                 sum((SELECT count(*) FROM kiln.task bt WHERE bt.builder = b.name)) AS busy
            FROM kiln.builder_platform bp
            JOIN kiln.builder b ON b.name = bp.builder
           WHERE bp.platform = p.name AND b.state = 'online' AND b.enabled AND NOT b.draining
      ) b ON true
     WHERE p.name IN (SELECT l.platform FROM live l)
),
src AS (
    SELECT h.platform, h.source,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY h.d) FILTER (WHERE h.n_all <= 5) AS median_all,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY h.d) FILTER (WHERE h.seen AND h.n_seen <= 5) AS median_seen
      FROM hist h
     WHERE h.source IS NOT NULL
     GROUP BY h.platform, h.source
),
est AS (
    SELECT l.*, pl.slots, pl.free_slots,
           coalesce(sr.median_all, pl.median) AS work,
           coalesce(sr.median_seen, pl.median) AS dur,
           CASE WHEN sr.median_seen IS NOT NULL THEN 'package' WHEN pl.median IS NOT NULL THEN 'platform' END AS basis
      FROM live l
      JOIN plat pl ON pl.name = l.platform
      LEFT JOIN src sr ON sr.platform = l.platform AND sr.source = l.source
),
building AS (
    SELECT e.platform, sum(greatest(e.started_at + e.work - now(), interval '0')) AS work,
           bool_and(e.work IS NOT NULL) AS known
      FROM est e WHERE e.status = 'building' GROUP BY e.platform
),
pending AS (
    SELECT e.*,
           row_number() OVER w - 1 AS n_ahead,
           coalesce(sum(e.work) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), interval '0') AS work_ahead,
           coalesce(bool_and(e.work IS NOT NULL) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), true) AS known_ahead
      FROM est e
     WHERE e.status = 'pending'
    WINDOW w AS (PARTITION BY e.platform ORDER BY coalesce(e.r_priority, e.priority), e.r_at NULLS LAST, e.r_id NULLS LAST, e.id)
),
start AS (
    SELECT p.*,
           CASE WHEN p.slots = 0 THEN NULL
                WHEN p.n_ahead < p.free_slots THEN now()
                WHEN p.known_ahead AND coalesce(b.known, true) THEN
                     now() + (coalesce(b.work, interval '0') + p.work_ahead) / p.slots
           END AS s_at
      FROM pending p
      LEFT JOIN building b ON b.platform = p.platform
)
SELECT s.id, s.job_id, s.platform, s.status, s.n_ahead + 1, s.n_ahead, s.slots, s.free_slots, s.dur, s.basis,
       CASE WHEN s.r_at > now() THEN greatest(s.s_at, s.r_at) ELSE s.s_at END,
       CASE WHEN s.r_at > now() THEN greatest(s.s_at, s.r_at) ELSE s.s_at END + s.dur
  FROM start s
 WHERE s.seen
UNION ALL
SELECT e.id, e.job_id, e.platform, e.status, NULL, NULL, e.slots, e.free_slots, e.dur, e.basis,
       e.started_at, e.started_at + e.dur
  FROM est e
 WHERE e.status = 'building' AND e.seen
$function$;
COMMENT ON FUNCTION kiln.task_eta_on(text[]) IS 'The rows of kiln.task_eta on the given platforms (all for NULL): every pending or building task there the session may read (its own, readable buckets, all for admins), with its place in River''s order of its platform''s queue and its estimated start and end. Owner''s rights so that the tasks ahead are counted anonymously, private buckets'' too. kiln show and kiln queue read it for the platforms they show.';
REVOKE EXECUTE ON FUNCTION kiln.task_eta_on(text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION kiln.task_eta_rows()
 RETURNS TABLE (task_id bigint, job_id bigint, platform text, status text, queue_position bigint, ahead bigint,
                slots bigint, free_slots bigint, estimated_duration interval, duration_basis text,
                estimated_start timestamptz, estimated_end timestamptz)
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
SELECT * FROM kiln.task_eta_on(NULL)
$function$;
COMMENT ON FUNCTION kiln.task_eta_rows() IS 'The rows of kiln.task_eta (docs/queueing.md, "Estimates"): every pending or building task the session may read (its own, readable buckets, all for admins), with its place in River''s order of its platform''s queue and its estimated start and end. Owner''s rights so that the tasks ahead are counted anonymously, private buckets'' too.';
REVOKE EXECUTE ON FUNCTION kiln.task_eta_rows() FROM PUBLIC;

CREATE OR REPLACE VIEW kiln.task_eta WITH (security_invoker = true) AS
SELECT e.task_id, e.job_id, e.platform, e.status, e.queue_position, e.ahead, e.slots, e.free_slots,
       e.estimated_duration, e.duration_basis, e.estimated_start, e.estimated_end
  FROM kiln.task_eta_rows() e;
COMMENT ON VIEW kiln.task_eta IS 'Where each pending or building task stands and when it will build (docs/queueing.md, "Estimates"). Lists only the tasks the reader may read; the count ahead includes every task, anonymously.';
COMMENT ON COLUMN kiln.task_eta.task_id IS 'The task.';
COMMENT ON COLUMN kiln.task_eta.job_id IS 'Its job.';
COMMENT ON COLUMN kiln.task_eta.platform IS 'Its platform.';
COMMENT ON COLUMN kiln.task_eta.status IS 'pending or building.';
COMMENT ON COLUMN kiln.task_eta.queue_position IS 'Pending: its place in the platform''s queue in River''s fetch order (priority, scheduled_at, River job id), 1 is next; NULL while building.';
COMMENT ON COLUMN kiln.task_eta.ahead IS 'Pending: how many tasks of the platform, anyone''s, builders take before it (queue_position - 1); NULL while building.';
COMMENT ON COLUMN kiln.task_eta.slots IS 'Slots of the platform''s usable builders (online, enabled, not draining).';
COMMENT ON COLUMN kiln.task_eta.free_slots IS 'How many of those slots hold no task now.';
COMMENT ON COLUMN kiln.task_eta.estimated_duration IS 'Estimated build time: the median of the last 5 builds of the same source packages on the platform, else of the platform''s last 100 builds; NULL when the platform has built nothing yet.';
COMMENT ON COLUMN kiln.task_eta.duration_basis IS 'Where estimated_duration comes from: package (its own earlier builds), platform (the platform''s median) or NULL (unknown).';
COMMENT ON COLUMN kiln.task_eta.estimated_start IS 'Building: when the attempt started. Pending: when it is estimated to start; NULL when no usable builder builds the platform or no build time is known.';
COMMENT ON COLUMN kiln.task_eta.estimated_end IS 'estimated_start + estimated_duration (it may lie in the past for a build that runs late).';
