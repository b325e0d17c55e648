-- kiln_reporter: kiln-reporter, which tells people that their jobs ended:
-- one mail per job and the webhooks (docs/reports.md). It reads the job and
-- what it reports (packages, tasks, attempts, artifacts, the last lines of
-- failed logs), the recipients and the webhooks' secrets, works the report
-- River jobs (row-level security: kind report in queue report, nothing
-- else) and records each delivery's outcome. It changes no job, task or
-- attempt, inserts no River job and reads no blob.
-- Start from nothing, so that applying this file again also withdraws what
-- it no longer grants (kiln admin roles apply).
REVOKE ALL ON ALL TABLES IN SCHEMA kiln, river FROM kiln_reporter;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA kiln, river FROM kiln_reporter;
GRANT USAGE ON SCHEMA kiln, river TO kiln_reporter;

-- What a report says.
GRANT SELECT ON kiln.job, kiln.package, kiln.task, kiln.attempt, kiln.artifact, kiln.log_chunk,
                kiln.bucket, kiln.farm_setting TO kiln_reporter;
-- Whom it tells, and how.
GRANT SELECT ON kiln.report_person, kiln.report_bucket, kiln.job_report_address, kiln.report_webhook,
                kiln.report_webhook_secret TO kiln_reporter;
GRANT SELECT, UPDATE (status, tries, last_error, message_id, sent_at) ON kiln.report_delivery TO kiln_reporter;

-- River: a working client of queue report (fetch, complete, retry, snooze
-- update river_job; queues are upserted into river_queue). No INSERT: the
-- report River jobs are inserted by kiln.job_request_reports.
GRANT SELECT, UPDATE ON river.river_job TO kiln_reporter;
GRANT SELECT, INSERT, UPDATE ON river.river_queue TO kiln_reporter;

-- Webhook secrets are for kiln-reporter alone. kiln_reader.sql and
-- kiln_janitor.sql sort before this file and grant SELECT ON ALL TABLES;
-- take this one back (row-level security shows them no row of it anyway).
REVOKE ALL ON kiln.report_webhook_secret FROM kiln_reader, kiln_janitor;

-- The settings: one's own (submitters) and, for admins, anyone's and a
-- bucket's. The checks are inside the functions.
GRANT EXECUTE ON FUNCTION kiln.report_set(text, text), kiln.report_webhook_add(text, text, text),
    kiln.report_webhook_remove(bigint) TO kiln_submitter;
GRANT EXECUTE ON FUNCTION kiln.report_set_person(name, text, text), kiln.report_set_bucket(text, text[], text) TO kiln_admin;
