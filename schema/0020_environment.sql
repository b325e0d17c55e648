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
-- (Its functions, views, triggers and policies are current state in schema/current/:
-- docs/schema.md, "Migrations".)

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
