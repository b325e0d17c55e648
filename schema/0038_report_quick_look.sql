-- 0038_report_quick_look.sql: kiln.job_request_report (schema/current/
-- 14_reports.sql) returns at once when nobody is to be told of a job's end
-- (docs/scaling.md, "The report trigger's quick look"). No table changes.
SELECT 1;
