-- 0005_row_security.sql: row-level security.
--
-- The grants in roles/ say which tables and columns a role may touch; the
-- policies here say which rows:
--   * people read everything, except jobs in a private bucket, which only
--     their submitter, the bucket's grantees, admins and the farm's daemons
--     (splitter, builders, janitor) see, together with everything hanging off
--     those jobs (packages, tasks, attempts, logs, artifacts, events, blobs);
--   * a person adds packages only to their own job while it is submitted;
--   * a builder changes only its own builder rows and the tasks, attempts,
--     logs and artifacts of the builders it registered (kiln.builder.role =
--     session_user), and takes only pending tasks;
--   * cancelling goes through kiln.cancel_job/kiln.cancel_task, which check
--     the submitter; people hold no UPDATE grant on jobs or tasks at all.
--
-- The table owner (kiln_owner) is not subject to these policies (no FORCE), so
-- the SECURITY DEFINER trigger and cancel functions keep working for everyone.
-- A role without a policy for a command on one of these tables sees no rows
-- and changes none, whatever its grants.
--
-- blob_chunk has no policies: PostgreSQL refuses COPY into a table with
-- row-level security, and uploads stream into it with COPY. Its rows are
-- reachable only through a blob's SHA-256, which kiln.blob hides for private
-- jobs (see docs/kerberos.md for what that leaves open).
-- (Its functions, views, triggers and policies are current state in schema/current/:
-- docs/schema.md, "Migrations".)

ALTER TABLE kiln.job ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.package ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.package_file ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.task ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.attempt ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.log_chunk ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.artifact ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.event ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.blob ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.builder ENABLE ROW LEVEL SECURITY;

ALTER TABLE kiln.builder_platform ENABLE ROW LEVEL SECURITY;
