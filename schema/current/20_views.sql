-- Current state (docs/schema.md, "Migrations"): applied by schema.Migrate
-- after the numbered migrations, in one transaction, on every migrate.
-- Edit the definition here; never copy it into a numbered migration.
-- Views. A view whose columns change or go away is dropped first by the
-- numbered migration that changes it (DROP VIEW ... CASCADE) and made here.

CREATE OR REPLACE VIEW kiln.queue_depth WITH (security_invoker = true) AS
SELECT p.name AS platform,
       p.active,
       coalesce(t.pending, 0) AS pending,
       coalesce(t.building, 0) AS building,
       t.oldest_pending_at,
       now() - t.oldest_pending_at AS oldest_wait,
       coalesce(b.builders_online, 0) AS builders_online,
       coalesce(b.slots_online, 0) AS slots_online
FROM kiln.platform p
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
           count(*) FILTER (WHERE status = 'building') AS building,
           min(created_at) FILTER (WHERE status = 'pending') AS oldest_pending_at
    FROM kiln.task
    WHERE platform = p.name AND status IN ('pending', 'building')
) t ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS builders_online, sum(b.slots) AS slots_online
    FROM kiln.builder_platform bp
    JOIN kiln.builder b ON b.name = bp.builder
    WHERE bp.platform = p.name AND b.state = 'online' AND b.enabled AND NOT b.draining
) b ON true;
COMMENT ON VIEW kiln.queue_depth IS 'Per platform: tasks waiting and building, the oldest waiting task and how long it has waited, and the online builders and slots that could take them.';
COMMENT ON COLUMN kiln.queue_depth.platform IS 'Platform name.';
COMMENT ON COLUMN kiln.queue_depth.active IS 'Whether the platform takes new jobs.';
COMMENT ON COLUMN kiln.queue_depth.pending IS 'Tasks waiting for a builder.';
COMMENT ON COLUMN kiln.queue_depth.building IS 'Tasks being built.';
COMMENT ON COLUMN kiln.queue_depth.oldest_pending_at IS 'When the oldest waiting task was created.';
COMMENT ON COLUMN kiln.queue_depth.oldest_wait IS 'How long the oldest waiting task has waited.';
COMMENT ON COLUMN kiln.queue_depth.builders_online IS 'Builders online, enabled and not draining that build this platform.';
COMMENT ON COLUMN kiln.queue_depth.slots_online IS 'Their slots in total.';

CREATE OR REPLACE VIEW kiln.builder_status WITH (security_invoker = true) AS
SELECT b.name AS builder,
       b.host,
       b.state,
       b.enabled,
       b.draining,
       b.slots,
       coalesce(t.busy, 0) AS busy,
       b.heartbeat_at,
       now() - b.heartbeat_at AS heartbeat_age,
       b.version,
       coalesce((SELECT array_agg(bp.platform ORDER BY bp.platform) FROM kiln.builder_platform bp WHERE bp.builder = b.name), '{}') AS platforms,
       coalesce(t.tasks, '{}') AS tasks
FROM kiln.builder b
LEFT JOIN LATERAL (
    SELECT count(*) AS busy, array_agg(id ORDER BY id) AS tasks
    FROM kiln.task WHERE builder = b.name
) t ON true;
COMMENT ON VIEW kiln.builder_status IS 'Per builder: state, switches, slots in use, heartbeat age, platforms and the tasks it holds.';
COMMENT ON COLUMN kiln.builder_status.builder IS 'Builder name.';
COMMENT ON COLUMN kiln.builder_status.host IS 'Host it runs on.';
COMMENT ON COLUMN kiln.builder_status.state IS 'online or offline.';
COMMENT ON COLUMN kiln.builder_status.enabled IS 'Admin switch.';
COMMENT ON COLUMN kiln.builder_status.draining IS 'Finishing work before a stop.';
COMMENT ON COLUMN kiln.builder_status.slots IS 'Most tasks at once.';
COMMENT ON COLUMN kiln.builder_status.busy IS 'Tasks it holds now.';
COMMENT ON COLUMN kiln.builder_status.heartbeat_at IS 'Last heartbeat.';
COMMENT ON COLUMN kiln.builder_status.heartbeat_age IS 'Time since the last heartbeat.';
COMMENT ON COLUMN kiln.builder_status.version IS 'kiln version it runs.';
COMMENT ON COLUMN kiln.builder_status.platforms IS 'Platforms it builds.';
COMMENT ON COLUMN kiln.builder_status.tasks IS 'Ids of the tasks it holds.';

CREATE OR REPLACE VIEW kiln.job_summary WITH (security_invoker = true) AS
SELECT j.id AS job_id,
       j.submitter,
       j.bucket,
       j.status,
       j.priority,
       coalesce((SELECT array_agg(coalesce(p.name, p.file_name) ORDER BY p.seq) FROM kiln.package p WHERE p.job_id = j.id), '{}') AS packages,
       coalesce((SELECT jsonb_object_agg(t.platform, t.status) FROM kiln.task t WHERE t.job_id = j.id), '{}') AS task_status,
       j.submitted_at,
       j.started_at,
       j.finished_at,
       coalesce(j.finished_at, now()) - j.submitted_at AS age,
       j.note,
       j.reason
FROM kiln.job j;
COMMENT ON VIEW kiln.job_summary IS 'One row per job: who, where, status, its packages and the status of each platform''s task.';
COMMENT ON COLUMN kiln.job_summary.job_id IS 'Job number.';
COMMENT ON COLUMN kiln.job_summary.submitter IS 'Who submitted it.';
COMMENT ON COLUMN kiln.job_summary.bucket IS 'Destination bucket.';
COMMENT ON COLUMN kiln.job_summary.status IS 'Job status.';
COMMENT ON COLUMN kiln.job_summary.priority IS 'Priority, 1 (most urgent) to 4.';
COMMENT ON COLUMN kiln.job_summary.packages IS 'Package names (file names until validated), in build order.';
COMMENT ON COLUMN kiln.job_summary.task_status IS 'JSON object: platform name to task status.';
COMMENT ON COLUMN kiln.job_summary.submitted_at IS 'When it was submitted.';
COMMENT ON COLUMN kiln.job_summary.started_at IS 'When its first task started.';
COMMENT ON COLUMN kiln.job_summary.finished_at IS 'When it finished.';
COMMENT ON COLUMN kiln.job_summary.age IS 'Time from submission to finish (or to now while it runs).';
COMMENT ON COLUMN kiln.job_summary.note IS 'Submitter''s note.';
COMMENT ON COLUMN kiln.job_summary.reason IS 'Why it is invalid, if it is.';

CREATE OR REPLACE VIEW kiln.build_duration WITH (security_invoker = true) AS
SELECT a.task_id,
       a.attempt,
       t.job_id,
       t.platform,
       a.builder,
       a.status,
       a.started_at,
       a.finished_at,
       a.finished_at - a.started_at AS duration,
       t.started_at - t.created_at AS queue_wait,
       coalesce((SELECT array_agg(coalesce(p.name, p.file_name) ORDER BY p.seq) FROM kiln.package p WHERE p.job_id = t.job_id), '{}') AS packages
FROM kiln.attempt a
JOIN kiln.task t ON t.id = a.task_id
WHERE a.finished_at IS NOT NULL;
COMMENT ON VIEW kiln.build_duration IS 'One row per finished attempt: how long it built, on which builder, with what outcome.';
COMMENT ON COLUMN kiln.build_duration.task_id IS 'The task.';
COMMENT ON COLUMN kiln.build_duration.attempt IS 'The attempt number.';
COMMENT ON COLUMN kiln.build_duration.job_id IS 'The job.';
COMMENT ON COLUMN kiln.build_duration.platform IS 'The platform.';
COMMENT ON COLUMN kiln.build_duration.builder IS 'Builder that made the attempt.';
COMMENT ON COLUMN kiln.build_duration.status IS 'How the attempt ended.';
COMMENT ON COLUMN kiln.build_duration.started_at IS 'Start of the attempt.';
COMMENT ON COLUMN kiln.build_duration.finished_at IS 'End of the attempt.';
COMMENT ON COLUMN kiln.build_duration.duration IS 'finished_at - started_at.';
COMMENT ON COLUMN kiln.build_duration.queue_wait IS 'Time the task waited from creation to the start of its current attempt.';
COMMENT ON COLUMN kiln.build_duration.packages IS 'Package names of the job, in build order.';

CREATE OR REPLACE VIEW kiln.repository_package WITH (security_barrier, security_invoker) AS
SELECT s.bucket, f.platform, bp.name, bp.version, bp.arch, bp.source, f.path, f.size,
       encode(f.blob_sha256, 'hex') AS sha256, f.job_id, s.seq AS snapshot_seq
FROM kiln.bucket_publication p
JOIN kiln.snapshot s ON s.id = p.current_snapshot
JOIN kiln.repository_file f ON f.bucket = s.bucket AND f.until_seq IS NULL
JOIN kiln.binary_package bp ON bp.sha256 = f.package;
COMMENT ON VIEW kiln.repository_package IS 'What each bucket serves now: one row per binary package in the current snapshot of every repository (bucket, platform).';
COMMENT ON COLUMN kiln.repository_package.bucket IS 'The bucket.';
COMMENT ON COLUMN kiln.repository_package.platform IS 'The repository''s platform.';
COMMENT ON COLUMN kiln.repository_package.name IS 'Binary package name.';
COMMENT ON COLUMN kiln.repository_package.version IS 'Its version.';
COMMENT ON COLUMN kiln.repository_package.arch IS 'Its architecture.';
COMMENT ON COLUMN kiln.repository_package.source IS 'Its source package.';
COMMENT ON COLUMN kiln.repository_package.path IS 'Path of the file in the repository (under /repos/BUCKET/PLATFORM/).';
COMMENT ON COLUMN kiln.repository_package.size IS 'File size in bytes.';
COMMENT ON COLUMN kiln.repository_package.sha256 IS 'SHA-256 of the file, hex.';
COMMENT ON COLUMN kiln.repository_package.job_id IS 'The job that built it.';
COMMENT ON COLUMN kiln.repository_package.snapshot_seq IS 'The bucket snapshot being served.';

CREATE OR REPLACE VIEW kiln.repository_summary WITH (security_barrier, security_invoker) AS
SELECT s.bucket, f.platform, count(f.package) AS packages, sum(f.size) FILTER (WHERE f.package IS NOT NULL) AS package_bytes,
       s.seq AS snapshot_seq, s.created_at AS published_at
FROM kiln.bucket_publication p
JOIN kiln.snapshot s ON s.id = p.current_snapshot
JOIN kiln.repository_file f ON f.bucket = s.bucket AND f.until_seq IS NULL
GROUP BY s.bucket, f.platform, s.seq, s.created_at;
COMMENT ON VIEW kiln.repository_summary IS 'Per bucket and platform: how many binary packages the current snapshot serves, their total size, and which snapshot it is.';
COMMENT ON COLUMN kiln.repository_summary.bucket IS 'The bucket.';
COMMENT ON COLUMN kiln.repository_summary.platform IS 'The repository''s platform.';
COMMENT ON COLUMN kiln.repository_summary.packages IS 'Binary packages served.';
COMMENT ON COLUMN kiln.repository_summary.package_bytes IS 'Their total size in bytes.';
COMMENT ON COLUMN kiln.repository_summary.snapshot_seq IS 'The bucket snapshot being served.';
COMMENT ON COLUMN kiln.repository_summary.published_at IS 'When that snapshot was published.';
