-- 0001_farm.sql: the farm's data model.
--
-- Everything kiln knows lives in schema kiln. River's tables live in schema
-- river and are created by River's own migrations. Status values, names and
-- the relations between rows are enforced here, so that no process (or psql
-- session) can write an impossible state.
-- (Its functions, views, triggers and policies are current state in schema/current/:
-- docs/schema.md, "Migrations".)

CREATE SCHEMA IF NOT EXISTS kiln;
COMMENT ON SCHEMA kiln IS 'kiln build farm: platforms, buckets, jobs, packages, tasks, builders, artifacts, blobs, logs and events.';

-- Names used as identifiers (platforms, buckets, builders): lower case letters
-- and digits separated by single hyphens or underscores. The same shape River
-- requires of queue names, so a platform name can name its queue.
CREATE FUNCTION kiln.valid_name(n text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN n ~ '^[a-z0-9]+([_-][a-z0-9]+)*$' AND length(n) <= 50;
COMMENT ON FUNCTION kiln.valid_name(text) IS 'True for a safe identifier: lower-case letters and digits separated by single - or _, at most 50 characters.';

-- A file name that is safe to create in a work or download directory: no path
-- separator, not . or .., no .. anywhere, no control characters, no leading
-- dash (it would read as an option), not empty, at most 255 bytes.
CREATE FUNCTION kiln.safe_file_name(n text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN n <> ''
   AND octet_length(n) <= 255
   AND position('/' IN n) = 0
   AND position('\' IN n) = 0
   AND position('..' IN n) = 0
   AND n <> '.'
   AND left(n, 1) <> '-'
   AND n !~ '[\x01-\x1f\x7f]';
COMMENT ON FUNCTION kiln.safe_file_name(text) IS 'True for a file name safe to create in a directory: no separator, no .., no control characters, no leading dash, 1..255 bytes.';

------------------------------------------------------------------------------
-- Platforms and buckets
------------------------------------------------------------------------------

CREATE TABLE kiln.platform (
    name             text PRIMARY KEY CONSTRAINT platform_name_valid CHECK (kiln.valid_name(name)),
    arch             text NOT NULL CONSTRAINT platform_arch_valid CHECK (arch ~ '^[a-z0-9_]+$' AND length(arch) <= 32),
    package_format   text NOT NULL CONSTRAINT platform_package_format_valid CHECK (package_format IN ('rpm', 'deb')),
    backend          text NOT NULL CONSTRAINT platform_backend_valid CHECK (backend IN ('rpmbuild', 'dpkg', 'mock', 'sbuild', 'noop')),
    backend_settings jsonb NOT NULL DEFAULT '{}' CONSTRAINT platform_backend_settings_object CHECK (jsonb_typeof(backend_settings) = 'object'),
    timeout          interval NOT NULL DEFAULT '2 hours' CONSTRAINT platform_timeout_positive CHECK (timeout > '0'::interval),
    active           boolean NOT NULL DEFAULT true,
    description      text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT platform_backend_format CHECK (
        NOT (backend IN ('rpmbuild', 'mock') AND package_format <> 'rpm')
        AND NOT (backend IN ('dpkg', 'sbuild') AND package_format <> 'deb'))
);
COMMENT ON TABLE kiln.platform IS 'A build target such as el9-x86_64 or bookworm-amd64. Each platform has its own River queue, build-<name>.';
COMMENT ON COLUMN kiln.platform.name IS 'Platform name, also the suffix of its River queue (build-<name>).';
COMMENT ON COLUMN kiln.platform.arch IS 'Architecture the platform builds for, as the package format names it (x86_64, amd64, aarch64, ...). Matched against ExclusiveArch/ExcludeArch and Architecture fields.';
COMMENT ON COLUMN kiln.platform.package_format IS 'Source package format the platform builds: rpm (SRPMs) or deb (Debian .dsc).';
COMMENT ON COLUMN kiln.platform.backend IS 'Build backend: rpmbuild, dpkg, mock, sbuild, or noop (builds nothing; for benchmarks and tests).';
COMMENT ON COLUMN kiln.platform.backend_settings IS 'Backend settings as a JSON object, for example {"root": "rocky+epel-9-x86_64"} for mock.';
COMMENT ON COLUMN kiln.platform.timeout IS 'Longest a single build attempt may run before it is killed and the task ends as timed_out. Two hours unless set.';
COMMENT ON COLUMN kiln.platform.active IS 'Whether new jobs may target the platform. Inactive platforms keep their history.';
COMMENT ON COLUMN kiln.platform.description IS 'Free text shown in listings.';
COMMENT ON COLUMN kiln.platform.created_at IS 'When the platform was added.';

CREATE TABLE kiln.bucket (
    name        text PRIMARY KEY CONSTRAINT bucket_name_valid CHECK (kiln.valid_name(name)),
    description text NOT NULL DEFAULT '',
    private     boolean NOT NULL DEFAULT false,
    open        boolean NOT NULL DEFAULT false,
    retention   interval CONSTRAINT bucket_retention_positive CHECK (retention IS NULL OR retention > '0'::interval),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kiln.bucket IS 'A destination repository for built packages (devel, testing, stable). Who may submit to it is a bucket grant.';
COMMENT ON COLUMN kiln.bucket.name IS 'Bucket name.';
COMMENT ON COLUMN kiln.bucket.description IS 'Free text shown in listings.';
COMMENT ON COLUMN kiln.bucket.private IS 'When true, only the submitter, grantees and admins may read its jobs; otherwise everything is readable by everyone.';
COMMENT ON COLUMN kiln.bucket.open IS 'When true, every member of kiln_submitter may submit to it without a grant.';
COMMENT ON COLUMN kiln.bucket.retention IS 'How long logs and artifacts of finished jobs in this bucket are kept; NULL means the janitor''s default.';
COMMENT ON COLUMN kiln.bucket.created_at IS 'When the bucket was added.';

CREATE TABLE kiln.bucket_grant (
    bucket     text NOT NULL REFERENCES kiln.bucket (name) ON DELETE CASCADE,
    grantee    name NOT NULL,
    granted_by name NOT NULL DEFAULT session_user,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, grantee)
);
COMMENT ON TABLE kiln.bucket_grant IS 'Who may submit to a bucket: one row per database role (a person''s login role or a group role).';
COMMENT ON COLUMN kiln.bucket_grant.bucket IS 'The bucket.';
COMMENT ON COLUMN kiln.bucket_grant.grantee IS 'Database role allowed to submit; members of a granted group role are allowed too.';
COMMENT ON COLUMN kiln.bucket_grant.granted_by IS 'Role that made the grant (session_user).';
COMMENT ON COLUMN kiln.bucket_grant.granted_at IS 'When the grant was made.';

------------------------------------------------------------------------------
-- Blobs: content-addressed bytes, stored in chunks so they stream.
------------------------------------------------------------------------------

CREATE TABLE kiln.blob (
    sha256      bytea PRIMARY KEY CONSTRAINT blob_sha256_length CHECK (length(sha256) = 32),
    size        bigint NOT NULL CONSTRAINT blob_size_nonnegative CHECK (size >= 0),
    chunk_size  integer NOT NULL CONSTRAINT blob_chunk_size_positive CHECK (chunk_size > 0 AND chunk_size <= 16777216),
    verified_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE kiln.blob IS 'Content-addressed bytes. The content is in kiln.blob_chunk; packages and artifacts point here by sha256.';
COMMENT ON COLUMN kiln.blob.sha256 IS 'SHA-256 of the whole content, 32 bytes (encode(sha256, ''hex'') for the usual form).';
COMMENT ON COLUMN kiln.blob.size IS 'Length of the content in bytes.';
COMMENT ON COLUMN kiln.blob.chunk_size IS 'Size of every chunk but the last.';
COMMENT ON COLUMN kiln.blob.verified_at IS 'When a trusted process (splitter, builder) re-read the chunks and found they hash to sha256; NULL until then. Unverified blobs are never reused by deduplication.';
COMMENT ON COLUMN kiln.blob.created_at IS 'When the blob was stored.';
COMMENT ON COLUMN kiln.blob.created_by IS 'Role that stored it (session_user).';

CREATE TABLE kiln.blob_chunk (
    sha256 bytea NOT NULL REFERENCES kiln.blob (sha256) ON DELETE CASCADE,
    seq    integer NOT NULL CONSTRAINT blob_chunk_seq_nonnegative CHECK (seq >= 0),
    data   bytea NOT NULL,
    PRIMARY KEY (sha256, seq)
);
COMMENT ON TABLE kiln.blob_chunk IS 'One chunk of a blob''s content; a blob is its chunks in seq order.';
COMMENT ON COLUMN kiln.blob_chunk.sha256 IS 'The blob this chunk belongs to.';
COMMENT ON COLUMN kiln.blob_chunk.seq IS 'Position of the chunk, from 0.';
COMMENT ON COLUMN kiln.blob_chunk.data IS 'The chunk''s bytes.';
ALTER TABLE kiln.blob_chunk ALTER COLUMN data SET STORAGE EXTERNAL;

------------------------------------------------------------------------------
-- Jobs and their packages
------------------------------------------------------------------------------

CREATE TABLE kiln.job (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    submitter      name NOT NULL DEFAULT session_user,
    bucket         text NOT NULL,
    platforms      text[] NOT NULL DEFAULT '{all}',
    priority       smallint NOT NULL DEFAULT 2 CONSTRAINT job_priority_range CHECK (priority BETWEEN 1 AND 4),
    policy         text NOT NULL DEFAULT 'retry' CONSTRAINT job_policy_valid CHECK (policy IN ('retry', 'immediate')),
    note           text NOT NULL DEFAULT '' CONSTRAINT job_note_length CHECK (length(note) <= 2000),
    options        jsonb NOT NULL DEFAULT '{}' CONSTRAINT job_options_object CHECK (jsonb_typeof(options) = 'object'),
    submission_key text NOT NULL CONSTRAINT job_submission_key_valid CHECK (submission_key ~ '^[A-Za-z0-9_.:-]{1,100}$'),
    status         text NOT NULL DEFAULT 'submitted' CONSTRAINT job_status_valid CHECK (status IN (
                       'submitted', 'invalid', 'queued', 'building', 'succeeded', 'failed', 'partially_failed', 'cancelled')),
    reason         text,
    resubmit_of    bigint REFERENCES kiln.job (id) ON DELETE SET NULL,
    submitted_at   timestamptz NOT NULL DEFAULT now(),
    validated_at   timestamptz,
    started_at     timestamptz,
    finished_at    timestamptz,
    cancelled_by   name,
    CONSTRAINT job_submission_key_unique UNIQUE (submitter, submission_key),
    CONSTRAINT job_finished_when_final CHECK ((finished_at IS NOT NULL) = (status IN ('invalid', 'succeeded', 'failed', 'partially_failed', 'cancelled'))),
    CONSTRAINT job_invalid_has_reason CHECK (status <> 'invalid' OR reason IS NOT NULL),
    CONSTRAINT job_platforms_nonempty CHECK (cardinality(platforms) > 0)
);
COMMENT ON TABLE kiln.job IS 'What a person submits: source packages, a bucket and platforms. Its status is computed from its tasks by a trigger.';
COMMENT ON COLUMN kiln.job.id IS 'Job number.';
COMMENT ON COLUMN kiln.job.submitter IS 'Database role that submitted the job; always the session_user of the submitting session (a trigger enforces it).';
COMMENT ON COLUMN kiln.job.bucket IS 'Destination bucket as requested. Not a foreign key: an unknown bucket is a validation failure the splitter records.';
COMMENT ON COLUMN kiln.job.platforms IS 'Platform selection as requested: names, all, and !name to remove one. Resolved by the splitter.';
COMMENT ON COLUMN kiln.job.priority IS 'River priority of its tasks, 1 (most urgent) to 4; 2 by default. Builders take priority first, then submission order.';
COMMENT ON COLUMN kiln.job.policy IS 'Multi-package policy: retry (failed packages are tried again while a pass makes progress) or immediate (stop at the first failure).';
COMMENT ON COLUMN kiln.job.note IS 'Free text from the submitter.';
COMMENT ON COLUMN kiln.job.options IS 'Further build options as a JSON object.';
COMMENT ON COLUMN kiln.job.submission_key IS 'Client-chosen key; submitting again with the same key returns the same job instead of a second one.';
COMMENT ON COLUMN kiln.job.status IS 'submitted, invalid, queued, building, succeeded, failed, partially_failed or cancelled; computed from the tasks.';
COMMENT ON COLUMN kiln.job.reason IS 'Why the job is invalid (job-level reason; per-package reasons are on kiln.package).';
COMMENT ON COLUMN kiln.job.resubmit_of IS 'The job this one was resubmitted from, if any.';
COMMENT ON COLUMN kiln.job.submitted_at IS 'When the submit transaction ran.';
COMMENT ON COLUMN kiln.job.validated_at IS 'When the splitter validated (or rejected) the job.';
COMMENT ON COLUMN kiln.job.started_at IS 'When the first task started building.';
COMMENT ON COLUMN kiln.job.finished_at IS 'When the job reached a final status.';
COMMENT ON COLUMN kiln.job.cancelled_by IS 'Role that cancelled the job, if it was cancelled.';

CREATE INDEX job_submitted_at_idx ON kiln.job (submitted_at DESC, id DESC);
CREATE INDEX job_submitter_idx ON kiln.job (submitter, id DESC);
CREATE INDEX job_status_idx ON kiln.job (status, id DESC);
CREATE INDEX job_bucket_idx ON kiln.job (bucket, id DESC);
CREATE INDEX job_resubmit_of_idx ON kiln.job (resubmit_of) WHERE resubmit_of IS NOT NULL;

CREATE TABLE kiln.package (
    job_id         bigint NOT NULL REFERENCES kiln.job (id) ON DELETE CASCADE,
    seq            integer NOT NULL CONSTRAINT package_seq_nonnegative CHECK (seq >= 0),
    file_name      text NOT NULL CONSTRAINT package_file_name_safe CHECK (kiln.safe_file_name(file_name)),
    format         text NOT NULL CONSTRAINT package_format_valid CHECK (format IN ('srpm', 'dsc')),
    blob_sha256    bytea NOT NULL REFERENCES kiln.blob (sha256),
    size           bigint NOT NULL CONSTRAINT package_size_nonnegative CHECK (size >= 0),
    name           text,
    epoch          integer CONSTRAINT package_epoch_nonnegative CHECK (epoch >= 0),
    version        text,
    release        text,
    exclusive_arch text[],
    exclude_arch   text[],
    reason         text,
    PRIMARY KEY (job_id, seq),
    CONSTRAINT package_file_name_unique UNIQUE (job_id, file_name)
);
COMMENT ON TABLE kiln.package IS 'One source package of a job: an SRPM, or a Debian .dsc (its other files are in kiln.package_file). Built in seq order.';
COMMENT ON COLUMN kiln.package.job_id IS 'The job.';
COMMENT ON COLUMN kiln.package.seq IS 'Position in the job, from 0; the build order.';
COMMENT ON COLUMN kiln.package.file_name IS 'File name as submitted (no directories).';
COMMENT ON COLUMN kiln.package.format IS 'srpm or dsc.';
COMMENT ON COLUMN kiln.package.blob_sha256 IS 'The file''s content (the SRPM, or the .dsc itself).';
COMMENT ON COLUMN kiln.package.size IS 'Size of the file in bytes as the submitter declared it; checked against the blob.';
COMMENT ON COLUMN kiln.package.name IS 'Source package name, parsed by the splitter (NULL until validated).';
COMMENT ON COLUMN kiln.package.epoch IS 'Epoch, parsed by the splitter (NULL when none).';
COMMENT ON COLUMN kiln.package.version IS 'Upstream version, parsed by the splitter.';
COMMENT ON COLUMN kiln.package.release IS 'Release (RPM) or Debian revision, parsed by the splitter.';
COMMENT ON COLUMN kiln.package.exclusive_arch IS 'Architectures the package may build on only (ExclusiveArch, or the .dsc Architecture list); NULL for any.';
COMMENT ON COLUMN kiln.package.exclude_arch IS 'Architectures the package must not build on (ExcludeArch); NULL for none.';
COMMENT ON COLUMN kiln.package.reason IS 'Why the package is invalid, if the splitter rejected it.';

CREATE INDEX package_blob_idx ON kiln.package (blob_sha256);

CREATE TABLE kiln.package_file (
    job_id      bigint NOT NULL,
    seq         integer NOT NULL,
    file_name   text NOT NULL CONSTRAINT package_file_file_name_safe CHECK (kiln.safe_file_name(file_name)),
    blob_sha256 bytea NOT NULL REFERENCES kiln.blob (sha256),
    size        bigint NOT NULL CONSTRAINT package_file_size_nonnegative CHECK (size >= 0),
    PRIMARY KEY (job_id, seq, file_name),
    FOREIGN KEY (job_id, seq) REFERENCES kiln.package (job_id, seq) ON DELETE CASCADE
);
COMMENT ON TABLE kiln.package_file IS 'Further files of a Debian source package (the tarballs a .dsc lists), stored next to it.';
COMMENT ON COLUMN kiln.package_file.job_id IS 'The job.';
COMMENT ON COLUMN kiln.package_file.seq IS 'The package (kiln.package.seq) the file belongs to.';
COMMENT ON COLUMN kiln.package_file.file_name IS 'File name as the .dsc lists it.';
COMMENT ON COLUMN kiln.package_file.blob_sha256 IS 'The file''s content.';
COMMENT ON COLUMN kiln.package_file.size IS 'Size in bytes as the submitter declared it.';

CREATE INDEX package_file_blob_idx ON kiln.package_file (blob_sha256);

------------------------------------------------------------------------------
-- Builders
------------------------------------------------------------------------------

CREATE TABLE kiln.builder (
    name          text PRIMARY KEY CONSTRAINT builder_name_valid CHECK (kiln.valid_name(name)),
    host          text NOT NULL CONSTRAINT builder_host_valid CHECK (host ~ '^[A-Za-z0-9.-]{1,253}$'),
    role          name NOT NULL DEFAULT session_user,
    slots         integer NOT NULL DEFAULT 1 CONSTRAINT builder_slots_range CHECK (slots BETWEEN 1 AND 256),
    version       text NOT NULL DEFAULT '',
    enabled       boolean NOT NULL DEFAULT true,
    draining      boolean NOT NULL DEFAULT false,
    state         text NOT NULL DEFAULT 'offline' CONSTRAINT builder_state_valid CHECK (state IN ('online', 'offline')),
    heartbeat_at  timestamptz,
    started_at    timestamptz,
    registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kiln.builder IS 'A builder daemon: where it runs, what it builds, whether it is alive.';
COMMENT ON COLUMN kiln.builder.name IS 'Builder name (kiln-builder --name).';
COMMENT ON COLUMN kiln.builder.host IS 'Host name the builder runs on.';
COMMENT ON COLUMN kiln.builder.role IS 'Database role the builder connects as; row-level security lets a builder touch only its own rows.';
COMMENT ON COLUMN kiln.builder.slots IS 'Most tasks the builder builds at once.';
COMMENT ON COLUMN kiln.builder.version IS 'kiln version the builder runs.';
COMMENT ON COLUMN kiln.builder.enabled IS 'An admin switch: a disabled builder takes no new tasks.';
COMMENT ON COLUMN kiln.builder.draining IS 'Set while the builder finishes its running tasks before stopping; it takes no new ones.';
COMMENT ON COLUMN kiln.builder.state IS 'online while it heart-beats; offline after a clean stop or when the janitor finds it silent.';
COMMENT ON COLUMN kiln.builder.heartbeat_at IS 'Last heartbeat.';
COMMENT ON COLUMN kiln.builder.started_at IS 'When the running daemon started.';
COMMENT ON COLUMN kiln.builder.registered_at IS 'When the builder first registered.';

CREATE TABLE kiln.builder_platform (
    builder  text NOT NULL REFERENCES kiln.builder (name) ON DELETE CASCADE ON UPDATE CASCADE,
    platform text NOT NULL REFERENCES kiln.platform (name),
    PRIMARY KEY (builder, platform)
);
COMMENT ON TABLE kiln.builder_platform IS 'Which platforms a builder builds. A task may only be held by a builder of its platform (foreign key from kiln.task).';
COMMENT ON COLUMN kiln.builder_platform.builder IS 'The builder.';
COMMENT ON COLUMN kiln.builder_platform.platform IS 'A platform it builds.';

CREATE INDEX builder_platform_platform_idx ON kiln.builder_platform (platform);

------------------------------------------------------------------------------
-- Tasks and attempts
------------------------------------------------------------------------------

CREATE TABLE kiln.task (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       bigint NOT NULL REFERENCES kiln.job (id) ON DELETE CASCADE,
    platform     text NOT NULL REFERENCES kiln.platform (name),
    status       text NOT NULL DEFAULT 'pending' CONSTRAINT task_status_valid CHECK (status IN (
                     'pending', 'building', 'succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'lost')),
    attempt      integer NOT NULL DEFAULT 0 CONSTRAINT task_attempt_nonnegative CHECK (attempt >= 0),
    lost_count   integer NOT NULL DEFAULT 0 CONSTRAINT task_lost_count_nonnegative CHECK (lost_count >= 0),
    builder      text,
    river_job_id bigint,
    heartbeat_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    reason       text,
    CONSTRAINT task_job_platform_unique UNIQUE (job_id, platform),
    CONSTRAINT task_builder_platform_fk FOREIGN KEY (builder, platform) REFERENCES kiln.builder_platform (builder, platform),
    CONSTRAINT task_builder_iff_building CHECK ((status = 'building') = (builder IS NOT NULL)),
    CONSTRAINT task_building_has_attempt CHECK (status <> 'building' OR (attempt > 0 AND started_at IS NOT NULL AND heartbeat_at IS NOT NULL)),
    CONSTRAINT task_finished_when_final CHECK ((finished_at IS NOT NULL) = (status IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'lost'))),
    CONSTRAINT task_reason_when_unsuccessful CHECK (status NOT IN ('failed', 'timed_out', 'skipped', 'lost') OR reason IS NOT NULL)
);
COMMENT ON TABLE kiln.task IS 'A job on one platform: the unit a builder takes. One River job in queue build-<platform> per pending task.';
COMMENT ON COLUMN kiln.task.id IS 'Task number.';
COMMENT ON COLUMN kiln.task.job_id IS 'The job.';
COMMENT ON COLUMN kiln.task.platform IS 'The platform.';
COMMENT ON COLUMN kiln.task.status IS 'pending, building, succeeded, failed, timed_out, cancelled, skipped (the packages exclude this architecture) or lost (its builder vanished too often).';
COMMENT ON COLUMN kiln.task.attempt IS 'Number of the current (or last) attempt; 0 before the first. Every builder write names it, so a stale builder cannot overwrite a newer attempt.';
COMMENT ON COLUMN kiln.task.lost_count IS 'How many attempts were lost because their builder went silent.';
COMMENT ON COLUMN kiln.task.builder IS 'Builder holding the task while it is building; NULL otherwise.';
COMMENT ON COLUMN kiln.task.river_job_id IS 'The River job (river.river_job.id) that carries the task to a builder.';
COMMENT ON COLUMN kiln.task.heartbeat_at IS 'Last heartbeat of the builder for this task while building.';
COMMENT ON COLUMN kiln.task.created_at IS 'When the splitter created the task.';
COMMENT ON COLUMN kiln.task.started_at IS 'When the current attempt started.';
COMMENT ON COLUMN kiln.task.finished_at IS 'When the task reached a final status.';
COMMENT ON COLUMN kiln.task.reason IS 'Why the task failed, timed out, was skipped, lost or cancelled.';

CREATE INDEX task_status_platform_idx ON kiln.task (platform, created_at) WHERE status = 'pending';
CREATE INDEX task_building_idx ON kiln.task (heartbeat_at) WHERE status = 'building';
CREATE INDEX task_builder_idx ON kiln.task (builder) WHERE builder IS NOT NULL;
CREATE INDEX task_finished_idx ON kiln.task (platform, finished_at DESC) WHERE finished_at IS NOT NULL;

CREATE TABLE kiln.attempt (
    task_id      bigint NOT NULL REFERENCES kiln.task (id) ON DELETE CASCADE,
    attempt      integer NOT NULL CONSTRAINT attempt_number_positive CHECK (attempt >= 1),
    builder      text NOT NULL,
    status       text NOT NULL DEFAULT 'building' CONSTRAINT attempt_status_valid CHECK (status IN (
                     'building', 'succeeded', 'failed', 'timed_out', 'cancelled', 'lost', 'returned')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    reason       text,
    build_info   jsonb,
    log_bytes    bigint NOT NULL DEFAULT 0 CONSTRAINT attempt_log_bytes_nonnegative CHECK (log_bytes >= 0),
    log_truncated boolean NOT NULL DEFAULT false,
    PRIMARY KEY (task_id, attempt),
    CONSTRAINT attempt_finished_when_final CHECK ((finished_at IS NOT NULL) = (status <> 'building'))
);
COMMENT ON TABLE kiln.attempt IS 'One try of a task by one builder. Logs and artifacts belong to an attempt, so the history of lost and returned attempts stays visible.';
COMMENT ON COLUMN kiln.attempt.task_id IS 'The task.';
COMMENT ON COLUMN kiln.attempt.attempt IS 'Attempt number, from 1.';
COMMENT ON COLUMN kiln.attempt.builder IS 'Builder that made the attempt.';
COMMENT ON COLUMN kiln.attempt.status IS 'building, succeeded, failed, timed_out, cancelled, lost (builder went silent) or returned (given back on shutdown, not counted).';
COMMENT ON COLUMN kiln.attempt.started_at IS 'When the attempt started.';
COMMENT ON COLUMN kiln.attempt.finished_at IS 'When it ended.';
COMMENT ON COLUMN kiln.attempt.reason IS 'Why it failed, was lost, timed out or was given back.';
COMMENT ON COLUMN kiln.attempt.build_info IS 'Build-info record: builder, backend and tool versions, start and end, per-package results.';
COMMENT ON COLUMN kiln.attempt.log_bytes IS 'Bytes of log stored for the attempt.';
COMMENT ON COLUMN kiln.attempt.log_truncated IS 'True when the log reached the size cap and later output was dropped.';

CREATE INDEX attempt_builder_idx ON kiln.attempt (builder, started_at DESC);

CREATE TABLE kiln.artifact (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     bigint NOT NULL,
    attempt     integer NOT NULL,
    kind        text NOT NULL CONSTRAINT artifact_kind_valid CHECK (kind IN ('package', 'log', 'buildinfo', 'other')),
    file_name   text NOT NULL CONSTRAINT artifact_file_name_safe CHECK (kiln.safe_file_name(file_name)),
    blob_sha256 bytea REFERENCES kiln.blob (sha256),
    size        bigint NOT NULL CONSTRAINT artifact_size_nonnegative CHECK (size >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    pruned_at   timestamptz,
    FOREIGN KEY (task_id, attempt) REFERENCES kiln.attempt (task_id, attempt) ON DELETE CASCADE,
    CONSTRAINT artifact_file_name_unique UNIQUE (task_id, attempt, file_name),
    CONSTRAINT artifact_blob_unless_pruned CHECK ((blob_sha256 IS NULL) = (pruned_at IS NOT NULL))
);
COMMENT ON TABLE kiln.artifact IS 'A file a task attempt produced: a binary package, a log, a build-info file.';
COMMENT ON COLUMN kiln.artifact.id IS 'Artifact number.';
COMMENT ON COLUMN kiln.artifact.task_id IS 'The task.';
COMMENT ON COLUMN kiln.artifact.attempt IS 'The attempt that produced it.';
COMMENT ON COLUMN kiln.artifact.kind IS 'package, log, buildinfo or other.';
COMMENT ON COLUMN kiln.artifact.file_name IS 'File name (no directories).';
COMMENT ON COLUMN kiln.artifact.blob_sha256 IS 'The content; NULL once retention pruned it.';
COMMENT ON COLUMN kiln.artifact.size IS 'Size in bytes.';
COMMENT ON COLUMN kiln.artifact.created_at IS 'When it was stored.';
COMMENT ON COLUMN kiln.artifact.pruned_at IS 'When retention removed its content; the row stays as history.';

CREATE INDEX artifact_blob_idx ON kiln.artifact (blob_sha256) WHERE blob_sha256 IS NOT NULL;

CREATE TABLE kiln.log_chunk (
    task_id    bigint NOT NULL,
    attempt    integer NOT NULL,
    seq        integer NOT NULL CONSTRAINT log_chunk_seq_nonnegative CHECK (seq >= 0),
    data       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, attempt, seq),
    FOREIGN KEY (task_id, attempt) REFERENCES kiln.attempt (task_id, attempt) ON DELETE CASCADE
);
COMMENT ON TABLE kiln.log_chunk IS 'Build log of an attempt in small batches of lines, written while it builds (NOTIFY kiln_log follows each batch).';
COMMENT ON COLUMN kiln.log_chunk.task_id IS 'The task.';
COMMENT ON COLUMN kiln.log_chunk.attempt IS 'The attempt.';
COMMENT ON COLUMN kiln.log_chunk.seq IS 'Position of the batch, from 0.';
COMMENT ON COLUMN kiln.log_chunk.data IS 'Log text of the batch (whole lines, newline-terminated, invalid UTF-8 replaced).';
COMMENT ON COLUMN kiln.log_chunk.created_at IS 'When the batch was stored.';

------------------------------------------------------------------------------
-- Events: append-only history of every state change.
------------------------------------------------------------------------------

CREATE TABLE kiln.event (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor      name NOT NULL DEFAULT session_user,
    kind       text NOT NULL CONSTRAINT event_kind_valid CHECK (kind ~ '^[a-z_]+(\.[a-z_]+)*$'),
    job_id     bigint,
    task_id    bigint,
    attempt    integer,
    builder    text,
    old_status text,
    new_status text,
    detail     jsonb NOT NULL DEFAULT '{}' CONSTRAINT event_detail_object CHECK (jsonb_typeof(detail) = 'object')
);
COMMENT ON TABLE kiln.event IS 'Append-only history: every state change of jobs, tasks, attempts and builders, and every janitor repair, with the acting role.';
COMMENT ON COLUMN kiln.event.id IS 'Event number, increasing.';
COMMENT ON COLUMN kiln.event.at IS 'When it happened.';
COMMENT ON COLUMN kiln.event.actor IS 'Role that made the change: the session_user of the session, never a name a client claims.';
COMMENT ON COLUMN kiln.event.kind IS 'What happened: job.status, task.status, attempt.status, builder.state, janitor.<repair>, ...';
COMMENT ON COLUMN kiln.event.job_id IS 'Job concerned, if any.';
COMMENT ON COLUMN kiln.event.task_id IS 'Task concerned, if any.';
COMMENT ON COLUMN kiln.event.attempt IS 'Attempt concerned, if any.';
COMMENT ON COLUMN kiln.event.builder IS 'Builder concerned, if any.';
COMMENT ON COLUMN kiln.event.old_status IS 'Status before the change.';
COMMENT ON COLUMN kiln.event.new_status IS 'Status after the change.';
COMMENT ON COLUMN kiln.event.detail IS 'Further facts as a JSON object (reason, counts, ...).';

CREATE INDEX event_job_idx ON kiln.event (job_id, id) WHERE job_id IS NOT NULL;
CREATE INDEX event_task_idx ON kiln.event (task_id, id) WHERE task_id IS NOT NULL;
CREATE INDEX event_kind_idx ON kiln.event (kind, id);
