-- Current state (docs/schema.md, "Migrations"): applied by schema.Migrate
-- after the numbered migrations, in one transaction, on every migrate.
-- Edit the definition here; never copy it into a numbered migration.
-- Fair share between submitters (docs/queueing.md): the trigger that gives
-- every build River job its turn.

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
