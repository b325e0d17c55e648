-- 00-groups.sql: the group roles. Idempotent; run before `kiln admin migrate`.
--
-- kiln_owner owns schemas kiln and river and every object in them; nobody logs
-- in as it: `kiln admin migrate` switches to it (SET ROLE) when the migrating
-- login is a member. The other roles are what processes and people log in as,
-- through login roles that are members of them (see README.md).
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['kiln_owner', 'kiln_reader', 'kiln_submitter', 'kiln_splitter',
                             'kiln_builder', 'kiln_janitor', 'kiln_admin', 'kiln_web', 'kiln_publisher', 'kiln_reporter'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END $$;

-- Admins may switch to the owner (SET ROLE, as kiln admin migrate and kiln
-- admin roles apply do) but do not hold its rights otherwise: kiln_migrator
-- is NOINHERIT, so membership through it gives SET ROLE and nothing else. An
-- admin's everyday session is bound by kiln_admin's grants and by row-level
-- security like everyone's; an owner's would bypass both.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kiln_migrator') THEN
        CREATE ROLE kiln_migrator NOLOGIN NOINHERIT;
    ELSIF (SELECT rolinherit FROM pg_roles WHERE rolname = 'kiln_migrator') THEN
        ALTER ROLE kiln_migrator NOINHERIT;
    END IF;
END $$;
GRANT kiln_owner TO kiln_migrator;

-- People who submit may read everything a reader may.
GRANT kiln_reader TO kiln_submitter;
-- Admins are submitters too, and may switch to the owner to migrate.
GRANT kiln_submitter TO kiln_admin;
GRANT kiln_migrator TO kiln_admin;
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = 'kiln_owner'::regrole AND m.member = 'kiln_admin'::regrole) THEN
        REVOKE kiln_owner FROM kiln_admin;  -- the direct membership of earlier versions
    END IF;
END $$;
-- The web interface reads as a reader.
GRANT kiln_reader TO kiln_web;

-- The owner creates schemas kiln and river in this database.
DO $$ BEGIN
    EXECUTE format('GRANT CREATE, CONNECT ON DATABASE %I TO kiln_owner', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO kiln_reader, kiln_submitter, kiln_splitter, kiln_builder, kiln_janitor, kiln_admin, kiln_web, kiln_publisher, kiln_reporter', current_database());
END $$;

-- What no kiln role needs and a read-only role must not have (docs/security.md).
-- PostgreSQL grants both to PUBLIC by default; revoking needs the superuser
-- (the DBA runs this file as postgres; `kiln admin roles apply` as an admin
-- with CREATEROLE leaves them as they are, with a warning):
--   * TEMP on the database: temporary tables, views, types and functions.
--     No kiln process (nor River or pgx) creates temporary objects, and
--     without them a session cannot put anything in front of the names a
--     function looks up (every kiln function also names pg_temp last in its
--     search_path, so this is the second of two walls).
--   * The server-side large-object functions that create or write one. A
--     large object is storage outside every table, grant and row-level
--     policy: a reader could store bytes with lo_from_bytea.
-- NOTIFY cannot be revoked in PostgreSQL; every kiln listener treats a
-- payload as a hint to re-read with its own rights (docs/security.md).
DO $$
DECLARE
    f regprocedure;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE WARNING 'roles/00-groups.sql: % is not a superuser: TEMP and the large-object functions are left as they are; run this file as the superuser (docs/security.md)', current_user;
        RETURN;
    END IF;
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace
          AND p.proname IN ('lo_from_bytea', 'lo_create', 'lo_creat', 'lo_import', 'lo_put', 'lowrite', 'lo_open',
                            'lo_truncate', 'lo_truncate64', 'lo_unlink', 'lo_export', 'lo_get', 'loread',
                            'lo_lseek', 'lo_lseek64', 'lo_tell', 'lo_tell64', 'lo_close')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;
