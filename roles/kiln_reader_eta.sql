-- Where a task stands and when it will build (schema/current/16_eta.sql,
-- docs/queueing.md): people and the web read kiln.task_eta, a view over
-- kiln.task_eta_rows (kiln.task_eta_on for some platforms), which runs with the owner's rights to count every task
-- ahead (anonymously) and returns only the tasks the session may read. In a
-- file of its own, sorted after kiln_janitor.sql and kiln_reader.sql, whose
-- SELECT ON ALL TABLES would give the janitor a view it cannot use.
GRANT EXECUTE ON FUNCTION kiln.task_eta_rows(), kiln.task_eta_on(text[]) TO kiln_reader;
REVOKE ALL ON kiln.task_eta FROM kiln_janitor;
