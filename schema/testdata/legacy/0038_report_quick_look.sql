-- 0038_report_quick_look.sql: kiln.job_request_report (schema/current/
-- 14_reports.sql) returns at once when nobody is to be told of a job's end
-- (docs/scaling.md, "The report trigger's quick look"). No table changes.
CREATE OR REPLACE FUNCTION kiln.job_request_report()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    failed  boolean := NEW.status IN ('failed', 'partially_failed', 'invalid');
    p_when  text;
    p_email text;
    queued  integer;
BEGIN
    IF NEW.status NOT IN ('succeeded', 'failed', 'partially_failed', 'cancelled', 'invalid')
       OR OLD.status IS NOT DISTINCT FROM NEW.status THEN
        RETURN NULL;
    END IF;
    SELECT r.report_when, r.email INTO p_when, p_email FROM kiln.report_person r WHERE r.person = NEW.submitter;
    -- Most jobs have nobody to tell: one cheap look rather than the
    -- statement below, whose start alone (its tables and their indexes)
    -- cost some 0.2 ms at every job's end.
    IF p_email IS NULL
       AND NOT EXISTS (SELECT FROM kiln.job_report_address a WHERE a.job_id = NEW.id)
       AND NOT EXISTS (SELECT FROM kiln.report_bucket b WHERE b.bucket = NEW.bucket)
       AND NOT EXISTS (SELECT FROM kiln.report_webhook w WHERE w.person = NEW.submitter OR w.bucket = NEW.bucket) THEN
        RETURN NULL;
    END IF;
    p_when := coalesce(p_when, 'always');
    WITH wanted (channel, target, webhook_id) AS (
        SELECT 'mail', a.email, NULL::bigint
          FROM (SELECT p_email AS email WHERE p_email IS NOT NULL
                UNION SELECT r.email FROM kiln.job_report_address r WHERE r.job_id = NEW.id) a
         WHERE p_when = 'always' OR (p_when = 'failure' AND failed)
        UNION
        SELECT 'mail', e.email, NULL::bigint
          FROM kiln.report_bucket b CROSS JOIN LATERAL pg_catalog.unnest(b.emails) AS e(email)
         WHERE b.bucket = NEW.bucket AND (b.report_when = 'always' OR (b.report_when = 'failure' AND failed))
        UNION
        SELECT 'webhook', w.id::text, w.id
          FROM kiln.report_webhook w
         WHERE (w.person = NEW.submitter OR w.bucket = NEW.bucket)
           AND (w.report_when = 'always' OR (w.report_when = 'failure' AND failed))
    ), added AS (
        INSERT INTO kiln.report_delivery (job_id, channel, target, webhook_id, job_status)
        SELECT NEW.id, w.channel, w.target, w.webhook_id, NEW.status FROM wanted w
        ON CONFLICT (job_id, channel, target) DO NOTHING
        RETURNING channel, webhook_id
    ), runs AS (
        INSERT INTO river.river_job (args, kind, max_attempts, queue, priority, state, scheduled_at)
        SELECT CASE WHEN r.channel = 'mail' THEN pg_catalog.jsonb_build_object('job_id', NEW.id, 'channel', 'mail')
                    ELSE pg_catalog.jsonb_build_object('job_id', NEW.id, 'channel', 'webhook', 'webhook_id', r.webhook_id) END,
               'report', 25, 'report', 1, 'available', pg_catalog.now()
          FROM (SELECT DISTINCT a.channel, a.webhook_id FROM added a) r
        RETURNING 1
    )
    SELECT count(*) INTO queued FROM runs;
    IF queued > 0 THEN
        PERFORM pg_catalog.pg_notify('river.river_insert', pg_catalog.json_build_object('queue', 'report')::text);
    END IF;
    RETURN NULL;
END $function$;
