-- Source packages in APT repositories (schema/current/13_sources.sql): the
-- publisher reads a job's Debian source packages through
-- kiln.publisher_job_sources alone (no grant on kiln.package or
-- kiln.package_file), and records what it read in kiln.source_package.
GRANT EXECUTE ON FUNCTION kiln.publisher_job_sources(bigint) TO kiln_publisher;
GRANT SELECT, INSERT, DELETE ON kiln.source_package TO kiln_publisher;
