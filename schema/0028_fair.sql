-- 0028_fair.sql: fair turns between submitters in every build queue.
--
-- Within a priority, the build River jobs of different submitters take
-- turns: River's fetch order (priority, scheduled_at, id) stays the queue,
-- and kiln.fair_turn (schema/current/15_fair.sql), a trigger on
-- river.river_job, sets a build River job's scheduled_at to a virtual time
-- in the past when it becomes available. This table remembers, per build
-- queue, priority and submitter, the last virtual time handed out. See
-- docs/queueing.md.

CREATE TABLE kiln.queue_turn (
    queue     text NOT NULL,
    priority  smallint NOT NULL,
    submitter text NOT NULL,
    last_turn timestamptz NOT NULL,
    PRIMARY KEY (queue, priority, submitter)
);
COMMENT ON TABLE kiln.queue_turn IS 'Fair share (docs/queueing.md): per build River queue, River priority and submitter, the virtual time of the submitter''s latest build River job; written only by the trigger function kiln.fair_turn.';
COMMENT ON COLUMN kiln.queue_turn.queue IS 'The River queue, build-<platform>.';
COMMENT ON COLUMN kiln.queue_turn.priority IS 'The River priority (the job''s priority, 1 most urgent to 4).';
COMMENT ON COLUMN kiln.queue_turn.submitter IS 'The role that submitted the jobs (kiln.job.submitter).';
COMMENT ON COLUMN kiln.queue_turn.last_turn IS 'The virtual time (a scheduled_at around 2000-01-01) given to the submitter''s latest build River job in the queue; the next one gets the later of this plus one turn and the queue''s head.';

-- Build River jobs already waiting keep their order but move into the
-- virtual time line, ahead of everything enqueued from now on at their
-- priority, so that none waits behind the new turns.
UPDATE river.river_job r SET scheduled_at = '2000-01-01 00:00:00+00'::timestamptz + o.n * interval '1 millisecond'
  FROM (SELECT id, row_number() OVER (PARTITION BY queue, priority ORDER BY scheduled_at, id) AS n
          FROM river.river_job
         WHERE state = 'available' AND queue LIKE 'build-%') o
 WHERE r.id = o.id;
