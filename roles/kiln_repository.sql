-- Builds use the repositories (schema/0023_build_against.sql), for the roles
-- whose own files sort before this one (roles.go applies kiln_*.sql in name
-- order, and kiln_builder.sql starts by revoking every function from
-- kiln_builder, so the grant is here). Builders learn which snapshot and key
-- of which bucket a build installs from through the function alone: no
-- SELECT on kiln.bucket_key, kiln.bucket_publication or kiln.snapshot.
GRANT EXECUTE ON FUNCTION kiln.build_repositories(bigint, text) TO kiln_builder;
GRANT EXECUTE ON FUNCTION kiln.build_repository_snapshots(bigint, text) TO kiln_builder;
GRANT EXECUTE ON FUNCTION kiln.build_repository_token(text, bigint, integer, text) TO kiln_builder;
