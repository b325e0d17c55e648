-- 0024_failure_stage.sql: where a build failed, as data, and retries of the
-- farm's own faults.
--
-- A failed attempt names its stage from a fixed vocabulary
-- (kiln.failure_stage). Each stage says whether a failure there is the
-- farm's (infrastructure: the environment could not be fetched, the mirror
-- did not answer, the work directory is full) or the package's (it does not
-- build, its build dependencies cannot be met). kiln.task_finish retries
-- the farm's faults automatically, with backoff and preferably on another
-- builder, up to the platform's max_infra_retries; the package's faults end
-- the task. See docs/protocol.md ("Retries") and docs/reporting.md.
-- (Functions and views: schema/current/10_functions.sql and
-- 21_stages.sql.)

CREATE TABLE kiln.failure_stage (
    name           text PRIMARY KEY,
    infrastructure boolean NOT NULL,
    description    text NOT NULL
);
COMMENT ON TABLE kiln.failure_stage IS 'The fixed vocabulary of failure stages: where a failed attempt failed, and whether a failure there is the farm''s fault (retried) or the package''s (not retried).';
COMMENT ON COLUMN kiln.failure_stage.name IS 'The stage, as kiln.attempt.failure_stage and kiln.task.failure_stage name it.';
COMMENT ON COLUMN kiln.failure_stage.infrastructure IS 'True when a failure at this stage is the farm''s fault, not the package''s: kiln.task_finish retries it (up to kiln.platform.max_infra_retries).';
COMMENT ON COLUMN kiln.failure_stage.description IS 'What the stage is, for people.';
INSERT INTO kiln.failure_stage (name, infrastructure, description) VALUES
    ('fetch-sources', false, 'unpacking the submitted sources (a broken source package)'),
    ('prepare-environment', true, 'fetching the sources, repository keys or build environment from the farm, unpacking the environment, or starting the sandbox'),
    ('install-build-deps', true, 'installing the build dependencies failed although they are satisfiable (mirror unreachable, apt failed)'),
    ('unsatisfiable', false, 'the build dependencies cannot be met by any package available'),
    ('build', false, 'the package''s own build failed'),
    ('collect-artifacts', false, 'the build ended without the results it should leave'),
    ('upload', true, 'storing the results in the farm failed'),
    ('out-of-disk', true, 'the builder''s work directory ran out of space');
GRANT SELECT ON kiln.failure_stage TO kiln_reader;

ALTER TABLE kiln.attempt
    ADD COLUMN failure_stage text REFERENCES kiln.failure_stage (name),
    ADD COLUMN retried boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT attempt_failure_stage_when_failed CHECK (failure_stage IS NULL OR status = 'failed'),
    ADD CONSTRAINT attempt_retried_when_failed CHECK (NOT retried OR status = 'failed');
COMMENT ON COLUMN kiln.attempt.failure_stage IS 'Where a failed attempt failed (kiln.failure_stage), as its builder said; NULL for attempts that did not fail or whose builder named no stage.';
COMMENT ON COLUMN kiln.attempt.retried IS 'True when the attempt failed for the farm''s fault and the task was requeued for another attempt (kiln.task_finish).';

ALTER TABLE kiln.task
    ADD COLUMN failure_stage text REFERENCES kiln.failure_stage (name),
    ADD COLUMN infra_retries integer NOT NULL DEFAULT 0 CONSTRAINT task_infra_retries_nonnegative CHECK (infra_retries >= 0),
    ADD COLUMN avoid_builder text,
    ADD COLUMN avoid_until timestamptz;
COMMENT ON COLUMN kiln.task.failure_stage IS 'The failure stage of the task''s last failed attempt (kiln.failure_stage); NULL while it has none or once it succeeded.';
COMMENT ON COLUMN kiln.task.infra_retries IS 'How many times the task was retried because an attempt failed for the farm''s fault.';
COMMENT ON COLUMN kiln.task.avoid_builder IS 'The builder whose attempt failed for the farm''s fault last: until avoid_until, kiln.task_take lets it take the task only when no other builder of the platform is online.';
COMMENT ON COLUMN kiln.task.avoid_until IS 'Until when avoid_builder is avoided.';

ALTER TABLE kiln.platform
    ADD COLUMN max_infra_retries integer NOT NULL DEFAULT 3
        CONSTRAINT platform_max_infra_retries_range CHECK (max_infra_retries BETWEEN 0 AND 100),
    ADD COLUMN infra_retry_backoff interval NOT NULL DEFAULT '30 seconds'
        CONSTRAINT platform_infra_retry_backoff_range CHECK (infra_retry_backoff BETWEEN '0 seconds' AND '1 day');
COMMENT ON COLUMN kiln.platform.max_infra_retries IS 'How many times a task of the platform is retried after attempts that failed for the farm''s fault (kiln.failure_stage.infrastructure); the next such failure ends it as failed. 0 turns retries off.';
COMMENT ON COLUMN kiln.platform.infra_retry_backoff IS 'The wait before the first retry of a farm''s fault; it doubles with each further retry (at most one hour).';
