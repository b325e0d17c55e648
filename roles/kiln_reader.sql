-- kiln_reader: read-only access to the farm (psql reporting, the web pages).
-- Build farms are transparent: everything is readable.
GRANT USAGE ON SCHEMA kiln TO kiln_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA kiln TO kiln_reader;
