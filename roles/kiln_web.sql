-- kiln_web: the web interface (kiln-web). Member of kiln_reader: its pages
-- read what a reader reads (row-level security hides private buckets from
-- it, as from any reader), and it LISTENs for kiln_job, kiln_task and
-- kiln_log, which needs no grant (any role may also NOTIFY there, so the
-- live updates take a payload as a hint and read again; docs/security.md). It changes nothing directly: actions that
-- people take in the browser (after Kerberos/SPNEGO login) go through the
-- kiln.web_* functions, which check the person's own rights (docs/web.md).
-- Start from nothing, so that applying this file again also withdraws what
-- it no longer grants (kiln admin roles apply).
REVOKE ALL ON ALL TABLES IN SCHEMA kiln, river FROM kiln_web;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA kiln, river FROM kiln_web;
GRANT USAGE ON SCHEMA kiln, river TO kiln_web;
GRANT EXECUTE ON FUNCTION kiln.web_check_person(name, name), kiln.web_cancel_job(name, bigint),
    kiln.web_cancel_task(name, bigint), kiln.web_resubmit(name, bigint, text),
    kiln.web_set_builder_enabled(name, text, boolean) TO kiln_web;
-- Resubmit: the validate River job, inserted in the same transaction as the
-- new job (as kiln_submitter may).
GRANT SELECT, INSERT ON river.river_job TO kiln_web;
GRANT UPDATE (kind) ON river.river_job TO kiln_web;
GRANT USAGE ON SEQUENCE river.river_job_id_seq TO kiln_web;
-- Repositories (docs/repositories.md): public buckets are read under
-- row-level security like any page; private ones and promotion through the
-- functions that check the person (or their repository token).
GRANT EXECUTE ON FUNCTION kiln.web_repo_file(name, text, text, integer, text, text),
    kiln.web_repo_chunk(name, text, text, integer, text, text, integer),
    kiln.web_promote(name, bigint, text) TO kiln_web;
