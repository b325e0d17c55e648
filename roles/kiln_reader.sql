-- kiln_reader: read-only access to the farm (psql reporting, the web pages).
-- Build farms are transparent: everything is readable, except the jobs of
-- private buckets and all that hangs off them, events included (row-level
-- security). Read-only means it: no temporary objects and no large objects
-- either (roles/00-groups.sql revokes both from PUBLIC). LISTEN and NOTIFY
-- cannot be refused; payloads are ids, and listeners read again with their
-- own rights (docs/security.md).
-- Start from nothing, so that applying this file again also withdraws what
-- it no longer grants (kiln admin roles apply).
REVOKE ALL ON ALL TABLES IN SCHEMA kiln, river FROM kiln_reader;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA kiln, river FROM kiln_reader;
GRANT USAGE ON SCHEMA kiln TO kiln_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA kiln TO kiln_reader;
