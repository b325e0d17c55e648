-- 0045_job_end_requests.sql: a job's end asks for its publication and its
-- reports once per statement, not once per job: kiln.job_changed (the
-- statement-level trigger of job updates) calls kiln.job_request_publications
-- and kiln.job_request_reports with the jobs the statement ended, and the two
-- row-level triggers that did it job by job (job_request_publication,
-- job_request_report) and their functions go (schema/current/10_functions.sql,
-- 14_reports.sql). No table changes.
DROP TRIGGER IF EXISTS job_request_publication ON kiln.job;
DROP TRIGGER IF EXISTS job_request_report ON kiln.job;
DROP FUNCTION IF EXISTS kiln.job_request_publication();
DROP FUNCTION IF EXISTS kiln.job_request_report();
