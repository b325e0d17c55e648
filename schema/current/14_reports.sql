-- Current state (docs/schema.md, "Migrations"): applied by schema.Migrate
-- after the numbered migrations, in one transaction, on every migrate.
-- One report per job (docs/reports.md): its settings' functions, the
-- trigger that queues the deliveries when a job ends, and the row-level
-- security of schema/0027_reports.sql's tables.

CREATE OR REPLACE FUNCTION kiln.report_address_valid(p_email text)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
RETURN p_email IS NOT NULL AND pg_catalog.length(p_email) <= 254
       AND p_email OPERATOR(pg_catalog.~) '^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$';
COMMENT ON FUNCTION kiln.report_address_valid(text) IS 'True for a plain mail address kiln may put in a header: local@domain, letters, digits and ._%+- only (so no spaces, CR, LF or other control characters), at most 254 characters.';

CREATE OR REPLACE FUNCTION kiln.report_check_when(p_when text)
 RETURNS void
 LANGUAGE plpgsql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    IF p_when IS NULL OR p_when NOT IN ('always', 'failure', 'never') THEN
        RAISE EXCEPTION 'when to report: %, not one of always, failure, never', coalesce(p_when, 'nothing')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $function$;
COMMENT ON FUNCTION kiln.report_check_when(text) IS 'Raises unless p_when is always, failure or never. Called by the kiln.report_set* functions.';

CREATE OR REPLACE FUNCTION kiln.report_set_for(p_person name, p_email text, p_when text)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    IF p_email IS NOT NULL AND NOT kiln.report_address_valid(p_email) THEN
        RAISE EXCEPTION 'report address %: use a plain address such as alice@example.org', pg_catalog.quote_literal(p_email)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM kiln.report_check_when(p_when);
    INSERT INTO kiln.report_person AS r (person, email, report_when, set_by, set_at)
    VALUES (p_person, p_email, p_when, session_user, pg_catalog.now())
    ON CONFLICT (person) DO UPDATE SET email = EXCLUDED.email, report_when = EXCLUDED.report_when,
                                       set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at;
    INSERT INTO kiln.event (kind, detail)
    VALUES ('report.person', pg_catalog.jsonb_build_object('person', p_person, 'when', p_when));
END $function$;
COMMENT ON FUNCTION kiln.report_set_for(name, text, text) IS 'Sets where (a plain address, or NULL for none) and when (always, failure, never) p_person is told that their jobs ended, and records a report.person event. Called only by kiln.report_set and kiln.report_set_person; executable by no role.';

CREATE OR REPLACE FUNCTION kiln.report_set(p_email text, p_when text)
 RETURNS void
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
BEGIN ATOMIC
    SELECT kiln.report_set_for(session_user, p_email, p_when);
END;
COMMENT ON FUNCTION kiln.report_set(text, text) IS 'Sets the caller''s own report address and when they are told (kiln report set). Submitters and admins.';

CREATE OR REPLACE FUNCTION kiln.report_set_person(p_person name, p_email text, p_when text)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    IF NOT pg_catalog.pg_has_role(session_user, 'kiln_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only kiln admins set another person''s report address' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = p_person AND r.rolcanlogin) THEN
        RAISE EXCEPTION 'person % does not exist', p_person USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM kiln.report_set_for(p_person, p_email, p_when);
END $function$;
COMMENT ON FUNCTION kiln.report_set_person(name, text, text) IS 'An admin sets a person''s report address and when they are told (kiln admin report person). kiln_admin members only.';

CREATE OR REPLACE FUNCTION kiln.report_set_bucket(p_bucket text, p_emails text[], p_when text)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    e text;
BEGIN
    IF NOT pg_catalog.pg_has_role(session_user, 'kiln_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only kiln admins set a bucket''s report addresses' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM kiln.bucket b WHERE b.name = p_bucket) THEN
        RAISE EXCEPTION 'bucket % does not exist', p_bucket USING ERRCODE = 'no_data_found';
    END IF;
    FOREACH e IN ARRAY coalesce(p_emails, '{}') LOOP
        IF NOT kiln.report_address_valid(e) THEN
            RAISE EXCEPTION 'report address %: use a plain address such as team@example.org', pg_catalog.quote_literal(e)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    PERFORM kiln.report_check_when(p_when);
    INSERT INTO kiln.report_bucket (bucket, emails, report_when, set_by, set_at)
    VALUES (p_bucket, coalesce(p_emails, '{}'), p_when, session_user, pg_catalog.now())
    ON CONFLICT (bucket) DO UPDATE SET emails = EXCLUDED.emails, report_when = EXCLUDED.report_when,
                                       set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at;
    INSERT INTO kiln.event (kind, detail)
    VALUES ('report.bucket', pg_catalog.jsonb_build_object('bucket', p_bucket, 'when', p_when));
END $function$;
COMMENT ON FUNCTION kiln.report_set_bucket(text, text[], text) IS 'An admin sets the addresses told about every job of a bucket and when (kiln admin report bucket). kiln_admin members only.';

CREATE OR REPLACE FUNCTION kiln.report_webhook_add(p_url text, p_when text, p_bucket text, OUT id bigint, OUT secret text)
 RETURNS record
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    IF p_url IS NULL OR NOT (p_url OPERATOR(pg_catalog.~) '^https?://[^[:space:][:cntrl:]]+$' AND pg_catalog.length(p_url) <= 2000) THEN
        RAISE EXCEPTION 'webhook address %: use an http or https address without spaces', pg_catalog.quote_literal(coalesce(p_url, ''))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM kiln.report_check_when(p_when);
    IF p_bucket IS NOT NULL THEN
        IF NOT pg_catalog.pg_has_role(session_user, 'kiln_admin', 'MEMBER') THEN
            RAISE EXCEPTION 'only kiln admins add a bucket''s webhooks' USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM kiln.bucket b WHERE b.name = p_bucket) THEN
            RAISE EXCEPTION 'bucket % does not exist', p_bucket USING ERRCODE = 'no_data_found';
        END IF;
    END IF;
    INSERT INTO kiln.report_webhook (person, bucket, url, report_when, created_by)
    VALUES (CASE WHEN p_bucket IS NULL THEN session_user END, p_bucket, p_url, p_when, session_user)
    RETURNING kiln.report_webhook.id INTO id;
    secret := pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '') || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '');
    INSERT INTO kiln.report_webhook_secret (webhook_id, secret) VALUES (id, secret);
    INSERT INTO kiln.event (kind, detail)
    VALUES ('report.webhook', pg_catalog.jsonb_build_object('webhook', id, 'bucket', p_bucket, 'added', true));
END $function$;
COMMENT ON FUNCTION kiln.report_webhook_add(text, text, text) IS 'Adds a webhook for the caller''s own jobs (p_bucket NULL) or, for admins, for every job of a bucket; returns its number and its HMAC secret, which is shown this once and never readable again (kiln report webhook add). Submitters and admins.';

CREATE OR REPLACE FUNCTION kiln.report_webhook_remove(p_id bigint)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    DELETE FROM kiln.report_webhook w
     WHERE w.id = p_id AND (w.person = session_user OR pg_catalog.pg_has_role(session_user, 'kiln_admin', 'MEMBER'));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook % does not exist or is not yours', p_id USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO kiln.event (kind, detail) VALUES ('report.webhook', pg_catalog.jsonb_build_object('webhook', p_id, 'removed', true));
END $function$;
COMMENT ON FUNCTION kiln.report_webhook_remove(bigint) IS 'Removes a webhook: the caller''s own, or any for admins; "does not exist or is not yours" otherwise. Submitters and admins.';

-- When jobs end: who is told, and the River jobs that tell them, in the
-- transaction that gives the jobs their final status, so a report is never
-- lost. One River job sends a job's mail (one message, every mail
-- recipient), one per webhook POSTs it. The River jobs are inserted here in
-- SQL, as riverjob.ReportArgs describes them (kind report, queue report).
-- kiln.job_changed calls it once per statement, with the jobs that statement
-- ended: one look for all of them, not a trigger call and its statements per
-- job.
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

REVOKE EXECUTE ON FUNCTION kiln.report_check_when(text), kiln.report_set_for(name, text, text),
    kiln.report_set(text, text), kiln.report_set_person(name, text, text),
    kiln.report_set_bucket(text, text[], text), kiln.report_webhook_add(text, text, text),
    kiln.report_webhook_remove(bigint), kiln.job_request_reports(bigint[]) FROM PUBLIC;

-- Row-level security. Addresses and webhooks are personal: people read their
-- own; admins and kiln-reporter read all; secrets only kiln-reporter.
DROP POLICY IF EXISTS report_person_own ON kiln.report_person;
CREATE POLICY report_person_own ON kiln.report_person FOR SELECT TO kiln_reader USING (person = session_user);
COMMENT ON POLICY report_person_own ON kiln.report_person IS 'People read their own report setting.';

DROP POLICY IF EXISTS report_person_farm ON kiln.report_person;
CREATE POLICY report_person_farm ON kiln.report_person FOR SELECT TO kiln_admin, kiln_reporter USING (true);
COMMENT ON POLICY report_person_farm ON kiln.report_person IS 'Admins and kiln-reporter read every person''s report setting.';

DROP POLICY IF EXISTS job_report_address_own ON kiln.job_report_address;
CREATE POLICY job_report_address_own ON kiln.job_report_address FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id AND j.submitter = session_user));
COMMENT ON POLICY job_report_address_own ON kiln.job_report_address IS 'People read the --report addresses of their own jobs.';

DROP POLICY IF EXISTS job_report_address_submit ON kiln.job_report_address;
CREATE POLICY job_report_address_submit ON kiln.job_report_address FOR INSERT TO kiln_submitter
    WITH CHECK (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id AND j.submitter = session_user AND j.status = 'submitted'));
COMMENT ON POLICY job_report_address_submit ON kiln.job_report_address IS 'A person adds --report addresses only to their own job, while it is submitted (the submit transaction).';

DROP POLICY IF EXISTS job_report_address_farm ON kiln.job_report_address;
CREATE POLICY job_report_address_farm ON kiln.job_report_address FOR SELECT TO kiln_admin, kiln_reporter USING (true);
COMMENT ON POLICY job_report_address_farm ON kiln.job_report_address IS 'Admins and kiln-reporter read every job''s --report addresses.';

DROP POLICY IF EXISTS report_webhook_own ON kiln.report_webhook;
CREATE POLICY report_webhook_own ON kiln.report_webhook FOR SELECT TO kiln_reader USING (person = session_user);
COMMENT ON POLICY report_webhook_own ON kiln.report_webhook IS 'People read their own webhooks (never their secrets: kiln.report_webhook_secret).';

DROP POLICY IF EXISTS report_webhook_farm ON kiln.report_webhook;
CREATE POLICY report_webhook_farm ON kiln.report_webhook FOR SELECT TO kiln_admin, kiln_reporter USING (true);
COMMENT ON POLICY report_webhook_farm ON kiln.report_webhook IS 'Admins and kiln-reporter read every webhook.';

DROP POLICY IF EXISTS report_webhook_secret_reporter ON kiln.report_webhook_secret;
CREATE POLICY report_webhook_secret_reporter ON kiln.report_webhook_secret FOR SELECT TO kiln_reporter USING (true);
COMMENT ON POLICY report_webhook_secret_reporter ON kiln.report_webhook_secret IS 'Only kiln-reporter reads webhook secrets, to sign what it sends.';

DROP POLICY IF EXISTS report_delivery_own ON kiln.report_delivery;
CREATE POLICY report_delivery_own ON kiln.report_delivery FOR SELECT TO kiln_reader
    USING (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id AND j.submitter = session_user));
COMMENT ON POLICY report_delivery_own ON kiln.report_delivery IS 'People read the deliveries of their own jobs.';

DROP POLICY IF EXISTS report_delivery_admin ON kiln.report_delivery;
CREATE POLICY report_delivery_admin ON kiln.report_delivery FOR SELECT TO kiln_admin USING (true);
COMMENT ON POLICY report_delivery_admin ON kiln.report_delivery IS 'Admins read every delivery.';

DROP POLICY IF EXISTS report_delivery_reporter ON kiln.report_delivery;
CREATE POLICY report_delivery_reporter ON kiln.report_delivery FOR ALL TO kiln_reporter USING (true) WITH CHECK (true);
COMMENT ON POLICY report_delivery_reporter ON kiln.report_delivery IS 'kiln-reporter records deliveries (its grants: UPDATE of the outcome columns only).';

-- kiln-reporter reads every job it reports, private buckets' too.
DROP POLICY IF EXISTS job_read_reporter ON kiln.job;
CREATE POLICY job_read_reporter ON kiln.job FOR SELECT TO kiln_reporter USING (true);
COMMENT ON POLICY job_read_reporter ON kiln.job IS 'kiln-reporter reads every job (it reports private jobs to their own recipients).';
DROP POLICY IF EXISTS package_read_reporter ON kiln.package;
CREATE POLICY package_read_reporter ON kiln.package FOR SELECT TO kiln_reporter USING (true);
COMMENT ON POLICY package_read_reporter ON kiln.package IS 'kiln-reporter reads every job''s packages.';
DROP POLICY IF EXISTS task_read_reporter ON kiln.task;
CREATE POLICY task_read_reporter ON kiln.task FOR SELECT TO kiln_reporter USING (true);
COMMENT ON POLICY task_read_reporter ON kiln.task IS 'kiln-reporter reads every job''s tasks.';
DROP POLICY IF EXISTS attempt_read_reporter ON kiln.attempt;
CREATE POLICY attempt_read_reporter ON kiln.attempt FOR SELECT TO kiln_reporter USING (true);
COMMENT ON POLICY attempt_read_reporter ON kiln.attempt IS 'kiln-reporter reads every task''s attempts (failure stage).';
DROP POLICY IF EXISTS artifact_read_reporter ON kiln.artifact;
CREATE POLICY artifact_read_reporter ON kiln.artifact FOR SELECT TO kiln_reporter USING (true);
COMMENT ON POLICY artifact_read_reporter ON kiln.artifact IS 'kiln-reporter lists every task''s artifacts.';
DROP POLICY IF EXISTS log_chunk_read_reporter ON kiln.log_chunk;
CREATE POLICY log_chunk_read_reporter ON kiln.log_chunk FOR SELECT TO kiln_reporter USING (true);
COMMENT ON POLICY log_chunk_read_reporter ON kiln.log_chunk IS 'kiln-reporter quotes the last lines of failed logs.';

DROP POLICY IF EXISTS river_job_report ON river.river_job;
CREATE POLICY river_job_report ON river.river_job FOR ALL TO kiln_reporter
    USING (kind = 'report' AND queue = 'report') WITH CHECK (kind = 'report' AND queue = 'report');
COMMENT ON POLICY river_job_report ON river.river_job IS 'kiln-reporter sees and works only the report River jobs of queue report.';
