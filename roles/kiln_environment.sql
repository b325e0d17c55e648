-- Build environments (schema/0020_environment.sql), for the roles whose own
-- files sort before this one (roles.go applies kiln_*.sql in name order, and
-- each role's file starts by revoking everything from it). kiln_reader's
-- SELECT ON ALL TABLES already covers kiln.environment and
-- kiln.platform_environment.
-- Builders read which environment to build in and fetch its blob; they
-- install new ones only through kiln.environment_install (kiln_builder.sql
-- revokes every function first, so the grant is here).
GRANT SELECT ON kiln.environment, kiln.platform_environment TO kiln_builder;
GRANT EXECUTE ON FUNCTION kiln.environment_install(text, text, bytea, jsonb, jsonb) TO kiln_builder;
-- Admins list and remove environments (a platform's current one is kept by
-- its foreign key) and say what a platform's next environment is made from.
-- They queue the environment River job that has a builder of the platform
-- make it (kiln admin environment create|refresh) with the River grants
-- they hold as submitters; row-level security (schema/0020_environment.sql)
-- admits that River job kind for admins.
GRANT SELECT, DELETE ON kiln.environment TO kiln_admin;
GRANT SELECT, INSERT (platform, spec, max_age), UPDATE (spec, max_age) ON kiln.platform_environment TO kiln_admin;
