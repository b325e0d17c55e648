-- kiln_reader: read-only access to the farm (psql reporting, the web pages).
-- Build farms are transparent: everything is readable.
-- Start from nothing, so that applying this file again also withdraws what
-- it no longer grants (kiln admin roles apply).
REVOKE ALL ON ALL TABLES IN SCHEMA kiln, river FROM kiln_reader;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA kiln, river FROM kiln_reader;
GRANT USAGE ON SCHEMA kiln TO kiln_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA kiln TO kiln_reader;
