-- 0020_environment.sql: clean build environments.
--
-- An environment is what a platform builds in: for Debian platforms a
-- tarball made by mmdebstrap (distribution, architecture, mirror,
-- components, extra packages). It is stored content-addressed in kiln.blob
-- like every other file, so every builder of the platform builds in the
-- same bytes, and build-info records name the environment's SHA-256.
--
-- A builder of the platform makes it (creating or refreshing is work for a
-- builder, not for the admin's machine) and installs it with
-- kiln.environment_install, which records it and makes it the platform's
-- current environment in one step: the previous one stays usable (and
-- stored) until the new one is in place, and after that until it is removed.

CREATE TABLE kiln.environment (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    platform    text NOT NULL REFERENCES kiln.platform (name),
    blob_sha256 bytea NOT NULL REFERENCES kiln.blob (sha256),
    size        bigint NOT NULL CONSTRAINT environment_size_nonnegative CHECK (size >= 0),
    spec        jsonb NOT NULL CONSTRAINT environment_spec_object CHECK (jsonb_typeof(spec) = 'object'),
    packages    jsonb NOT NULL DEFAULT '{}' CONSTRAINT environment_packages_object CHECK (jsonb_typeof(packages) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  name NOT NULL DEFAULT session_user,
    builder     text NOT NULL,
    retired_at  timestamptz
);
COMMENT ON TABLE kiln.environment IS 'A build environment a builder made for a platform (for sbuild platforms an mmdebstrap tarball). Rows are written only by kiln.environment_install; kiln.platform_environment says which one a platform uses now.';
COMMENT ON COLUMN kiln.environment.id IS 'Environment number.';
COMMENT ON COLUMN kiln.environment.platform IS 'The platform it was made for.';
COMMENT ON COLUMN kiln.environment.blob_sha256 IS 'The tarball''s bytes: a verified blob stored by the builder that made it; builders fetch and cache it by this SHA-256, and build-info records name it.';
COMMENT ON COLUMN kiln.environment.size IS 'Size of the tarball in bytes.';
COMMENT ON COLUMN kiln.environment.spec IS 'What it was made from: {"dist", "arch", "mirror", "components": [...], "packages": [...]} (the extra packages).';
COMMENT ON COLUMN kiln.environment.packages IS 'The packages installed in it, {"name": "version"}.';
COMMENT ON COLUMN kiln.environment.created_at IS 'When it was installed.';
COMMENT ON COLUMN kiln.environment.created_by IS 'Role of the builder that made it (session_user).';
COMMENT ON COLUMN kiln.environment.builder IS 'Name of the builder that made it.';
COMMENT ON COLUMN kiln.environment.retired_at IS 'When a newer environment replaced it as the platform''s current one; NULL while it is current. Builds that started in it finish in it.';

CREATE INDEX environment_platform_idx ON kiln.environment (platform, created_at DESC);
CREATE INDEX environment_blob_idx ON kiln.environment (blob_sha256);

CREATE TABLE kiln.platform_environment (
    platform    text PRIMARY KEY REFERENCES kiln.platform (name),
    environment bigint REFERENCES kiln.environment (id),
    spec        jsonb NOT NULL CONSTRAINT platform_environment_spec_object CHECK (jsonb_typeof(spec) = 'object'),
    max_age     interval NOT NULL DEFAULT '7 days' CONSTRAINT platform_environment_max_age_positive CHECK (max_age > '0'::interval)
);
COMMENT ON TABLE kiln.platform_environment IS 'Which platforms build in an environment: the one they use now, and what the next one is made from (an admin sets it with kiln admin environment create; a builder of the platform makes it, in an environment River job).';
COMMENT ON COLUMN kiln.platform_environment.platform IS 'The platform.';
COMMENT ON COLUMN kiln.platform_environment.environment IS 'Its current environment; NULL until a builder has made the first one.';
COMMENT ON COLUMN kiln.platform_environment.spec IS 'What the next environment (the first, or a refresh) is made from: {"dist", "arch", "mirror", "components": [...], "packages": [...]}.';
COMMENT ON COLUMN kiln.platform_environment.max_age IS 'Age at which the janitor schedules a refresh (a week unless set).';

-- A builder installs an environment it made: the blob must be one it stored
-- and vouched for, and the platform one it builds. The environment becomes
-- the platform's current one; the one it replaces is retired (kept).
CREATE FUNCTION kiln.environment_install(p_builder text, p_platform text, p_sha256 bytea, p_spec jsonb, p_packages jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    v_size bigint;
    v_id   bigint;
    v_old  bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM kiln.builder b JOIN kiln.builder_platform bp ON bp.builder = b.name
                   WHERE b.name = p_builder AND b.role = session_user AND bp.platform = p_platform) THEN
        RAISE EXCEPTION 'builder % of role % does not build platform %', p_builder, session_user, p_platform
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT b.size INTO v_size FROM kiln.blob b
    WHERE b.sha256 = p_sha256 AND b.created_by = session_user AND b.verified_at IS NOT NULL AND b.content_sha256 IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'blob % is not a verified blob stored by %', encode(p_sha256, 'hex'), session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_spec IS NULL OR jsonb_typeof(p_spec) <> 'object' OR p_packages IS NULL OR jsonb_typeof(p_packages) <> 'object' THEN
        RAISE EXCEPTION 'an environment''s spec and package list are JSON objects' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM 1 FROM kiln.platform WHERE name = p_platform FOR UPDATE;
    INSERT INTO kiln.environment (platform, blob_sha256, size, spec, packages, builder)
    VALUES (p_platform, p_sha256, v_size, p_spec, p_packages, p_builder)
    RETURNING id INTO v_id;
    SELECT environment INTO v_old FROM kiln.platform_environment WHERE platform = p_platform;
    UPDATE kiln.environment SET retired_at = now() WHERE id = v_old;
    INSERT INTO kiln.platform_environment (platform, environment, spec) VALUES (p_platform, v_id, p_spec)
    ON CONFLICT (platform) DO UPDATE SET environment = EXCLUDED.environment;
    INSERT INTO kiln.event (kind, builder, detail)
    VALUES ('environment.install', p_builder, jsonb_build_object('platform', p_platform, 'environment', v_id,
                                                                 'sha256', encode(p_sha256, 'hex'), 'replaces', v_old));
    RETURN v_id;
END $$;
COMMENT ON FUNCTION kiln.environment_install(text, text, bytea, jsonb, jsonb) IS 'Records an environment builder p_builder (registered by session_user, building p_platform) made from the verified blob p_sha256 it stored, and makes it the platform''s current environment; the previous one is retired, not removed. Returns the new environment''s id.';
REVOKE EXECUTE ON FUNCTION kiln.environment_install(text, text, bytea, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kiln.environment_install(text, text, bytea, jsonb, jsonb) TO kiln_builder;

-- Admins queue the environment River job of an sbuild platform that has an
-- environment spec (kiln admin environment create|refresh), and nothing
-- else. River inserts unique jobs with ON CONFLICT ... DO UPDATE SET kind =
-- kind, hence the UPDATE policy, which admits environment jobs only.
CREATE POLICY river_job_environment_admin ON river.river_job FOR INSERT TO kiln_admin
    WITH CHECK (kind = 'environment' AND queue = 'build-' || (args ->> 'platform')
                AND EXISTS (SELECT 1 FROM kiln.platform_environment pe WHERE pe.platform = args ->> 'platform'));
CREATE POLICY river_job_environment_admin_unique ON river.river_job FOR UPDATE TO kiln_admin
    USING (kind = 'environment') WITH CHECK (kind = 'environment');
COMMENT ON POLICY river_job_environment_admin ON river.river_job IS 'An admin enqueues only the environment River job of a platform with an environment spec, in that platform''s build queue.';
COMMENT ON POLICY river_job_environment_admin_unique ON river.river_job IS 'River''s unique insert touches the waiting environment job it would duplicate (DO UPDATE SET kind = kind); nothing else of River''s is an admin''s to change.';
