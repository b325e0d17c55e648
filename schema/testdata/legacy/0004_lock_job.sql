-- 0004_lock_job.sql: let roles without UPDATE on kiln.job take the job lock.
--
-- The task protocol (docs/protocol.md) locks the job row before changing a
-- task, so that builders, the janitor and cancel take their locks in one
-- order. SELECT ... FOR UPDATE needs UPDATE privilege on the table, which a
-- builder must not have; this function takes the lock on its behalf.

CREATE OR REPLACE FUNCTION kiln.lock_job(p_job_id bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
BEGIN
    PERFORM 1 FROM kiln.job WHERE id = p_job_id FOR UPDATE;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION kiln.lock_job(bigint) IS 'Locks a job row (FOR UPDATE) until the end of the transaction, for roles that may not update kiln.job; true when the job exists. Step one of every task change (docs/protocol.md).';
REVOKE EXECUTE ON FUNCTION kiln.lock_job(bigint) FROM PUBLIC;
