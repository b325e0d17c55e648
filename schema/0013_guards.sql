-- 0013_guards.sql: narrower rights where the grants alone were too broad.
--
--   * River jobs: people insert only the validate River job of their own
--     submitted job and change no River job at all; the daemons keep what
--     River needs (row-level security on river.river_job).
--   * Tasks move only along the task protocol (docs/protocol.md); a trigger
--     refuses any other change of status or attempt by the farm's roles.
--   * The splitter records validation only on jobs still waiting for it; the
--     janitor may give up on a job whose validation never completes.
--   * Events are written by the triggers (as the owner) and by the janitor,
--     whose own events are janitor.* only.
-- (Its functions, views, triggers and policies are current state in schema/current/:
-- docs/schema.md, "Migrations".)

ALTER TABLE river.river_job ENABLE ROW LEVEL SECURITY;
