-- 0016_task_protocol.sql: the task protocol as SQL functions, its one owner.
--
-- Builders and the janitor no longer write kiln.task, kiln.attempt,
-- kiln.log_chunk or kiln.artifact themselves (roles/kiln_builder.sql and
-- roles/kiln_janitor.sql grant no INSERT or UPDATE on them). Every step of the
-- protocol is one SECURITY DEFINER function below, which checks the caller's
-- right to make it:
--
--   builder steps  the builder named is one of session_user's builders, and
--                  (after the take) the task is building with that attempt
--                  and that builder: the caller holds the attempt;
--   janitor steps  session_user is a member of kiln_janitor, and the task is
--                  re-checked under its lock.
--
-- Locks are taken in the protocol's order: the job row, then the task row.
-- Attempt rows are created only by kiln.task_take, which also numbers them,
-- so no attempt number can be squatted. The limit on losses (max_lost) lives
-- in kiln.protocol_setting, read by the functions; the River job changes the
-- protocol needs (available again on requeue, cancelled when a task ends as
-- lost or timed out) happen inside the same functions, in the same
-- transaction. Only inserting a new River job stays with River's client (the
-- janitor), which alone knows River's row format; kiln.task_link_river_job
-- then records it on the task.
--
-- The Go side is internal/task (one function per step); docs/protocol.md
-- states the rules.

------------------------------------------------------------------------------
-- Settings
------------------------------------------------------------------------------

CREATE TABLE kiln.protocol_setting (
    singleton  boolean PRIMARY KEY DEFAULT true CONSTRAINT protocol_setting_one_row CHECK (singleton),
    max_lost   integer NOT NULL DEFAULT 3 CONSTRAINT protocol_setting_max_lost_range CHECK (max_lost BETWEEN 0 AND 1000),
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE kiln.protocol_setting IS 'The task protocol''s limits, one row, read by the protocol functions (kiln.task_*). Changed with kiln.set_max_lost; nobody writes it directly.';
COMMENT ON COLUMN kiln.protocol_setting.singleton IS 'Always true: the table has exactly one row.';
COMMENT ON COLUMN kiln.protocol_setting.max_lost IS 'How many times a task may be lost (its builder went silent or crashed) and still be requeued; the next loss ends it as lost.';
COMMENT ON COLUMN kiln.protocol_setting.changed_at IS 'When the settings were last changed.';
COMMENT ON COLUMN kiln.protocol_setting.changed_by IS 'Who last changed them (session_user).';
INSERT INTO kiln.protocol_setting DEFAULT VALUES;

CREATE FUNCTION kiln.set_max_lost(p_max_lost integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    old integer;
BEGIN
    IF NOT pg_catalog.pg_has_role(session_user, 'kiln_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only a kiln_admin member may change max_lost' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_max_lost IS NULL OR p_max_lost NOT BETWEEN 0 AND 1000 THEN
        RAISE EXCEPTION 'max_lost must be between 0 and 1000, not %', p_max_lost USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.max_lost INTO old FROM kiln.protocol_setting s FOR UPDATE;
    UPDATE kiln.protocol_setting SET max_lost = p_max_lost, changed_at = pg_catalog.now(), changed_by = session_user;
    INSERT INTO kiln.event (kind, detail)
    VALUES ('protocol.setting', pg_catalog.jsonb_build_object('max_lost', p_max_lost, 'old_max_lost', old));
    RETURN old;
END $$;
COMMENT ON FUNCTION kiln.set_max_lost(integer) IS 'Sets kiln.protocol_setting.max_lost (kiln_admin members only) and records a protocol.setting event; returns the old value.';

------------------------------------------------------------------------------
-- Checks shared by the steps
------------------------------------------------------------------------------

-- The builder named must be registered by session_user's role.
CREATE FUNCTION kiln.task_check_builder(p_builder text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM kiln.builder b WHERE b.name = p_builder AND b.role = session_user) THEN
        RAISE EXCEPTION 'builder % is not one of the builders of role %', p_builder, session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;
COMMENT ON FUNCTION kiln.task_check_builder(text) IS 'Raises insufficient_privilege unless the builder is registered by session_user (kiln.builder.role): a builder daemon acts only for its own builders.';

CREATE FUNCTION kiln.task_check_janitor() RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(session_user, 'kiln_janitor', 'MEMBER') THEN
        RAISE EXCEPTION 'role % is not a member of kiln_janitor', session_user USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;
COMMENT ON FUNCTION kiln.task_check_janitor() IS 'Raises insufficient_privilege unless session_user is a member of kiln_janitor.';

REVOKE EXECUTE ON FUNCTION kiln.task_check_builder(text), kiln.task_check_janitor() FROM PUBLIC;

------------------------------------------------------------------------------
-- Builder steps
------------------------------------------------------------------------------

-- Step 1, take. outcome: taken (attempt is the new attempt's number),
-- not_pending (cancelled, finished or taken meanwhile: the River job ends
-- without a build), disabled (the builder was disabled), gone (the job or
-- the platform no longer exists).
CREATE FUNCTION kiln.task_take(p_builder text, p_task_id bigint, p_job_id bigint, p_platform text,
    OUT outcome text, OUT attempt integer, OUT policy text, OUT timeout_seconds double precision)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    enabled boolean;
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    PERFORM 1 FROM kiln.job j WHERE j.id = p_job_id FOR UPDATE;
    SELECT j.policy, extract(epoch FROM p.timeout)::double precision, b.enabled
      INTO policy, timeout_seconds, enabled
      FROM kiln.job j, kiln.platform p, kiln.builder b
     WHERE j.id = p_job_id AND p.name = p_platform AND b.name = p_builder;
    IF NOT FOUND THEN
        outcome := 'gone';
        RETURN;
    END IF;
    IF NOT enabled THEN
        outcome := 'disabled';
        RETURN;
    END IF;
    UPDATE kiln.task t SET status = 'building', builder = p_builder, attempt = t.attempt + 1,
           started_at = pg_catalog.now(), heartbeat_at = pg_catalog.now(), reason = NULL
     WHERE t.id = p_task_id AND t.job_id = p_job_id AND t.platform = p_platform AND t.status = 'pending'
    RETURNING t.attempt INTO task_take.attempt;
    IF NOT FOUND THEN
        outcome := 'not_pending';
        RETURN;
    END IF;
    INSERT INTO kiln.attempt (task_id, attempt, builder) VALUES (p_task_id, attempt, p_builder);
    outcome := 'taken';
END $$;
COMMENT ON FUNCTION kiln.task_take(text, bigint, bigint, text) IS 'Protocol step 1: one of session_user''s builders takes a pending task: the task becomes building with the next attempt number and the attempt row is created (the only way attempts are created). Returns the outcome, the attempt, the job''s policy and the platform''s timeout.';

-- Step 2, heartbeat, for every attempt a builder holds at once. Returns the
-- tasks whose attempt is no longer held (fenced off: cancelled, timed out,
-- declared lost). A task row someone else is changing right now is neither
-- beaten nor reported: the heartbeat never waits for a lock, so it cannot
-- deadlock with a cancel or the janitor (which lock the job first), and the
-- next round or the NOTIFY that follows the change tells.
CREATE FUNCTION kiln.task_heartbeat(p_builder text, p_task_ids bigint[], p_attempts integer[]) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    IF pg_catalog.cardinality(p_task_ids) IS DISTINCT FROM pg_catalog.cardinality(p_attempts) THEN
        RAISE EXCEPTION 'task_heartbeat: % tasks but % attempts', pg_catalog.cardinality(p_task_ids), pg_catalog.cardinality(p_attempts)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE kiln.task t SET heartbeat_at = pg_catalog.now()
     WHERE t.id IN (SELECT l.id FROM kiln.task l
                     JOIN unnest(p_task_ids, p_attempts) AS h(task_id, attempt)
                       ON l.id = h.task_id AND l.attempt = h.attempt
                    WHERE l.builder = p_builder AND l.status = 'building'
                    ORDER BY l.id FOR NO KEY UPDATE OF l SKIP LOCKED);
    RETURN QUERY
        SELECT h.task_id FROM unnest(p_task_ids, p_attempts) AS h(task_id, attempt)
         WHERE NOT EXISTS (SELECT 1 FROM kiln.task t WHERE t.id = h.task_id AND t.attempt = h.attempt
                                                      AND t.builder = p_builder AND t.status = 'building');
END $$;
COMMENT ON FUNCTION kiln.task_heartbeat(text, bigint[], integer[]) IS 'Protocol step 2: heartbeats the attempts (task ids and attempt numbers, pairwise) that one of session_user''s builders holds; returns the task ids whose attempt it no longer holds (its build must stop). Never waits for a row lock.';

-- Step 3, log: one batch, stored only while the attempt is held.
CREATE FUNCTION kiln.task_log(p_builder text, p_task_id bigint, p_attempt integer, p_seq integer, p_data text, p_truncated boolean)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    PERFORM 1 FROM kiln.task t
     WHERE t.id = p_task_id AND t.attempt = p_attempt AND t.builder = p_builder AND t.status = 'building';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO kiln.log_chunk (task_id, attempt, seq, data) VALUES (p_task_id, p_attempt, p_seq, p_data);
    UPDATE kiln.attempt a SET log_bytes = a.log_bytes + pg_catalog.octet_length(p_data),
           log_truncated = a.log_truncated OR coalesce(p_truncated, false)
     WHERE a.task_id = p_task_id AND a.attempt = p_attempt;
    RETURN true;
END $$;
COMMENT ON FUNCTION kiln.task_log(text, bigint, integer, integer, text, boolean) IS 'Protocol step 3: stores one log batch of an attempt that one of session_user''s builders holds and counts its bytes on the attempt; false (nothing stored) when the attempt is not held.';

-- Step 4, finish: artifacts (their blobs stored before, in the same
-- transaction), the attempt's build info and final status, the task's final
-- status. Refused (false, nothing written) unless the attempt is held.
CREATE FUNCTION kiln.task_finish(p_builder text, p_task_id bigint, p_attempt integer, p_status text, p_reason text,
    p_build_info jsonb, p_log_truncated boolean,
    p_artifact_kinds text[], p_artifact_names text[], p_artifact_sha256s bytea[], p_artifact_sizes bigint[])
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    v_job bigint;
    bad text;
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    IF p_status IS NULL OR p_status NOT IN ('succeeded', 'failed', 'timed_out') THEN
        RAISE EXCEPTION 'a builder finishes a task as succeeded, failed or timed_out, not %', p_status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.cardinality(p_artifact_kinds) IS DISTINCT FROM pg_catalog.cardinality(p_artifact_names)
       OR pg_catalog.cardinality(p_artifact_kinds) IS DISTINCT FROM pg_catalog.cardinality(p_artifact_sha256s)
       OR pg_catalog.cardinality(p_artifact_kinds) IS DISTINCT FROM pg_catalog.cardinality(p_artifact_sizes) THEN
        RAISE EXCEPTION 'task_finish: the artifact arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT t.job_id INTO v_job FROM kiln.task t WHERE t.id = p_task_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM 1 FROM kiln.job j WHERE j.id = v_job FOR UPDATE;
    PERFORM 1 FROM kiln.task t
     WHERE t.id = p_task_id AND t.attempt = p_attempt AND t.builder = p_builder AND t.status = 'building'
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- An artifact names bytes that exist, with their true size.
    SELECT a.name INTO bad
      FROM unnest(p_artifact_names, p_artifact_sha256s, p_artifact_sizes) AS a(name, sha256, size)
     WHERE NOT EXISTS (SELECT 1 FROM kiln.blob b WHERE b.sha256 = a.sha256 AND b.size = a.size)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'artifact %: no stored blob with that sha256 and size', bad USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, blob_sha256, size)
    SELECT p_task_id, p_attempt, a.kind, a.name, a.sha256, a.size
      FROM unnest(p_artifact_kinds, p_artifact_names, p_artifact_sha256s, p_artifact_sizes) AS a(kind, name, sha256, size);
    -- The attempt ends first, then the task (and with it the job): the
    -- history reads in that order.
    UPDATE kiln.attempt a SET status = p_status, finished_at = pg_catalog.now(), reason = p_reason, build_info = p_build_info,
           log_truncated = a.log_truncated OR coalesce(p_log_truncated, false)
     WHERE a.task_id = p_task_id AND a.attempt = p_attempt;
    UPDATE kiln.task SET status = p_status, builder = NULL, finished_at = pg_catalog.now(), reason = p_reason
     WHERE id = p_task_id;
    RETURN true;
END $$;
COMMENT ON FUNCTION kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[]) IS 'Protocol step 4: one of session_user''s builders ends the attempt it holds as succeeded, failed or timed_out, with its artifacts (kinds, names, sha256s and sizes pairwise; the blobs must be stored) and build info. False, and nothing written, when the attempt is not held.';

-- Step 5, give back (the builder shuts down): the task waits again, the
-- attempt is recorded as returned and not counted as lost. The River job is
-- snoozed by the builder's River client (river.JobSnooze(0)).
CREATE FUNCTION kiln.task_give_back(p_builder text, p_task_id bigint, p_attempt integer) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    v_job bigint;
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    SELECT t.job_id INTO v_job FROM kiln.task t WHERE t.id = p_task_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM 1 FROM kiln.job j WHERE j.id = v_job FOR UPDATE;
    UPDATE kiln.task t SET status = 'pending', builder = NULL, started_at = NULL, heartbeat_at = NULL
     WHERE t.id = p_task_id AND t.attempt = p_attempt AND t.builder = p_builder AND t.status = 'building';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE kiln.attempt a SET status = 'returned', finished_at = pg_catalog.now(),
           reason = 'given back: builder ' || p_builder || ' shut down'
     WHERE a.task_id = p_task_id AND a.attempt = p_attempt AND a.status = 'building';
    RETURN true;
END $$;
COMMENT ON FUNCTION kiln.task_give_back(text, bigint, integer) IS 'Protocol step 5: one of session_user''s builders gives back the attempt it holds on shutdown: the task is pending again, the attempt returned (not counted as lost). False when the attempt is not held.';

------------------------------------------------------------------------------
-- Losing an attempt: requeue, or end lost past max_lost
------------------------------------------------------------------------------

-- Shared by the janitor (a silent builder) and a restarted builder (its
-- crashed run's attempts). The caller has locked the job and the task and
-- checked that the attempt is current. Writes an event of kind p_requeued
-- or p_ended, as the task is requeued or ended.
CREATE FUNCTION kiln.task_lose(p_task kiln.task, p_why text, p_requeued text, p_ended text, p_detail jsonb,
    OUT outcome text, OUT lost_count integer, OUT river_job_state text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    max_lost integer;
    losses integer;
    queue text;
    ended_why text;
    detail jsonb;
BEGIN
    SELECT s.max_lost INTO max_lost FROM kiln.protocol_setting s;
    losses := p_task.lost_count + 1;
    lost_count := losses;
    UPDATE kiln.attempt a SET status = 'lost', finished_at = pg_catalog.now(), reason = p_why
     WHERE a.task_id = p_task.id AND a.attempt = p_task.attempt AND a.status = 'building';
    detail := coalesce(p_detail, '{}') || pg_catalog.jsonb_build_object('reason', p_why, 'lost_count', losses,
                                                                         'max_lost', max_lost, 'river_job_id', p_task.river_job_id);
    IF lost_count > max_lost THEN
        outcome := 'lost';
        ended_why := pg_catalog.format('lost %s times (more than %s); last time %s', losses, max_lost, p_why);
        UPDATE kiln.task t SET status = 'lost', builder = NULL, lost_count = losses,
               finished_at = pg_catalog.now(), reason = ended_why
         WHERE t.id = p_task.id;
        UPDATE river.river_job r SET state = 'cancelled', finalized_at = pg_catalog.now()
         WHERE r.id = p_task.river_job_id AND r.state NOT IN ('cancelled', 'completed', 'discarded');
        river_job_state := CASE WHEN FOUND THEN 'cancelled' ELSE 'not_cancelled' END;
        detail := detail || pg_catalog.jsonb_build_object('reason', ended_why, 'river_job_cancelled', river_job_state = 'cancelled');
    ELSE
        outcome := 'pending';
        UPDATE kiln.task t SET status = 'pending', builder = NULL, lost_count = losses, reason = p_why
         WHERE t.id = p_task.id;
        -- Its River job available again at once (max_attempts raised past
        -- its attempts, so River never discards a requeued task), and the
        -- queue's builders woken as River's own insert would.
        UPDATE river.river_job r SET state = 'available', scheduled_at = pg_catalog.now(), finalized_at = NULL,
               max_attempts = greatest(r.max_attempts, r.attempt + 1)
         WHERE r.id = p_task.river_job_id AND r.kind = 'build' AND r.args ->> 'task_id' = p_task.id::text
        RETURNING r.queue INTO queue;
        IF FOUND THEN
            river_job_state := 'made_available';
            PERFORM pg_catalog.pg_notify('river.river_insert', pg_catalog.json_build_object('queue', queue)::text);
        ELSE
            river_job_state := 'missing';
        END IF;
        detail := detail || pg_catalog.jsonb_build_object('river_job', river_job_state);
    END IF;
    INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
    VALUES (CASE outcome WHEN 'lost' THEN p_ended ELSE p_requeued END, p_task.job_id, p_task.id, p_task.attempt, p_task.builder, 'building', outcome, detail);
END $$;
COMMENT ON FUNCTION kiln.task_lose(kiln.task, text, text, text, jsonb) IS 'Closes a task''s current attempt as lost and requeues the task (River job available again) or, past kiln.protocol_setting.max_lost, ends it as lost (River job cancelled); records the event. Called only by kiln.task_take_back_lost and kiln.task_recover, which lock and check first; executable by no role.';
REVOKE EXECUTE ON FUNCTION kiln.task_lose(kiln.task, text, text, text, jsonb) FROM PUBLIC;

-- Step 6, recover: a restarted builder gives back what its crashed run
-- left building (docs/builder.md), as the janitor would for a silent one.
CREATE FUNCTION kiln.task_recover(p_builder text, p_task_id bigint, p_attempt integer,
    OUT outcome text, OUT lost_count integer, OUT river_job_state text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    t kiln.task%ROWTYPE;
    why text;
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    SELECT * INTO t FROM kiln.task l WHERE l.id = p_task_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM kiln.job j WHERE j.id = t.job_id FOR UPDATE;
    SELECT * INTO t FROM kiln.task l
     WHERE l.id = p_task_id AND l.attempt = p_attempt AND l.builder = p_builder AND l.status = 'building'
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN; -- the janitor or a cancel was quicker
    END IF;
    why := pg_catalog.format('builder %s restarted: the build of attempt %s died with its previous run', p_builder, p_attempt);
    SELECT l.outcome, l.lost_count, l.river_job_state INTO outcome, lost_count, river_job_state
      FROM kiln.task_lose(t, why, 'builder.recover', 'builder.recover', '{}') l;
END $$;
COMMENT ON FUNCTION kiln.task_recover(text, bigint, integer) IS 'Protocol step 6: one of session_user''s builders, restarted, gives back an attempt its crashed previous run left: lost, and the task requeued or ended as lost past max_lost (builder.recover event). outcome is pending, lost, or NULL when the attempt was no longer held.';

------------------------------------------------------------------------------
-- Janitor steps
------------------------------------------------------------------------------

-- Step 7, take back a lost task: building with no heartbeat for p_horizon,
-- re-checked under the locks. outcome: pending (requeued), lost (ended), or
-- NULL (it heart-beat, finished, or another janitor took it).
CREATE FUNCTION kiln.task_take_back_lost(p_task_id bigint, p_horizon interval,
    OUT outcome text, OUT attempt integer, OUT builder text, OUT lost_count integer, OUT river_job_state text,
    OUT river_job_id bigint, OUT platform text, OUT priority smallint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    t kiln.task%ROWTYPE;
    silent interval;
    why text;
BEGIN
    PERFORM kiln.task_check_janitor();
    SELECT * INTO t FROM kiln.task l WHERE l.id = p_task_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM kiln.job j WHERE j.id = t.job_id FOR UPDATE;
    SELECT * INTO t FROM kiln.task l
     WHERE l.id = p_task_id AND l.status = 'building' AND l.heartbeat_at < pg_catalog.now() - p_horizon
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    silent := pg_catalog.date_trunc('second', pg_catalog.now() - t.heartbeat_at);
    why := pg_catalog.format('builder %s went silent: it stopped heart-beating %s ago (horizon %s)', t.builder, silent, p_horizon);
    SELECT l.outcome, l.lost_count, l.river_job_state INTO outcome, lost_count, river_job_state
      FROM kiln.task_lose(t, why, 'janitor.requeue', 'janitor.lost',
                          pg_catalog.jsonb_build_object('silent_seconds', extract(epoch FROM silent)::bigint)) l;
    attempt := t.attempt;
    builder := t.builder;
    river_job_id := t.river_job_id;
    platform := t.platform;
    SELECT j.priority INTO priority FROM kiln.job j WHERE j.id = t.job_id;
END $$;
COMMENT ON FUNCTION kiln.task_take_back_lost(bigint, interval) IS 'Protocol step 7 (kiln_janitor members): takes a task back from a builder silent for longer than p_horizon, re-checked under the job''s and the task''s lock: requeued (janitor.requeue) or, past max_lost, ended as lost (janitor.lost). river_job_state missing means the task needs a new River job (kiln.task_link_river_job).';

-- Step 8, time out a runaway build: building longer than its platform's
-- timeout plus p_grace, whether or not its builder heart-beats.
CREATE FUNCTION kiln.task_time_out(p_task_id bigint, p_grace interval,
    OUT ended boolean, OUT attempt integer, OUT builder text, OUT river_job_id bigint, OUT river_job_cancelled boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    t kiln.task%ROWTYPE;
    timeout interval;
    ran interval;
    why text;
BEGIN
    PERFORM kiln.task_check_janitor();
    ended := false;
    SELECT * INTO t FROM kiln.task l WHERE l.id = p_task_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM kiln.job j WHERE j.id = t.job_id FOR UPDATE;
    SELECT l.* INTO t FROM kiln.task l JOIN kiln.platform p ON p.name = l.platform
     WHERE l.id = p_task_id AND l.status = 'building' AND l.started_at < pg_catalog.now() - p.timeout - p_grace
       FOR UPDATE OF l;
    IF NOT FOUND THEN
        RETURN; -- finished or taken care of meanwhile
    END IF;
    SELECT p.timeout INTO timeout FROM kiln.platform p WHERE p.name = t.platform;
    ran := pg_catalog.date_trunc('second', pg_catalog.now() - t.started_at);
    why := pg_catalog.format('ran %s, past the platform timeout %s plus grace %s; ended by the janitor', ran, timeout, p_grace);
    UPDATE kiln.attempt a SET status = 'timed_out', finished_at = pg_catalog.now(), reason = why
     WHERE a.task_id = t.id AND a.attempt = t.attempt AND a.status = 'building';
    UPDATE kiln.task l SET status = 'timed_out', builder = NULL, finished_at = pg_catalog.now(), reason = why
     WHERE l.id = t.id;
    UPDATE river.river_job r SET state = 'cancelled', finalized_at = pg_catalog.now()
     WHERE r.id = t.river_job_id AND r.state NOT IN ('cancelled', 'completed', 'discarded');
    river_job_cancelled := FOUND;
    INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
    VALUES ('janitor.timeout', t.job_id, t.id, t.attempt, t.builder, 'building', 'timed_out',
            pg_catalog.jsonb_build_object('reason', why, 'ran_seconds', extract(epoch FROM ran)::bigint,
                                          'river_job_id', t.river_job_id, 'river_job_cancelled', river_job_cancelled));
    ended := true;
    attempt := t.attempt;
    builder := t.builder;
    river_job_id := t.river_job_id;
END $$;
COMMENT ON FUNCTION kiln.task_time_out(bigint, interval) IS 'Protocol step 8 (kiln_janitor members): ends a build running longer than its platform''s timeout plus p_grace, re-checked under the locks: attempt and task timed_out, River job cancelled, janitor.timeout event. ended is false when there was nothing to do.';

-- A pending task's new River job (inserted by River's client in the same
-- transaction) becomes the task's.
CREATE FUNCTION kiln.task_link_river_job(p_task_id bigint, p_river_job_id bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    PERFORM kiln.task_check_janitor();
    IF NOT EXISTS (SELECT 1 FROM river.river_job r
                    WHERE r.id = p_river_job_id AND r.kind = 'build' AND r.args ->> 'task_id' = p_task_id::text) THEN
        RAISE EXCEPTION 'River job % is not a build River job of task %', p_river_job_id, p_task_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE kiln.task t SET river_job_id = p_river_job_id WHERE t.id = p_task_id AND t.status = 'pending';
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION kiln.task_link_river_job(bigint, bigint) IS 'Records a new build River job of a pending task as its River job (kiln_janitor members; the River job must be a build River job of that task). False when the task is not pending.';

------------------------------------------------------------------------------
-- Execution: nobody by default; roles/kiln_builder.sql and
-- roles/kiln_janitor.sql grant their steps.
------------------------------------------------------------------------------

REVOKE EXECUTE ON FUNCTION
    kiln.set_max_lost(integer),
    kiln.task_take(text, bigint, bigint, text),
    kiln.task_heartbeat(text, bigint[], integer[]),
    kiln.task_log(text, bigint, integer, integer, text, boolean),
    kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[]),
    kiln.task_give_back(text, bigint, integer),
    kiln.task_recover(text, bigint, integer),
    kiln.task_take_back_lost(bigint, interval),
    kiln.task_time_out(bigint, interval),
    kiln.task_link_river_job(bigint, bigint)
FROM PUBLIC;
-- Admins change the limit (roles/kiln_admin.sql belongs with it; granted here
-- so that the function is usable as soon as it exists).
GRANT EXECUTE ON FUNCTION kiln.set_max_lost(integer) TO kiln_admin;

------------------------------------------------------------------------------
-- The transition guard, safe from shadowing
------------------------------------------------------------------------------

-- It ran with the caller's search_path, in which pg_temp comes first: a
-- temporary view named pg_roles saying rolsuper = true switched it off. Now
-- its search_path is fixed (pg_temp last) and every name is qualified.
-- Builders and the janitor no longer update tasks at all (their grants);
-- what remains for the farm's roles is the splitter's: inserting a task
-- pending or skipped, and linking a task to its River job without changing
-- its status, attempt, losses or builder. Every other move is made by the
-- protocol functions above, as the owner.
CREATE OR REPLACE FUNCTION kiln.task_transition_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    ok boolean;
BEGIN
    IF current_user = 'kiln_owner'
       OR coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user), false) THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        ok := NEW.status IN ('pending', 'skipped') AND NEW.attempt = 0 AND NEW.lost_count = 0 AND NEW.builder IS NULL;
    ELSE
        ok := NEW.status = OLD.status AND NEW.attempt = OLD.attempt AND NEW.lost_count = OLD.lost_count
              AND NEW.builder IS NOT DISTINCT FROM OLD.builder;
    END IF;
    IF NOT ok THEN
        RAISE EXCEPTION 'task %: % is not a move % may make (docs/protocol.md)', NEW.id,
            CASE WHEN TG_OP = 'INSERT' THEN 'inserting it as ' || NEW.status
                 ELSE pg_catalog.format('%s (attempt %s) -> %s (attempt %s)', OLD.status, OLD.attempt, NEW.status, NEW.attempt) END,
            session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION kiln.task_transition_guard() IS 'Refuses task inserts and changes of status, attempt, losses or builder by anyone but the owner (the protocol functions kiln.task_*, cancelling) and superusers; the splitter inserts pending or skipped tasks and links River jobs. Immune to search_path tricks: fixed search_path, qualified names.';
