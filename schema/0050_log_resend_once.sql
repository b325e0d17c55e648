-- 0050_log_resend_once.sql: kiln.task_log_many stores a log batch sent
-- again under its number (the builder's first send lost its answer with
-- the connection, as at a failover, and may have committed) once, and
-- counts its bytes once; other text under a stored number is refused
-- (schema/current/10_functions.sql). Before, the resend failed on the
-- primary key, and the builder, which had folded the batch into its next
-- one, could never finish the attempt. No table changes.
SELECT 1;
