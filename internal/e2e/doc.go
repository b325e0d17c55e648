// Package e2e holds the tests that run kiln's programs as real
// processes against a private PostgreSQL: kiln, kiln-splitter,
// kiln-builder, kiln-janitor and kiln-web built from this tree, each
// logging in with its own role (by trust, or with its own Kerberos keytab
// or ticket cache). Daemons are killed with SIGKILL, paused with SIGSTOP,
// disabled and restarted, to check the task protocol (docs/protocol.md)
// where a crash is a real crash; and the whole farm runs end to end: the
// pipeline under Kerberos, kiln watch and kiln log -f following a real
// build, and a job's page in headless chromium.
// The package has no code of its own; see its _test.go files.
package e2e
