-- 0043_set_based_artifacts.sql: kiln.task_finish_many stores the artifacts
-- whose bytes come with the call in a few statements, whatever their
-- number (it stored each in three), and the blob quota trigger
-- (kiln.blob_quota) is statement-level, with a transition table: one
-- finish charges its new blobs at once (schema/current/10_functions.sql,
-- 30_triggers.sql). What is stored, and what is refused, is unchanged. No
-- table changes.
SELECT 1;
