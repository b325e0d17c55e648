-- 0031_lean_finish.sql: the lean data path (docs/scaling.md, "The data
-- path"). A builder's finish is one statement: kiln.task_finish
-- (schema/current/10_functions.sql) also stores the end of the log and the
-- bytes of small artifacts. No table changes; the log bytes an attempt
-- counts now include the end of the log stored with the finish.
COMMENT ON COLUMN kiln.attempt.log_bytes IS 'Bytes of log stored for the attempt (kiln.task_log batches and the end stored by kiln.task_finish).';
