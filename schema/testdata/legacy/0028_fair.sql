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

-- A build River job that becomes available gets, as its scheduled_at, a
-- virtual time in the past (around 2000-01-01, so River may fetch it at
-- once), and River's own fetch order (priority, scheduled_at, id) makes
-- turns of it:
--   * a task's first River job gets the submitter's next turn: one turn
--     (1 ms of virtual time) after the submitter's previous one in that
--     queue and priority, but never before the queue's head (the earliest
--     turn still waiting), so a submitter with nothing waiting starts at the
--     head and an idle submitter saves up no turns;
--   * a River job that comes back (a task requeued after a loss, given back,
--     retried by River, re-inserted by the janitor for a task that was
--     built before) and any other kind in a build queue (environment River
--     jobs) goes to the head: it already had its turn.
CREATE OR REPLACE FUNCTION kiln.fair_turn()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    c_epoch CONSTANT timestamptz := '2000-01-01 00:00:00+00';
    c_turn CONSTANT interval := '1 millisecond';
    v_head timestamptz;
    v_submitter text;
    v_attempts integer;
BEGIN
    -- One probe of River's fetching index (state, queue, priority, scheduled_at, id).
    SELECT r.scheduled_at INTO v_head FROM river.river_job r
     WHERE r.state = 'available' AND r.queue = NEW.queue AND r.priority = NEW.priority AND r.id <> NEW.id
     ORDER BY r.scheduled_at, r.id LIMIT 1;
    IF v_head IS NULL THEN
        -- Nothing waits: carry on from the latest turn handed out.
        SELECT max(q.last_turn) INTO v_head FROM kiln.queue_turn q
         WHERE q.queue = NEW.queue AND q.priority = NEW.priority;
    END IF;
    v_head := coalesce(v_head, c_epoch);
    IF TG_OP = 'INSERT' AND NEW.kind = 'build' THEN
        SELECT t.attempt, j.submitter INTO v_attempts, v_submitter
          FROM kiln.task t JOIN kiln.job j ON j.id = t.job_id
         WHERE t.id = (NEW.args ->> 'task_id')::bigint;
        IF coalesce(v_attempts, 0) = 0 THEN
            INSERT INTO kiln.queue_turn AS q (queue, priority, submitter, last_turn)
            VALUES (NEW.queue, NEW.priority, coalesce(v_submitter, ''), v_head)
            ON CONFLICT (queue, priority, submitter)
            DO UPDATE SET last_turn = GREATEST(EXCLUDED.last_turn, q.last_turn + c_turn)
            RETURNING q.last_turn INTO NEW.scheduled_at;
            RETURN NEW;
        END IF;
    END IF;
    NEW.scheduled_at := v_head;
    RETURN NEW;
END $function$;
COMMENT ON FUNCTION kiln.fair_turn() IS 'Trigger on river.river_job (docs/queueing.md): a River job that becomes available in a build queue gets as scheduled_at a virtual time in the past: a task''s first build River job the submitter''s next turn in that queue and priority (kiln.queue_turn), anything else the queue''s head.';

CREATE OR REPLACE TRIGGER fair_turn_insert BEFORE INSERT ON river.river_job
    FOR EACH ROW WHEN (NEW.state = 'available' AND NEW.queue LIKE 'build-%')
    EXECUTE FUNCTION kiln.fair_turn();

CREATE OR REPLACE TRIGGER fair_turn_requeue BEFORE UPDATE OF state ON river.river_job
    FOR EACH ROW WHEN (NEW.state = 'available' AND OLD.state <> 'available' AND NEW.queue LIKE 'build-%')
    EXECUTE FUNCTION kiln.fair_turn();
