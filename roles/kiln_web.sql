-- kiln_web: the web interface. Member of kiln_reader: it reads what a reader
-- reads (row-level security hides private buckets from it, as from any
-- reader) and LISTENs for kiln_job, kiln_task, kiln_log and kiln_builder,
-- which needs no grant. It writes nothing.
-- Start from nothing, so that applying this file again also withdraws what
-- it no longer grants (kiln admin roles apply).
REVOKE ALL ON ALL TABLES IN SCHEMA kiln, river FROM kiln_web;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA kiln, river FROM kiln_web;
GRANT USAGE ON SCHEMA kiln TO kiln_web;
