-- kiln_admin: people who run the farm: platforms, buckets, grants, builders.
-- Member of kiln_submitter (so of kiln_reader) and of kiln_owner (for migrations).
-- Start from nothing, so that applying this file again also withdraws what
-- it no longer grants (kiln admin roles apply).
REVOKE ALL ON ALL TABLES IN SCHEMA kiln, river FROM kiln_admin;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA kiln, river FROM kiln_admin;
GRANT USAGE ON SCHEMA kiln, river TO kiln_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON kiln.platform, kiln.bucket, kiln.bucket_grant TO kiln_admin;
GRANT UPDATE (enabled, draining) ON kiln.builder TO kiln_admin;
-- The farm's settings (kiln admin web-url, schema/0022_newcomer.sql).
GRANT SELECT, INSERT, UPDATE, DELETE ON kiln.farm_setting TO kiln_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA river TO kiln_admin;
-- Quotas (kiln admin quota show|set|reset, docs/quotas.md): the defaults
-- (person public) and per-person overrides. A trigger stamps set_by and
-- set_at and keeps the defaults row; what people used is read-only.
GRANT SELECT, DELETE ON kiln.quota TO kiln_admin;
GRANT INSERT (person, jobs_per_hour, bytes_per_day, options_bytes, platforms_per_job, validate_river_jobs_per_job, river_job_bytes),
      UPDATE (jobs_per_hour, bytes_per_day, options_bytes, platforms_per_job, validate_river_jobs_per_job, river_job_bytes)
      ON kiln.quota TO kiln_admin;
GRANT SELECT ON kiln.quota_usage, kiln.quota_river_jobs TO kiln_admin;
-- kiln admin quota reset (without PERSON) restores these.
GRANT EXECUTE ON FUNCTION kiln.quota_builtin() TO kiln_admin;
