-- 0007_janitor.sql: what the janitor needs beyond 0001.
--
-- The task protocol (docs/protocol.md) locks a job's row before changing its
-- tasks. SELECT ... FOR UPDATE needs the UPDATE privilege on the table, which
-- the janitor must not have on kiln.job; this function takes the lock for it
-- and changes nothing.
CREATE OR REPLACE FUNCTION kiln.lock_job(p_job_id bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
BEGIN
    PERFORM 1 FROM kiln.job WHERE id = p_job_id FOR UPDATE;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION kiln.lock_job(bigint) IS 'Locks a job''s row (FOR UPDATE) until the end of the calling transaction, the first step of every task change (docs/protocol.md); true when the job exists. For roles that may change tasks but not jobs.';
REVOKE EXECUTE ON FUNCTION kiln.lock_job(bigint) FROM PUBLIC;
