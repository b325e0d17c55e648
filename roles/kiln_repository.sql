-- Builds use the repositories (schema/0023_build_against.sql), for the roles
-- whose own files sort before this one (roles.go applies kiln_*.sql in name
-- order, and kiln_builder.sql starts by revoking every function from
-- kiln_builder, so the grant is here). Builders learn which snapshot and key
-- of which bucket a build installs from through the function alone: no
-- SELECT on kiln.bucket_key, kiln.bucket_publication or kiln.snapshot.
GRANT EXECUTE ON FUNCTION kiln.build_repositories(bigint, text) TO kiln_builder;
GRANT EXECUTE ON FUNCTION kiln.build_repository_snapshots(bigint, text) TO kiln_builder;
GRANT EXECUTE ON FUNCTION kiln.build_repository_token(text, bigint, integer, text) TO kiln_builder;
-- Builds' repository tokens (schema/0025_build_repo_token.sql) are read and
-- written only by kiln.build_repository_token and kiln.web_repo_file: not
-- even their hashes are in SELECT ON ALL TABLES (kiln_reader.sql,
-- kiln_janitor.sql, which sort before this file).
REVOKE ALL ON kiln.build_repo_token FROM kiln_reader, kiln_janitor;
