-- kiln submit --report ADDR (docs/reports.md): the addresses go into
-- kiln.job_report_address in the submit transaction, on one's own job while
-- it is submitted (row-level security, schema/current/14_reports.sql). In a
-- file of its own because kiln_submitter.sql starts by revoking every table
-- grant of kiln_submitter and sorts after kiln_reporter.sql.
GRANT INSERT (job_id, email) ON kiln.job_report_address TO kiln_submitter;
