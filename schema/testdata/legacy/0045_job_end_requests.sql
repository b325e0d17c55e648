-- 0045_job_end_requests.sql: a job's end asks for its publication and its
-- reports once per statement, not once per job: kiln.job_changed (the
-- statement-level trigger of job updates) calls kiln.job_request_publications
-- and kiln.job_request_reports with the jobs the statement ended, and the two
-- row-level triggers that did it job by job (job_request_publication,
-- job_request_report) and their functions go (schema/current/10_functions.sql,
-- 14_reports.sql). No table changes.

-- What 0045 changed in schema/current, as it was when 0045 landed (the
-- legacy layout kept every function and trigger in a numbered migration).

DROP TRIGGER IF EXISTS job_request_publication ON kiln.job;
DROP TRIGGER IF EXISTS job_request_report ON kiln.job;
DROP FUNCTION IF EXISTS kiln.job_request_publication();
DROP FUNCTION IF EXISTS kiln.job_request_report();

CREATE OR REPLACE FUNCTION kiln.job_request_publications(p_job_ids bigint[])
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    notified bigint;
BEGIN
    WITH requested AS (
        INSERT INTO kiln.publication_request (bucket, kind, job_id)
        SELECT j.bucket, 'job', j.id
          FROM kiln.job j JOIN kiln.bucket b ON b.name = j.bucket
         WHERE j.id = ANY (p_job_ids) AND j.status IN ('succeeded', 'failed', 'partially_failed', 'cancelled')
           AND b.publish_policy <> 'none'
         ORDER BY j.id
        RETURNING bucket, job_id
    )
    SELECT count(pg_catalog.pg_notify('kiln_publish', pg_catalog.json_build_object('bucket', r.bucket, 'job', r.job_id)::text))
      INTO notified FROM (SELECT q.bucket, q.job_id FROM requested q ORDER BY q.job_id) r;
END $function$;
COMMENT ON FUNCTION kiln.job_request_publications(bigint[]) IS 'For the jobs given that have a final status (not invalid): queues a publication request for each one''s bucket (unless the bucket publishes nothing) and sends NOTIFY kiln_publish. Called by kiln.job_changed for the jobs a statement ended. SECURITY DEFINER because whoever finishes the job (a builder, the janitor, a person cancelling) holds no grant on kiln.publication_request; executable by no one else.';

CREATE OR REPLACE FUNCTION kiln.job_request_reports(p_job_ids bigint[])
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    queued integer;
BEGIN
    -- Most jobs have nobody to tell: one cheap look rather than the
    -- statement below, whose start alone (its tables and their indexes)
    -- cost some 0.2 ms at every job's end.
    IF NOT EXISTS (
        SELECT FROM kiln.job j
         WHERE j.id = ANY (p_job_ids)
           AND (EXISTS (SELECT FROM kiln.report_person r WHERE r.person = j.submitter AND r.email IS NOT NULL)
                OR EXISTS (SELECT FROM kiln.job_report_address a WHERE a.job_id = j.id)
                OR EXISTS (SELECT FROM kiln.report_bucket b WHERE b.bucket = j.bucket)
                OR EXISTS (SELECT FROM kiln.report_webhook w WHERE w.person = j.submitter OR w.bucket = j.bucket))) THEN
        RETURN;
    END IF;
    WITH ended AS (
        SELECT j.id, j.bucket, j.submitter, j.status,
               j.status IN ('failed', 'partially_failed', 'invalid') AS failed,
               coalesce(r.report_when, 'always') AS person_when, r.email AS person_email
          FROM kiln.job j LEFT JOIN kiln.report_person r ON r.person = j.submitter
         WHERE j.id = ANY (p_job_ids)
           AND j.status IN ('succeeded', 'failed', 'partially_failed', 'cancelled', 'invalid')
    ), wanted (job_id, job_status, channel, target, webhook_id) AS (
        SELECT e.id, e.status, 'mail', a.email, NULL::bigint
          FROM ended e
         CROSS JOIN LATERAL (SELECT e.person_email AS email WHERE e.person_email IS NOT NULL
                             UNION SELECT r.email FROM kiln.job_report_address r WHERE r.job_id = e.id) a
         WHERE e.person_when = 'always' OR (e.person_when = 'failure' AND e.failed)
        UNION
        SELECT e.id, e.status, 'mail', m.email, NULL::bigint
          FROM ended e JOIN kiln.report_bucket b ON b.bucket = e.bucket
         CROSS JOIN LATERAL pg_catalog.unnest(b.emails) AS m(email)
         WHERE b.report_when = 'always' OR (b.report_when = 'failure' AND e.failed)
        UNION
        SELECT e.id, e.status, 'webhook', w.id::text, w.id
          FROM ended e JOIN kiln.report_webhook w ON w.person = e.submitter OR w.bucket = e.bucket
         WHERE w.report_when = 'always' OR (w.report_when = 'failure' AND e.failed)
    ), added AS (
        INSERT INTO kiln.report_delivery (job_id, channel, target, webhook_id, job_status)
        SELECT w.job_id, w.channel, w.target, w.webhook_id, w.job_status FROM wanted w
         ORDER BY w.job_id, w.channel, w.target
        ON CONFLICT (job_id, channel, target) DO NOTHING
        RETURNING job_id, channel, webhook_id
    ), runs AS (
        INSERT INTO river.river_job (args, kind, max_attempts, queue, priority, state, scheduled_at)
        SELECT CASE WHEN r.channel = 'mail' THEN pg_catalog.jsonb_build_object('job_id', r.job_id, 'channel', 'mail')
                    ELSE pg_catalog.jsonb_build_object('job_id', r.job_id, 'channel', 'webhook', 'webhook_id', r.webhook_id) END,
               'report', 25, 'report', 1, 'available', pg_catalog.now()
          FROM (SELECT DISTINCT a.job_id, a.channel, a.webhook_id FROM added a) r
         ORDER BY r.job_id, r.channel, r.webhook_id
        RETURNING 1
    )
    SELECT count(*) INTO queued FROM runs;
    IF queued > 0 THEN
        PERFORM pg_catalog.pg_notify('river.river_insert', pg_catalog.json_build_object('queue', 'report')::text);
    END IF;
END $function$;
COMMENT ON FUNCTION kiln.job_request_reports(bigint[]) IS 'For the jobs given that have a final status (invalid included): writes a kiln.report_delivery row per recipient who wants it (the submitter''s address and the job''s --report addresses as the submitter''s report_when says, the bucket''s addresses, the person''s and the bucket''s webhooks) and the report River jobs that deliver them (one for a job''s mail, one per webhook), and wakes kiln-reporter; a delivery already written is not written again. Called by kiln.job_changed for the jobs a statement ended. SECURITY DEFINER: whoever ends the job (builder, janitor, splitter, a person cancelling) holds no grant on these tables; executable by no one else.';

CREATE OR REPLACE FUNCTION kiln.job_changed()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_jobs bigint[];
    v_ended bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO kiln.event (kind, job_id, new_status, detail)
        SELECT 'job.status', n.id, n.status, pg_catalog.jsonb_build_object('bucket', n.bucket, 'submitter', n.submitter)
          FROM new_jobs n ORDER BY n.id;
        PERFORM pg_catalog.pg_notify('kiln_job', pg_catalog.json_build_object('job', n.id)::text) FROM new_jobs n ORDER BY n.id;
    ELSE
        WITH ev AS (
            INSERT INTO kiln.event (kind, job_id, old_status, new_status, detail)
            SELECT 'job.status', n.id, o.status, n.status, coalesce(pg_catalog.jsonb_build_object('reason', n.reason), '{}')
              FROM new_jobs n JOIN old_jobs o ON o.id = n.id
             WHERE n.status IS DISTINCT FROM o.status
             ORDER BY n.id
            RETURNING job_id, new_status
        )
        SELECT pg_catalog.array_agg(e.job_id ORDER BY e.job_id),
               pg_catalog.array_agg(e.job_id ORDER BY e.job_id)
                   FILTER (WHERE e.new_status IN ('succeeded', 'failed', 'partially_failed', 'cancelled', 'invalid'))
          INTO v_jobs, v_ended FROM ev e;
        PERFORM pg_catalog.pg_notify('kiln_job', pg_catalog.json_build_object('job', j)::text) FROM unnest(v_jobs) AS j;
        -- The jobs this statement ended ask for their publication and
        -- their reports, all of them at once.
        IF v_ended IS NOT NULL THEN
            PERFORM kiln.job_request_publications(v_ended);
            PERFORM kiln.job_request_reports(v_ended);
        END IF;
    END IF;
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.job_changed() IS 'After a statement inserts jobs or changes jobs'' status (transition tables new_jobs and old_jobs): records an event per job, sends NOTIFY kiln_job with each job id (no status: listeners read the job with their own rights) and, for the jobs that reached a final status, asks for their publication (kiln.job_request_publications) and reports (kiln.job_request_reports).';

REVOKE EXECUTE ON FUNCTION kiln.job_request_publications(bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.job_request_reports(bigint[]) FROM PUBLIC;
