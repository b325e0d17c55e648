// Package farmproc holds the tests that run kiln's daemons as real
// processes against a private PostgreSQL: kiln-builder and kiln-janitor
// built from this tree, each logging in with its own role, killed with
// SIGKILL, paused with SIGSTOP, disabled and restarted. They check the task
// protocol (docs/protocol.md) end to end, where a crash is a real crash.
// The package has no code of its own; see its _test.go files.
package farmproc
