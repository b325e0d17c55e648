package schema_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/schema"
)

func TestMigrateEmptyThenNoop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmpty(t)

	res, err := schema.Migrate(ctx, db.Pool)
	if err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	all := migrations(t)
	latest := all[len(all)-1].Version
	if res.From != 0 || res.To != latest || len(res.Applied) != len(all) {
		t.Fatalf("first migrate: got %+v, want 0 -> %d with every file applied", res, latest)
	}
	if len(res.RiverApplied) == 0 {
		t.Fatalf("first migrate applied no River migrations")
	}
	var riverTables int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'river' AND tablename = 'river_job'").Scan(&riverTables); err != nil || riverTables != 1 {
		t.Fatalf("river.river_job missing after migrate (count %d, err %v)", riverTables, err)
	}

	res, err = schema.Migrate(ctx, db.Pool)
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if len(res.Applied) != 0 || len(res.RiverApplied) != 0 || res.From != latest || res.To != latest {
		t.Fatalf("second migrate was not a no-op at version %d: %+v", latest, res)
	}
	if v := version(t, db.Pool); v != latest {
		t.Fatalf("database at version %d after migrating, want %d", v, latest)
	}
}

// migrations returns the embedded migrations, oldest first.
func migrations(t *testing.T) []schema.Migration {
	t.Helper()
	all, err := schema.Migrations()
	if err != nil || len(all) == 0 {
		t.Fatalf("embedded migrations: %v (%d files)", err, len(all))
	}
	return all
}

// version reads the database's kiln schema version.
func version(t *testing.T, db *pgxpool.Pool) int {
	t.Helper()
	var v int
	if err := db.QueryRow(context.Background(), "SELECT coalesce(max(version), 0) FROM kiln.schema_migration").Scan(&v); err != nil {
		t.Fatalf("reading the schema version: %v", err)
	}
	return v
}

func TestMigrateRefusesNewerDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	all := migrations(t)
	future := all[len(all)-1].Version + 1
	if _, err := db.Pool.Exec(ctx, "INSERT INTO kiln.schema_migration (version, name) VALUES ($1, 'from_the_future.sql')", future); err != nil {
		t.Fatal(err)
	}
	_, err := schema.Migrate(ctx, db.Pool)
	var tooNew *schema.TooNewError
	if !errors.As(err, &tooNew) {
		t.Fatalf("Migrate on a newer database: got %v, want TooNewError", err)
	}
	if tooNew.Database != future || !strings.Contains(err.Error(), "upgrade kiln") {
		t.Fatalf("unexpected error: %v", err)
	}
	if v := version(t, db.Pool); v != future {
		t.Fatalf("refused migrate changed the version to %d", v)
	}
}

func TestEverythingHasAComment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(ctx, `
		SELECT c.relname || ' (' || c.relkind::text || ')'
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'kiln' AND c.relkind IN ('r', 'v', 'm', 'p') AND obj_description(c.oid, 'pg_class') IS NULL
		UNION ALL
		SELECT c.relname || '.' || a.attname
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'kiln' AND c.relkind IN ('r', 'v', 'm', 'p') AND a.attnum > 0 AND NOT a.attisdropped
		  AND col_description(c.oid, a.attnum) IS NULL
		UNION ALL
		SELECT p.proname || '()' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'kiln' AND obj_description(p.oid, 'pg_proc') IS NULL
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var missing []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		missing = append(missing, s)
	}
	if len(missing) > 0 {
		t.Fatalf("objects in schema kiln without a COMMENT:\n  %s", strings.Join(missing, "\n  "))
	}
	var tables int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'kiln'").Scan(&tables); err != nil || tables < 10 {
		t.Fatalf("expected the kiln tables to exist, found %d (%v)", tables, err)
	}
}

// fixture seeds a platform, a bucket, a builder of that platform and a job.
type fixture struct {
	db  *pgxpool.Pool
	job int64
}

func setup(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	mustExec(t, db.Pool, `
		INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES
		  ('el9-x86_64', 'x86_64', 'rpm', 'rpmbuild'), ('el8-x86_64', 'x86_64', 'rpm', 'rpmbuild'),
		  ('el9-aarch64', 'aarch64', 'rpm', 'rpmbuild'), ('bookworm-amd64', 'amd64', 'deb', 'dpkg');
		INSERT INTO kiln.bucket (name) VALUES ('devel');
		INSERT INTO kiln.builder (name, host, slots) VALUES ('b1', 'host1', 2), ('b2', 'host2', 1);
		INSERT INTO kiln.builder_platform VALUES ('b1', 'el9-x86_64'), ('b1', 'el8-x86_64'), ('b2', 'bookworm-amd64');
		INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES (sha256('x'), 1, 262144);`)
	var job int64
	if err := db.Pool.QueryRow(ctx, "INSERT INTO kiln.job (bucket, submission_key) VALUES ('devel', 'k1') RETURNING id").Scan(&job); err != nil {
		t.Fatal(err)
	}
	return fixture{db: db.Pool, job: job}
}

func mustExec(t *testing.T, db *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestJobStatusFromTasks(t *testing.T) {
	t.Parallel()
	platforms := []string{"el9-x86_64", "el8-x86_64", "el9-aarch64"}
	cases := []struct {
		tasks []string
		want  string
	}{
		{nil, "submitted"},
		{[]string{"pending"}, "queued"},
		{[]string{"pending", "pending"}, "queued"},
		{[]string{"pending", "skipped"}, "queued"},
		{[]string{"building", "pending"}, "building"},
		{[]string{"succeeded", "pending"}, "building"},
		{[]string{"failed", "pending"}, "building"},
		{[]string{"building", "succeeded", "failed"}, "building"},
		{[]string{"succeeded"}, "succeeded"},
		{[]string{"succeeded", "skipped"}, "succeeded"},
		{[]string{"skipped", "skipped"}, "succeeded"},
		{[]string{"failed"}, "failed"},
		{[]string{"timed_out"}, "failed"},
		{[]string{"lost"}, "failed"},
		{[]string{"failed", "skipped"}, "failed"},
		{[]string{"failed", "cancelled"}, "failed"},
		{[]string{"succeeded", "failed"}, "partially_failed"},
		{[]string{"succeeded", "timed_out", "skipped"}, "partially_failed"},
		{[]string{"succeeded", "lost"}, "partially_failed"},
		{[]string{"succeeded", "cancelled"}, "partially_failed"},
		{[]string{"cancelled"}, "cancelled"},
		{[]string{"cancelled", "skipped"}, "cancelled"},
		{[]string{"cancelled", "cancelled"}, "cancelled"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.tasks, "+"), func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			ctx := context.Background()
			for i, st := range tc.tasks {
				insertTask(t, f, platforms[i], st)
			}
			var got string
			var finished bool
			if err := f.db.QueryRow(ctx, "SELECT status, finished_at IS NOT NULL FROM kiln.job WHERE id = $1", f.job).Scan(&got, &finished); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("tasks %v: job status %q, want %q", tc.tasks, got, tc.want)
			}
			final := map[string]bool{"succeeded": true, "failed": true, "partially_failed": true, "cancelled": true}
			if finished != final[got] {
				t.Fatalf("job status %s: finished_at set = %v", got, finished)
			}
		})
	}
}

// insertTask creates a task in the given status through the transitions a
// builder would make, so triggers fire as in real life.
func insertTask(t *testing.T, f fixture, platform, status string) {
	t.Helper()
	ctx := context.Background()
	var id int64
	if status == "skipped" {
		if err := f.db.QueryRow(ctx, `INSERT INTO kiln.task (job_id, platform, status, reason, finished_at)
			VALUES ($1, $2, 'skipped', 'ExclusiveArch', now()) RETURNING id`, f.job, platform).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := f.db.QueryRow(ctx, "INSERT INTO kiln.task (job_id, platform) VALUES ($1, $2) RETURNING id", f.job, platform).Scan(&id); err != nil {
		t.Fatal(err)
	}
	switch status {
	case "pending":
	case "building":
		mustExec(t, f.db, "UPDATE kiln.task SET status = 'building', builder = 'b1', attempt = 1, started_at = now(), heartbeat_at = now() WHERE id = $1", id)
	default:
		mustExec(t, f.db, "UPDATE kiln.task SET status = $2, finished_at = now(), reason = 'because' WHERE id = $1", id, status)
	}
}

func TestJobStatusFollowsTransitions(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	insertTask(t, f, "el9-x86_64", "pending")
	status := func() string {
		var s string
		if err := f.db.QueryRow(ctx, "SELECT status FROM kiln.job WHERE id = $1", f.job).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := status(); s != "queued" {
		t.Fatalf("after split: %s", s)
	}
	mustExec(t, f.db, "UPDATE kiln.task SET status = 'building', builder = 'b1', attempt = 1, started_at = now(), heartbeat_at = now() WHERE job_id = $1", f.job)
	if s := status(); s != "building" {
		t.Fatalf("after start: %s", s)
	}
	mustExec(t, f.db, "UPDATE kiln.task SET status = 'succeeded', builder = NULL, finished_at = now() WHERE job_id = $1", f.job)
	if s := status(); s != "succeeded" {
		t.Fatalf("after finish: %s", s)
	}
	var events int
	if err := f.db.QueryRow(ctx, "SELECT count(*) FROM kiln.event WHERE job_id = $1 AND kind = 'job.status'", f.job).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if events != 4 { // submitted, queued, building, succeeded
		t.Fatalf("job.status events = %d, want 4", events)
	}
}

// constraintCase is a statement that one named constraint must refuse with
// the given SQLSTATE.
type constraintCase struct {
	name, sql  string
	code, rule string
}

// constraintCases holds one case (or more) per constraint of schema kiln,
// against the rows TestConstraints seeds: job and task are their ids.
func constraintCases(job, task int64) []constraintCase {
	j, tk := itoa(job), itoa(task)
	pkg := "INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size, epoch) VALUES (" + j + ", "
	pkgFile := "INSERT INTO kiln.package_file (job_id, seq, file_name, blob_sha256, size) VALUES (" + j + ", "
	attempt := "INSERT INTO kiln.attempt (task_id, attempt, builder, status, finished_at) VALUES (" + tk + ", "
	artifact := "INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, blob_sha256, size, pruned_at) VALUES (" + tk + ", "
	buildToken := "INSERT INTO kiln.build_repo_token (expires_at, token_sha256, bucket, task_id, attempt) VALUES (now() + interval '1 hour', "
	// A blob and its chunk must be stored in one transaction (blob_chunk_guard).
	chunked := "INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES (sha256('z'), 2, 1); "
	env := "INSERT INTO kiln.environment (builder, platform, blob_sha256, size, spec, packages) VALUES ('b1', "
	key := "INSERT INTO kiln.bucket_key (bucket, fingerprint, public_key) VALUES ("
	fpr, armored := strings.Repeat("AB", 20), "'-----BEGIN PGP PUBLIC KEY BLOCK-----x'"
	bp := "INSERT INTO kiln.binary_package (sha256, format, name, version, arch, source) VALUES (sha256('x'), "
	snap := "INSERT INTO kiln.snapshot (bucket, seq) VALUES ('devel', 1); "
	sp := "INSERT INTO kiln.source_package (sha256, name, version, stanza) VALUES (sha256('x'), "
	file := "INSERT INTO kiln.repository_file (bucket, from_seq, platform, path, blob_sha256, size, package) VALUES ('devel', 1, 'el9-x86_64', "
	req := "INSERT INTO kiln.publication_request (bucket, kind, job_id, snapshot_seq) VALUES ("
	return []constraintCase{
		// Platforms, buckets, builders.
		{"platform name", "INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ('EL9 x86', 'x86_64', 'rpm', 'rpmbuild')", "23514", "platform_name_valid"},
		{"platform arch", "INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ('el10', 'X86 64', 'rpm', 'rpmbuild')", "23514", "platform_arch_valid"},
		{"platform arch length", "INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ('el10', repeat('a', 33), 'rpm', 'rpmbuild')", "23514", "platform_arch_valid"},
		{"platform backend", "INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ('el10', 'x86_64', 'rpm', 'docker')", "23514", "platform_backend_valid"},
		{"platform backend matches format", "INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ('el10', 'x86_64', 'deb', 'rpmbuild')", "23514", "platform_backend_format"},
		{"platform sbuild builds deb", "INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ('el10', 'x86_64', 'rpm', 'sbuild')", "23514", "platform_backend_format"},
		{"platform format", "INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ('el10', 'x86_64', 'apk', 'noop')", "23514", "platform_package_format_valid"},
		{"platform timeout", "INSERT INTO kiln.platform (name, arch, package_format, backend, timeout) VALUES ('el10', 'x86_64', 'rpm', 'rpmbuild', '-1 hour')", "23514", "platform_timeout_positive"},
		{"platform settings", "INSERT INTO kiln.platform (name, arch, package_format, backend, backend_settings) VALUES ('el10', 'x86_64', 'rpm', 'mock', '[]')", "23514", "platform_backend_settings_object"},
		{"platform processes", "UPDATE kiln.platform SET max_processes = 1 WHERE name = 'el9-x86_64'", "23514", "platform_max_processes_valid"},
		{"platform memory", "UPDATE kiln.platform SET max_memory = 0 WHERE name = 'el9-x86_64'", "23514", "platform_max_memory_valid"},
		{"platform disk", "UPDATE kiln.platform SET max_disk = -1 WHERE name = 'el9-x86_64'", "23514", "platform_max_disk_valid"},
		{"duplicate platform", "INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ('el9-x86_64', 'x86_64', 'rpm', 'rpmbuild')", "23505", "platform_pkey"},
		{"bucket name", "INSERT INTO kiln.bucket (name) VALUES ('../etc')", "23514", "bucket_name_valid"},
		{"bucket retention", "INSERT INTO kiln.bucket (name, retention) VALUES ('old', '-1 day')", "23514", "bucket_retention_positive"},
		{"bucket retention zero", "INSERT INTO kiln.bucket (name, retention) VALUES ('old', '0')", "23514", "bucket_retention_positive"},
		{"duplicate bucket", "INSERT INTO kiln.bucket (name) VALUES ('devel')", "23505", "bucket_pkey"},
		{"bucket grant needs bucket", "INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('nope', 'alice')", "23503", "bucket_grant_bucket_fkey"},
		{"duplicate bucket grant", "INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('devel', 'alice')", "23505", "bucket_grant_pkey"},
		{"builder name", "INSERT INTO kiln.builder (name, host) VALUES ('Bad Name', 'h')", "23514", "builder_name_valid"},
		{"builder host", "INSERT INTO kiln.builder (name, host) VALUES ('b9', 'host one')", "23514", "builder_host_valid"},
		{"builder host empty", "INSERT INTO kiln.builder (name, host) VALUES ('b9', '')", "23514", "builder_host_valid"},
		{"builder slots", "INSERT INTO kiln.builder (name, host, slots) VALUES ('b9', 'h', 0)", "23514", "builder_slots_range"},
		{"builder state", "UPDATE kiln.builder SET state = 'zombie' WHERE name = 'b1'", "23514", "builder_state_valid"},
		{"duplicate builder", "INSERT INTO kiln.builder (name, host) VALUES ('b1', 'h')", "23505", "builder_pkey"},
		{"builder platform exists", "INSERT INTO kiln.builder_platform VALUES ('b1', 'plan9-mips')", "23503", "builder_platform_platform_fkey"},
		{"builder platform needs builder", "INSERT INTO kiln.builder_platform VALUES ('ghost', 'el9-x86_64')", "23503", "builder_platform_builder_fkey"},
		{"duplicate builder platform", "INSERT INTO kiln.builder_platform VALUES ('b1', 'el9-x86_64')", "23505", "builder_platform_pkey"},
		{"duplicate queue turn", "INSERT INTO kiln.queue_turn VALUES ('build-x', 2, 'alice', now()), ('build-x', 2, 'alice', now())", "23505", "queue_turn_pkey"},
		{"duplicate log watch", "INSERT INTO kiln.log_watch VALUES (1, now()), (1, now())", "23505", "log_watch_pkey"},

		// Reports (0027).
		{"report person address", "INSERT INTO kiln.report_person (person, email) VALUES ('alice', 'a\\r\\nBcc: x@y')", "23514", "report_person_email_valid"},
		{"report person when", "INSERT INTO kiln.report_person (person, report_when) VALUES ('alice', 'sometimes')", "23514", "report_person_when_known"},
		{"duplicate report person", "INSERT INTO kiln.report_person (person) VALUES ('alice'), ('alice')", "23505", "report_person_pkey"},
		{"report bucket exists", "INSERT INTO kiln.report_bucket (bucket) VALUES ('nope')", "23503", "report_bucket_bucket_fkey"},
		{"report bucket addresses", "INSERT INTO kiln.report_bucket (bucket, emails) VALUES ('devel', ARRAY[E'a@b.c\\nBcc: x@y'])", "23514", "report_bucket_emails_valid"},
		{"report bucket when", "INSERT INTO kiln.report_bucket (bucket, report_when) VALUES ('devel', 'sometimes')", "23514", "report_bucket_when_known"},
		{"duplicate report bucket", "INSERT INTO kiln.report_bucket (bucket) VALUES ('devel'), ('devel')", "23505", "report_bucket_pkey"},
		{"job report address", "INSERT INTO kiln.job_report_address (job_id, email) VALUES (" + j + ", 'not an address')", "23514", "job_report_address_valid"},
		{"job report address needs job", "INSERT INTO kiln.job_report_address (job_id, email) VALUES (-1, 'a@b.example')", "23503", "job_report_address_job_id_fkey"},
		{"duplicate job report address", "INSERT INTO kiln.job_report_address (job_id, email) VALUES (" + j + ", 'a@b.example'), (" + j + ", 'a@b.example')", "23505", "job_report_address_pkey"},
		{"webhook url", "INSERT INTO kiln.report_webhook (person, url) VALUES ('alice', 'file:///etc/passwd')", "23514", "report_webhook_url_valid"},
		{"webhook when", "INSERT INTO kiln.report_webhook (person, url, report_when) VALUES ('alice', 'https://h.example/x', 'sometimes')", "23514", "report_webhook_when_known"},
		{"webhook one owner", "INSERT INTO kiln.report_webhook (person, bucket, url) VALUES ('alice', 'devel', 'https://h.example/x')", "23514", "report_webhook_one_owner"},
		{"webhook bucket exists", "INSERT INTO kiln.report_webhook (bucket, url) VALUES ('nope', 'https://h.example/x')", "23503", "report_webhook_bucket_fkey"},
		{"duplicate webhook", "INSERT INTO kiln.report_webhook (id, person, url) OVERRIDING SYSTEM VALUE VALUES (7, 'alice', 'https://h.example/x'), (7, 'alice', 'https://h.example/x')", "23505", "report_webhook_pkey"},
		{"webhook secret length", "WITH h AS (INSERT INTO kiln.report_webhook (person, url) VALUES ('alice', 'https://h.example/x') RETURNING id) INSERT INTO kiln.report_webhook_secret SELECT id, 'short' FROM h", "23514", "report_webhook_secret_length"},
		{"webhook secret needs webhook", "INSERT INTO kiln.report_webhook_secret VALUES (-1, repeat('s', 64))", "23503", "report_webhook_secret_webhook_id_fkey"},
		{"duplicate webhook secret", "WITH h AS (INSERT INTO kiln.report_webhook (person, url) VALUES ('alice', 'https://h.example/x') RETURNING id) INSERT INTO kiln.report_webhook_secret SELECT id, repeat('s', 64) FROM h, generate_series(1, 2)", "23505", "report_webhook_secret_pkey"},
		{"delivery channel", "INSERT INTO kiln.report_delivery (job_id, channel, target, job_status) VALUES (" + j + ", 'pigeon', 'a@b.example', 'failed')", "23514", "report_delivery_channel_known"},
		{"delivery status", "INSERT INTO kiln.report_delivery (job_id, channel, target, job_status, status) VALUES (" + j + ", 'mail', 'a@b.example', 'failed', 'lost')", "23514", "report_delivery_status_known"},
		{"delivery needs job", "INSERT INTO kiln.report_delivery (job_id, channel, target, job_status) VALUES (" + "-1, 'mail', 'a@b.example', 'failed')", "23503", "report_delivery_job_id_fkey"},
		{"delivery webhook exists", "INSERT INTO kiln.report_delivery (job_id, channel, target, job_status, webhook_id) VALUES (" + j + ", 'webhook', 'x', 'failed', -1)", "23503", "report_delivery_webhook_id_fkey"},
		{"delivery once", "INSERT INTO kiln.report_delivery (job_id, channel, target, job_status) VALUES (" + j + ", 'mail', 'a@b.example', 'failed'), (" + j + ", 'mail', 'a@b.example', 'failed')", "23505", "report_delivery_once"},
		{"duplicate delivery", "INSERT INTO kiln.report_delivery (id, job_id, channel, target, job_status) OVERRIDING SYSTEM VALUE VALUES (7, " + j + ", 'mail', 'a@b.example', 'failed'), (7, " + j + ", 'mail', 'c@d.example', 'failed')", "23505", "report_delivery_pkey"},

		// Blobs.
		{"blob hash length", "INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES ('\\x00', 1, 1)", "23514", "blob_sha256_length"},
		{"blob content hash length", "INSERT INTO kiln.blob (sha256, size, chunk_size, content_sha256) VALUES (sha256('y'), 1, 1, '\\x01')", "23514", "blob_content_sha256_length"},
		{"blob negative size", "INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES (sha256('y'), -5, 1)", "23514", "blob_size_nonnegative"},
		{"blob chunk size zero", "INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES (sha256('y'), 1, 0)", "23514", "blob_chunk_size_positive"},
		{"blob chunk size too big", "INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES (sha256('y'), 1, 16777217)", "23514", "blob_chunk_size_positive"},
		{"duplicate blob", "INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES (sha256('x'), 1, 262144)", "23505", "blob_pkey"},
		{"blob chunk seq", chunked + "INSERT INTO kiln.blob_chunk (sha256, seq, data) VALUES (sha256('z'), -1, 'a')", "23514", "blob_chunk_seq_nonnegative"},
		{"duplicate blob chunk", chunked + "INSERT INTO kiln.blob_chunk (sha256, seq, data) VALUES (sha256('z'), 0, 'a'), (sha256('z'), 0, 'b')", "23505", "blob_chunk_pkey"},
		// The chunk guard refuses a chunk of a missing blob before the key is
		// checked; a chunk moved to a missing blob meets the key.
		{"blob chunk needs blob", chunked + "INSERT INTO kiln.blob_chunk (sha256, seq, data) VALUES (sha256('z'), 0, 'a'); UPDATE kiln.blob_chunk SET sha256 = sha256('nope')", "23503", "blob_chunk_sha256_fkey"},

		// Jobs and packages.
		{"job status", "UPDATE kiln.job SET status = 'exploded' WHERE id = " + j, "23514", "job_status_valid"},
		{"job priority", "INSERT INTO kiln.job (bucket, submission_key, priority) VALUES ('devel', 'p', 9)", "23514", "job_priority_range"},
		{"job policy", "INSERT INTO kiln.job (bucket, submission_key, policy) VALUES ('devel', 'p', 'sometimes')", "23514", "job_policy_valid"},
		{"job note length", "INSERT INTO kiln.job (bucket, submission_key, note) VALUES ('devel', 'p', repeat('x', 2001))", "23514", "job_note_length"},
		{"job options", "INSERT INTO kiln.job (bucket, submission_key, options) VALUES ('devel', 'p', '[\"nocheck\"]')", "23514", "job_options_object"},
		{"job platforms", "INSERT INTO kiln.job (bucket, submission_key, platforms) VALUES ('devel', 'p', '{}')", "23514", "job_platforms_nonempty"},
		{"job submission key", "INSERT INTO kiln.job (bucket, submission_key) VALUES ('devel', 'a b')", "23514", "job_submission_key_valid"},
		{"job submission key unique", "INSERT INTO kiln.job (bucket, submission_key) VALUES ('devel', 'k1')", "23505", "job_submission_key_unique"},
		{"job final has finished_at", "UPDATE kiln.job SET status = 'failed' WHERE id = " + j, "23514", "job_finished_when_final"},
		{"job invalid has reason", "UPDATE kiln.job SET status = 'invalid', finished_at = now() WHERE id = " + j, "23514", "job_invalid_has_reason"},
		{"job resubmit of a missing job", "INSERT INTO kiln.job (bucket, submission_key, resubmit_of) VALUES ('devel', 'p', 999999)", "23503", "job_resubmit_of_fkey"},
		{"duplicate job id", "INSERT INTO kiln.job (id, bucket, submission_key) OVERRIDING SYSTEM VALUE VALUES (" + j + ", 'devel', 'p')", "23505", "job_pkey"},
		{"package file name with separator", pkg + "1, '../x.src.rpm', 'srpm', sha256('x'), 1, 0)", "23514", "package_file_name_safe"},
		{"package file name leading dash", pkg + "1, '-x.src.rpm', 'srpm', sha256('x'), 1, 0)", "23514", "package_file_name_safe"},
		{"package file name control char", pkg + "1, E'x\\n.src.rpm', 'srpm', sha256('x'), 1, 0)", "23514", "package_file_name_safe"},
		{"package seq", pkg + "-1, 'x.src.rpm', 'srpm', sha256('x'), 1, 0)", "23514", "package_seq_nonnegative"},
		{"package format", pkg + "1, 'x.tar.gz', 'tarball', sha256('x'), 1, 0)", "23514", "package_format_valid"},
		{"package epoch", pkg + "1, 'x.src.rpm', 'srpm', sha256('x'), 1, -1)", "23514", "package_epoch_nonnegative"},
		{"package blob exists", pkg + "1, 'x.src.rpm', 'srpm', sha256('nope'), 1, 0)", "23503", "package_blob_sha256_fkey"},
		{"package negative size", pkg + "1, 'x.src.rpm', 'srpm', sha256('x'), -1, 0)", "23514", "package_size_nonnegative"},
		{"package needs job", "INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size) VALUES (999999, 0, 'x.src.rpm', 'srpm', sha256('x'), 1)", "23503", "package_job_id_fkey"},
		{"package file name unique in job", pkg + "1, 'a.dsc', 'dsc', sha256('x'), 1, 0)", "23505", "package_file_name_unique"},
		{"duplicate package seq", pkg + "0, 'b.dsc', 'dsc', sha256('x'), 1, 0)", "23505", "package_pkey"},
		{"package file name", pkgFile + "0, '../a.tar.gz', sha256('x'), 1)", "23514", "package_file_file_name_safe"},
		{"package file size", pkgFile + "0, 'b.tar.gz', sha256('x'), -1)", "23514", "package_file_size_nonnegative"},
		{"package file blob exists", pkgFile + "0, 'b.tar.gz', sha256('nope'), 1)", "23503", "package_file_blob_sha256_fkey"},
		{"package file needs package", pkgFile + "7, 'b.tar.gz', sha256('x'), 1)", "23503", "package_file_job_id_seq_fkey"},
		{"duplicate package file", pkgFile + "0, 'a.tar.gz', sha256('x'), 1)", "23505", "package_file_pkey"},

		// Tasks and attempts.
		{"task platform exists", "INSERT INTO kiln.task (job_id, platform) VALUES (" + j + ", 'solaris-sparc')", "23503", "task_platform_fkey"},
		{"task needs job", "INSERT INTO kiln.task (job_id, platform) VALUES (999999, 'el9-x86_64')", "23503", "task_job_id_fkey"},
		{"task unique per platform", "INSERT INTO kiln.task (job_id, platform) VALUES (" + j + ", 'el9-x86_64')", "23505", "task_job_platform_unique"},
		{"duplicate task id", "INSERT INTO kiln.task (id, job_id, platform) OVERRIDING SYSTEM VALUE VALUES (" + tk + ", " + j + ", 'el8-x86_64')", "23505", "task_pkey"},
		{"task status", "UPDATE kiln.task SET status = 'melted' WHERE id = " + tk, "23514", "task_status_valid"},
		{"task builder of another platform", "UPDATE kiln.task SET status = 'building', builder = 'b2', attempt = 1, started_at = now(), heartbeat_at = now() WHERE id = " + tk, "23503", "task_builder_platform_fk"},
		{"task building needs builder", "UPDATE kiln.task SET status = 'building', attempt = 1, started_at = now(), heartbeat_at = now() WHERE id = " + tk, "23514", "task_builder_iff_building"},
		{"task building needs attempt", "UPDATE kiln.task SET status = 'building', builder = 'b1', started_at = now(), heartbeat_at = now() WHERE id = " + tk, "23514", "task_building_has_attempt"},
		{"task final needs finished_at", "UPDATE kiln.task SET status = 'succeeded' WHERE id = " + tk, "23514", "task_finished_when_final"},
		{"task failure needs reason", "UPDATE kiln.task SET status = 'failed', finished_at = now() WHERE id = " + tk, "23514", "task_reason_when_unsuccessful"},
		{"task negative attempt", "UPDATE kiln.task SET attempt = -1 WHERE id = " + tk, "23514", "task_attempt_nonnegative"},
		{"task negative lost count", "UPDATE kiln.task SET lost_count = -1 WHERE id = " + tk, "23514", "task_lost_count_nonnegative"},
		{"protocol setting one row", "INSERT INTO kiln.protocol_setting (singleton) VALUES (false)", "23514", "protocol_setting_one_row"},
		{"protocol setting only one", "INSERT INTO kiln.protocol_setting DEFAULT VALUES", "23505", "protocol_setting_pkey"},
		{"protocol setting max lost", "UPDATE kiln.protocol_setting SET max_lost = -1", "23514", "protocol_setting_max_lost_range"},
		{"attempt needs task", "INSERT INTO kiln.attempt (task_id, attempt, builder) VALUES (999999, 1, 'b1')", "23503", "attempt_task_id_fkey"},
		{"attempt status", attempt + "2, 'b1', 'weird', now())", "23514", "attempt_status_valid"},
		{"attempt number", attempt + "0, 'b1', 'building', NULL)", "23514", "attempt_number_positive"},
		{"attempt final needs finished_at", attempt + "2, 'b1', 'failed', NULL)", "23514", "attempt_finished_when_final"},
		{"attempt building has no finished_at", attempt + "2, 'b1', 'building', now())", "23514", "attempt_finished_when_final"},
		{"attempt log bytes", "UPDATE kiln.attempt SET log_bytes = -1 WHERE task_id = " + tk, "23514", "attempt_log_bytes_nonnegative"},
		{"duplicate attempt", attempt + "1, 'b1', 'building', NULL)", "23505", "attempt_pkey"},
		{"attempt failure stage unknown", "UPDATE kiln.attempt SET status = 'failed', finished_at = now(), failure_stage = 'bad-luck' WHERE task_id = " + tk, "23503", "attempt_failure_stage_fkey"},
		{"attempt failure stage only when failed", "UPDATE kiln.attempt SET status = 'succeeded', finished_at = now(), failure_stage = 'build' WHERE task_id = " + tk, "23514", "attempt_failure_stage_when_failed"},
		{"attempt retried only when failed", "UPDATE kiln.attempt SET status = 'lost', finished_at = now(), retried = true WHERE task_id = " + tk, "23514", "attempt_retried_when_failed"},
		{"task failure stage unknown", "UPDATE kiln.task SET failure_stage = 'bad-luck' WHERE id = " + tk, "23503", "task_failure_stage_fkey"},
		{"task negative infra retries", "UPDATE kiln.task SET infra_retries = -1 WHERE id = " + tk, "23514", "task_infra_retries_nonnegative"},
		{"duplicate failure stage", "INSERT INTO kiln.failure_stage VALUES ('build', false, 'again')", "23505", "failure_stage_pkey"},
		{"platform infra retries", "UPDATE kiln.platform SET max_infra_retries = -1 WHERE name = 'el9-x86_64'", "23514", "platform_max_infra_retries_range"},
		{"platform infra retry backoff", "UPDATE kiln.platform SET infra_retry_backoff = '-1 second' WHERE name = 'el9-x86_64'", "23514", "platform_infra_retry_backoff_range"},

		// Artifacts and logs.
		{"artifact needs attempt", artifact + "7, 'package', 'x.rpm', sha256('x'), 1, NULL)", "23503", "artifact_task_id_attempt_fkey"},
		{"artifact kind", artifact + "1, 'core', 'core.1', sha256('x'), 1, NULL)", "23514", "artifact_kind_valid"},
		{"artifact file name", artifact + "1, 'package', 'RPMS/x.rpm', sha256('x'), 1, NULL)", "23514", "artifact_file_name_safe"},
		{"artifact size", artifact + "1, 'package', 'x.rpm', sha256('x'), -1, NULL)", "23514", "artifact_size_nonnegative"},
		{"artifact without blob must be pruned", artifact + "1, 'package', 'x.rpm', NULL, 1, NULL)", "23514", "artifact_blob_unless_pruned"},
		{"pruned artifact has no blob", artifact + "1, 'package', 'x.rpm', sha256('x'), 1, now())", "23514", "artifact_blob_unless_pruned"},
		{"artifact blob exists", artifact + "1, 'package', 'x.rpm', sha256('nope'), 1, NULL)", "23503", "artifact_blob_sha256_fkey"},
		{"artifact file name unique per attempt", artifact + "1, 'log', 'build.log', sha256('x'), 1, NULL)", "23505", "artifact_file_name_unique"},
		{"duplicate artifact id", "INSERT INTO kiln.artifact (id, task_id, attempt, kind, file_name, blob_sha256, size) OVERRIDING SYSTEM VALUE " +
			"SELECT id, task_id, attempt, kind, 'other.log', blob_sha256, size FROM kiln.artifact", "23505", "artifact_pkey"},
		{"log chunk seq", "INSERT INTO kiln.log_chunk (task_id, attempt, seq, data) VALUES (" + tk + ", 1, -1, 'x')", "23514", "log_chunk_seq_nonnegative"},
		{"log chunk needs attempt", "INSERT INTO kiln.log_chunk (task_id, attempt, seq, data) VALUES (" + tk + ", 9, 0, 'x')", "23503", "log_chunk_task_id_attempt_fkey"},
		{"duplicate log chunk", "INSERT INTO kiln.log_chunk (task_id, attempt, seq, data) VALUES (" + tk + ", 1, 0, 'x')", "23505", "log_chunk_pkey"},

		// Quotas (0018).
		{"unknown farm setting", "INSERT INTO kiln.farm_setting (name, value) VALUES ('db', 'x')", "23514", "farm_setting_name_known"},
		{"web address not http", "INSERT INTO kiln.farm_setting (name, value) VALUES ('web_url', 'javascript:alert(1)')", "23514", "farm_setting_web_url_valid"},
		{"duplicate farm setting", "INSERT INTO kiln.farm_setting (name, value) VALUES ('web_url', 'https://a.example.org'), ('web_url', 'https://b.example.org')", "23505", "farm_setting_pkey"},
		{"quota limit negative", "INSERT INTO kiln.quota (person, jobs_per_hour) VALUES ('alice', -1)", "23514", "quota_limits_nonnegative"},
		{"quota defaults incomplete", "UPDATE kiln.quota SET bytes_per_day = NULL WHERE person = 'public'", "23514", "quota_defaults_complete"},
		{"duplicate quota", "INSERT INTO kiln.quota SELECT * FROM kiln.quota_builtin()", "23505", "quota_pkey"},
		{"quota usage kind", "INSERT INTO kiln.quota_usage (person, quota, window_start, used) VALUES ('alice', 'options_bytes', now(), 1)", "23514", "quota_usage_quota_valid"},
		{"quota usage negative", "INSERT INTO kiln.quota_usage (person, quota, window_start, used) VALUES ('alice', 'jobs_per_hour', now(), -1)", "23514", "quota_usage_used_nonnegative"},
		{"duplicate quota usage", "INSERT INTO kiln.quota_usage (person, quota, window_start, used) VALUES ('alice', 'jobs_per_hour', 'epoch', 1), ('alice', 'jobs_per_hour', 'epoch', 2)", "23505", "quota_usage_pkey"},
		{"quota River jobs count", "INSERT INTO kiln.quota_river_jobs (job_id, validate_river_jobs) VALUES (" + j + ", 0)", "23514", "quota_river_jobs_count_positive"},
		{"quota River jobs need a job", "INSERT INTO kiln.quota_river_jobs (job_id, validate_river_jobs) VALUES (-1, 1)", "23503", "quota_river_jobs_job_id_fkey"},
		{"duplicate quota River jobs", "INSERT INTO kiln.quota_river_jobs (job_id, validate_river_jobs) VALUES (" + j + ", 1), (" + j + ", 2)", "23505", "quota_river_jobs_pkey"},
		// Build environments (0020).
		{"environment platform exists", env + "'nope', sha256('x'), 1, '{}', '{}')", "23503", "environment_platform_fkey"},
		{"environment blob exists", env + "'el9-x86_64', sha256('nope'), 1, '{}', '{}')", "23503", "environment_blob_sha256_fkey"},
		{"environment size", env + "'el9-x86_64', sha256('x'), -1, '{}', '{}')", "23514", "environment_size_nonnegative"},
		{"environment spec", env + "'el9-x86_64', sha256('x'), 1, '[]', '{}')", "23514", "environment_spec_object"},
		{"environment packages", env + "'el9-x86_64', sha256('x'), 1, '{}', '[]')", "23514", "environment_packages_object"},
		{"duplicate environment id", env + "'el9-x86_64', sha256('x'), 1, '{}', '{}'); " +
			"INSERT INTO kiln.environment (id, platform, blob_sha256, size, spec, builder) OVERRIDING SYSTEM VALUE " +
			"SELECT min(id), platform, blob_sha256, size, spec, builder FROM kiln.environment GROUP BY 2, 3, 4, 5, 6", "23505", "environment_pkey"},
		{"platform environment platform exists", "INSERT INTO kiln.platform_environment (platform, spec) VALUES ('nope', '{}')", "23503", "platform_environment_platform_fkey"},
		{"platform environment exists", "INSERT INTO kiln.platform_environment (platform, environment, spec) VALUES ('el9-x86_64', 999999, '{}')", "23503", "platform_environment_environment_fkey"},
		{"platform environment spec", "INSERT INTO kiln.platform_environment (platform, spec) VALUES ('el9-x86_64', '\"bookworm\"')", "23514", "platform_environment_spec_object"},
		{"platform environment max age", "INSERT INTO kiln.platform_environment (platform, spec, max_age) VALUES ('el9-x86_64', '{}', '0')", "23514", "platform_environment_max_age_positive"},
		{"duplicate platform environment", "INSERT INTO kiln.platform_environment (platform, spec) VALUES ('el9-x86_64', '{}'), ('el9-x86_64', '{}')", "23505", "platform_environment_pkey"},

		// Events and migrations.
		{"event kind", "INSERT INTO kiln.event (kind) VALUES ('Not A Kind')", "23514", "event_kind_valid"},
		{"event detail", "INSERT INTO kiln.event (kind, detail) VALUES ('test.detail', '\"text\"')", "23514", "event_detail_object"},
		{"duplicate event id", "INSERT INTO kiln.event (id, kind) OVERRIDING SYSTEM VALUE SELECT min(id), 'test.again' FROM kiln.event", "23505", "event_pkey"},
		{"migration applied twice", "INSERT INTO kiln.schema_migration (version, name) SELECT min(version), 'again.sql' FROM kiln.schema_migration", "23505", "schema_migration_pkey"},
		// Repositories (0021).
		{"bucket publish policy", "UPDATE kiln.bucket SET publish_policy = 'sometimes' WHERE name = 'devel'", "23514", "bucket_publish_policy_valid"},
		{"bucket keep snapshots", "UPDATE kiln.bucket SET keep_snapshots = 0 WHERE name = 'devel'", "23514", "bucket_keep_snapshots_positive"},
		// Building against buckets (0022).
		{"bucket builds against itself", "UPDATE kiln.bucket SET build_against = '{stable,devel}' WHERE name = 'devel'", "23514", "bucket_build_against_valid"},
		{"bucket builds against a NULL", "UPDATE kiln.bucket SET build_against = ARRAY['stable', NULL] WHERE name = 'devel'", "23514", "bucket_build_against_valid"},
		{"bucket builds against too many", "UPDATE kiln.bucket SET build_against = '{a,b,c,d,e,f,g,h,i}' WHERE name = 'devel'", "23514", "bucket_build_against_valid"},
		{"key fingerprint", key + "'devel', 'not hex', " + armored + ")", "23514", "bucket_key_fingerprint_valid"},
		{"key armored", key + "'devel', '" + fpr + "', 'binary junk')", "23514", "bucket_key_armored"},
		{"key needs bucket", key + "'nope', '" + fpr + "', " + armored + ")", "23503", "bucket_key_bucket_fkey"},
		{"duplicate key", key + "'devel', '" + fpr + "', " + armored + "); " + key + "'devel', '" + fpr + "', " + armored + ")", "23505", "bucket_key_pkey"},
		{"retired key inactive", "INSERT INTO kiln.bucket_key (bucket, fingerprint, public_key, active, retired_at) VALUES ('devel', '" + fpr + "', " + armored + ", true, now())", "23514", "bucket_key_retired_inactive"},
		{"binary package format", bp + "'apk', 'a', '1', 'amd64', 'a')", "23514", "binary_package_format_valid"},
		{"binary package name", bp + "'deb', '../a', '1', 'amd64', 'a')", "23514", "binary_package_name_valid"},
		{"binary package version", bp + "'deb', 'a', '1/../2', 'amd64', 'a')", "23514", "binary_package_version_valid"},
		{"binary package arch", bp + "'deb', 'a', '1', 'AMD 64', 'a')", "23514", "binary_package_arch_valid"},
		{"binary package source", bp + "'deb', 'a', '1', 'amd64', '/a')", "23514", "binary_package_source_valid"},
		{"binary package needs blob", "INSERT INTO kiln.binary_package (sha256, format, name, version, arch, source) VALUES (sha256('nope'), 'deb', 'a', '1', 'amd64', 'a')", "23503", "binary_package_sha256_fkey"},
		{"duplicate binary package", bp + "'deb', 'a', '1', 'amd64', 'a'); " + bp + "'deb', 'a', '1', 'amd64', 'a')", "23505", "binary_package_pkey"},
		{"snapshot seq", "INSERT INTO kiln.snapshot (bucket, seq) VALUES ('devel', 0)", "23514", "snapshot_seq_positive"},
		{"snapshot needs bucket", "INSERT INTO kiln.snapshot (bucket, seq) VALUES ('nope', 1)", "23503", "snapshot_bucket_fkey"},
		{"duplicate snapshot seq", snap + snap, "23505", "snapshot_seq_unique"},
		{"duplicate snapshot id", snap + "INSERT INTO kiln.snapshot (id, bucket, seq) OVERRIDING SYSTEM VALUE SELECT id, 'devel', 2 FROM kiln.snapshot", "23505", "snapshot_pkey"},
		{"snapshot file path traversal", snap + file + "'dists/../../etc/passwd', sha256('x'), 1, NULL)", "23514", "repository_file_path_safe"},
		{"snapshot file absolute path", snap + file + "'/etc/passwd', sha256('x'), 1, NULL)", "23514", "repository_file_path_safe"},
		{"snapshot file size", snap + file + "'a', sha256('x'), -1, NULL)", "23514", "repository_file_size_nonnegative"},
		{"repository file needs bucket", "INSERT INTO kiln.repository_file (bucket, from_seq, platform, path, blob_sha256, size) VALUES ('nope', 1, 'el9-x86_64', 'a', sha256('x'), 1)", "23503", "repository_file_bucket_fkey"},
		{"repository file needs platform", "INSERT INTO kiln.repository_file (bucket, from_seq, platform, path, blob_sha256, size) VALUES ('devel', 1, 'nope', 'a', sha256('x'), 1)", "23503", "repository_file_platform_fkey"},
		{"repository file lifetime", "INSERT INTO kiln.repository_file (bucket, from_seq, until_seq, platform, path, blob_sha256, size) VALUES ('devel', 2, 2, 'el9-x86_64', 'a', sha256('x'), 1)", "23514", "repository_file_lifetime"},
		{"repository file from 0", "INSERT INTO kiln.repository_file (bucket, from_seq, platform, path, blob_sha256, size) VALUES ('devel', 0, 'el9-x86_64', 'a', sha256('x'), 1)", "23514", "repository_file_lifetime"},
		{"snapshot file needs blob", snap + file + "'a', sha256('nope'), 1, NULL)", "23503", "repository_file_blob_sha256_fkey"},
		{"snapshot file needs package", snap + file + "'a', sha256('x'), 1, sha256('x'))", "23503", "repository_file_package_fkey"},
		// Source packages (0029).
		{"source package name", sp + "'../a', '1', '')", "23514", "source_package_name_valid"},
		{"source package version", sp + "'ab', '1_2', '')", "23514", "source_package_version_valid"},
		{"source package stanza", sp + "'ab', '1', E'Package: ab\n\nPackage: evil\n')", "23514", "source_package_stanza_one_paragraph"},
		{"source package needs blob", "INSERT INTO kiln.source_package (sha256, name, version, stanza) VALUES (sha256('nope'), 'ab', '1', '')", "23503", "source_package_sha256_fkey"},
		{"duplicate source package", sp + "'ab', '1', ''); " + sp + "'ab', '1', '')", "23505", "source_package_pkey"},
		{"snapshot file needs source package", snap + "INSERT INTO kiln.repository_file (bucket, from_seq, platform, path, blob_sha256, size, source_package) VALUES ('devel', 1, 'el9-x86_64', 'a', sha256('x'), 1, sha256('x'))", "23503", "repository_file_source_package_fkey"},
		{"snapshot file binary or source", snap + bp + "'deb', 'a', '1', 'amd64', 'a'); " + sp + "'ab', '1', ''); " +
			"INSERT INTO kiln.repository_file (bucket, from_seq, platform, path, blob_sha256, size, package, source_package) VALUES ('devel', 1, 'el9-x86_64', 'a', sha256('x'), 1, sha256('x'), sha256('x'))", "23514", "repository_file_binary_or_source"},
		{"snapshot file package is its blob", bp + "'deb', 'a', '1', 'amd64', 'a'); " + snap + file + "'a', sha256('y'), 1, sha256('x'))", "23514", "repository_file_package_is_blob"},
		{"duplicate snapshot file", snap + file + "'a', sha256('x'), 1, NULL); " + file + "'a', sha256('x'), 1, NULL)", "23505", "repository_file_pkey"},
		{"publication needs bucket", "INSERT INTO kiln.bucket_publication (bucket) VALUES ('nope')", "23503", "bucket_publication_bucket_fkey"},
		{"publication needs snapshot", "INSERT INTO kiln.bucket_publication (bucket, current_snapshot) VALUES ('devel', -1)", "23503", "bucket_publication_current_snapshot_fkey"},
		{"duplicate publication", "INSERT INTO kiln.bucket_publication (bucket) VALUES ('devel'); INSERT INTO kiln.bucket_publication (bucket) VALUES ('devel')", "23505", "bucket_publication_pkey"},
		{"request kind", req + "'devel', 'delete', NULL, NULL)", "23514", "publication_request_kind_valid"},
		{"request job", req + "'devel', 'promote', NULL, NULL)", "23514", "publication_request_job"},
		{"request seq", req + "'devel', 'rollback', NULL, NULL)", "23514", "publication_request_seq"},
		{"request remove names a package", req + "'devel', 'remove', NULL, NULL)", "23514", "publication_request_remove"},
		{"request package name", "INSERT INTO kiln.publication_request (bucket, kind, package_name) VALUES ('devel', 'remove', '../x')", "23514", "publication_request_package_name_valid"},
		{"request needs platform", "INSERT INTO kiln.publication_request (bucket, kind, package_name, platform) VALUES ('devel', 'remove', 'x', 'nope')", "23503", "publication_request_platform_fkey"},
		{"request needs bucket", req + "'nope', 'rebuild', NULL, NULL)", "23503", "publication_request_bucket_fkey"},
		{"request done has outcome", "INSERT INTO kiln.publication_request (bucket, kind, done_at) VALUES ('devel', 'rebuild', now())", "23514", "publication_request_done"},
		{"request needs snapshot", "INSERT INTO kiln.publication_request (bucket, kind, snapshot_id) VALUES ('devel', 'rebuild', -1)", "23503", "publication_request_snapshot_id_fkey"},
		{"duplicate request id", req + "'devel', 'rebuild', NULL, NULL); INSERT INTO kiln.publication_request (id, bucket, kind) OVERRIDING SYSTEM VALUE SELECT id, 'devel', 'rebuild' FROM kiln.publication_request", "23505", "publication_request_pkey"},
		{"token length", "INSERT INTO kiln.repo_token (token_sha256) VALUES ('\\x00')", "23514", "repo_token_sha256_length"},
		{"duplicate token", "INSERT INTO kiln.repo_token (token_sha256) VALUES (sha256('t')); INSERT INTO kiln.repo_token (token_sha256) VALUES (sha256('t'))", "23505", "repo_token_pkey"},
		{"build token length", buildToken + "'\\x00', 'devel', " + tk + ", 1)", "23514", "build_repo_token_sha256_length"},
		{"build token attempt", buildToken + "sha256('b'), 'devel', " + tk + ", 0)", "23514", "build_repo_token_attempt_positive"},
		{"build token needs bucket", buildToken + "sha256('b'), 'nope', " + tk + ", 1)", "23503", "build_repo_token_bucket_fkey"},
		{"build token needs task", buildToken + "sha256('b'), 'devel', -1, 1)", "23503", "build_repo_token_task_id_fkey"},
		{"duplicate build token", buildToken + "sha256('b'), 'devel', " + tk + ", 1); " + buildToken + "sha256('b'), 'devel', " + tk + ", 1)", "23505", "build_repo_token_pkey"},
	}
}

func TestConstraints(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	var task int64
	if err := f.db.QueryRow(ctx, "INSERT INTO kiln.task (job_id, platform) VALUES ($1, 'el9-x86_64') RETURNING id", f.job).Scan(&task); err != nil {
		t.Fatal(err)
	}
	// One row of each kind, for the cases that collide with an existing row.
	mustExec(t, f.db, `
		INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('devel', 'alice');
		INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size) VALUES (`+itoa(f.job)+`, 0, 'a.dsc', 'dsc', sha256('x'), 1);
		INSERT INTO kiln.package_file (job_id, seq, file_name, blob_sha256, size) VALUES (`+itoa(f.job)+`, 0, 'a.tar.gz', sha256('x'), 1);
		INSERT INTO kiln.attempt (task_id, attempt, builder) VALUES (`+itoa(task)+`, 1, 'b1');
		INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, blob_sha256, size) VALUES (`+itoa(task)+`, 1, 'log', 'build.log', sha256('x'), 1);
		INSERT INTO kiln.log_chunk (task_id, attempt, seq, data) VALUES (`+itoa(task)+`, 1, 0, 'first line');`)
	for _, tc := range constraintCases(f.job, task) {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := f.db.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck
			_, err = tx.Exec(ctx, tc.sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("%s: got %v, want error %s on %s", tc.sql, err, tc.code, tc.rule)
			}
			if pgErr.Code != tc.code || pgErr.ConstraintName != tc.rule {
				t.Fatalf("%s: got %s on %q (%s), want %s on %s", tc.sql, pgErr.Code, pgErr.ConstraintName, pgErr.Message, tc.code, tc.rule)
			}
		})
	}
}

// Every check, foreign-key, unique and primary-key constraint of schema kiln
// has a case in TestConstraints: a migration that adds one without a case
// fails here.
func TestEveryConstraintHasACase(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(context.Background(), `
		SELECT c.conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
		WHERE n.nspname = 'kiln' AND c.contype IN ('c', 'f', 'u', 'p', 'x') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	catalog, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, c := range constraintCases(0, 0) {
		covered[c.rule] = true
	}
	var missing []string
	for _, name := range catalog {
		if !covered[name] {
			missing = append(missing, name)
		}
		delete(covered, name)
	}
	if len(missing) > 0 {
		t.Errorf("constraints of schema kiln without a case in constraintCases (schema_test.go):\n  %s", strings.Join(missing, "\n  "))
	}
	for name := range covered {
		t.Errorf("constraintCases names %s, which schema kiln does not have", name)
	}
	if len(catalog) < 80 {
		t.Fatalf("the catalog lists only %d constraints of schema kiln: is the query right?", len(catalog))
	}
}

func TestEventsAreAppendOnlyAndStampActor(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	var actor string
	if err := f.db.QueryRow(ctx, "INSERT INTO kiln.event (kind, actor) VALUES ('test.claim', 'somebody_else') RETURNING actor").Scan(&actor); err != nil {
		t.Fatal(err)
	}
	if actor != "postgres" {
		t.Fatalf("event actor = %q, want the session user postgres", actor)
	}
	for _, sql := range []string{"UPDATE kiln.event SET kind = 'x'", "DELETE FROM kiln.event", "TRUNCATE kiln.event"} {
		_, err := f.db.Exec(ctx, sql)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want append-only refusal", sql, err)
		}
	}
	var submitter string
	if err := f.db.QueryRow(ctx, "INSERT INTO kiln.job (bucket, submission_key, submitter) VALUES ('devel', 'k2', 'mallory') RETURNING submitter").Scan(&submitter); err != nil {
		t.Fatal(err)
	}
	if submitter != "postgres" {
		t.Fatalf("a job claiming submitter mallory was stored as %q, want the session user", submitter)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A builder's heartbeat does not call kiln.builder_changed (the trigger's
// WHEN clause, 0041); a registration and a change of state, enabled or
// draining each record a builder.state event, and a heartbeat none.
func TestBuilderEventsOnlyForChanges(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	tx, err := f.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	count := func(sql string) int64 {
		t.Helper()
		var n int64
		if err := tx.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	const (
		calls  = "SELECT coalesce(pg_stat_get_xact_function_calls('kiln.builder_changed()'::regprocedure), 0)"
		events = "SELECT count(*) FROM kiln.event WHERE kind = 'builder.state' AND builder = 'b7'"
	)
	for _, step := range []struct {
		sql           string
		calls, events int64
	}{
		{"SET LOCAL track_functions = 'all'", 0, 0},
		{"INSERT INTO kiln.builder (name, host, state) VALUES ('b7', 'h', 'online')", 1, 1},
		{"UPDATE kiln.builder SET heartbeat_at = now(), state = 'online' WHERE name = 'b7'", 1, 1},
		{"UPDATE kiln.builder SET heartbeat_at = now(), host = 'h2' WHERE name = 'b7'", 1, 1},
		{"UPDATE kiln.builder SET enabled = false WHERE name = 'b7'", 2, 2},
		{"UPDATE kiln.builder SET draining = true WHERE name = 'b7'", 3, 3},
		{"UPDATE kiln.builder SET state = 'offline', draining = false WHERE name = 'b7'", 4, 4},
	} {
		if _, err := tx.Exec(ctx, step.sql); err != nil {
			t.Fatalf("%s: %v", step.sql, err)
		}
		if c, e := count(calls), count(events); c != step.calls || e != step.events {
			t.Fatalf("after %s: builder_changed called %d times and %d events, want %d and %d", step.sql, c, e, step.calls, step.events)
		}
	}
}
