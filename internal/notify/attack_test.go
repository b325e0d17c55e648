package notify_test

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kiln-build/kiln/internal/notify"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// refused fails the test unless err is a PostgreSQL error of one of codes.
func refused(t *testing.T, what string, err error, codes ...string) {
	t.Helper()
	pe, ok := err.(*pgconn.PgError)
	if !ok {
		t.Errorf("%s: %v, want it refused", what, err)
		return
	}
	for _, c := range codes {
		if pe.Code == c {
			return
		}
	}
	t.Errorf("%s: %s %s, want one of %v", what, pe.Code, pe.Message, codes)
}

// TestAttackWebhookSecretsAndAddresses, as bob and as an admin: another
// person's webhook secret cannot be read at all (admins neither), their
// webhooks and addresses are not visible, and no --report address can be
// added to another person's job, nor to one's own once it was submitted.
func TestAttackWebhookSecretsAndAddresses(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	var id int64
	var secret string
	must(t, f.aliceDB.QueryRow(ctx, `SELECT id, secret FROM kiln.report_webhook_add('https://alice.example/hook', 'always', NULL)`).Scan(&id, &secret))
	_, err := f.aliceDB.Exec(ctx, `SELECT kiln.report_set('alice@example.org', 'always')`)
	must(t, err)
	bob := farmtest.Person(t, f.db, "bob", "kiln_submitter")
	bobDB := connect(t, f.db.URLAs(bob))
	admin := farmtest.Person(t, f.db, "admin", "kiln_admin")
	adminDB := connect(t, f.db.URLAs(admin))

	for who, q := range map[string]func(string, ...any) pgx.Row{
		"bob":   func(s string, a ...any) pgx.Row { return bobDB.QueryRow(ctx, s, a...) },
		"admin": func(s string, a ...any) pgx.Row { return adminDB.QueryRow(ctx, s, a...) },
		"alice": func(s string, a ...any) pgx.Row { return f.aliceDB.QueryRow(ctx, s, a...) },
	} {
		var got string
		refused(t, who+" reads a webhook secret", q(`SELECT secret FROM kiln.report_webhook_secret LIMIT 1`).Scan(&got), "42501")
		if who == "bob" {
			var n int
			must(t, q(`SELECT count(*) FROM kiln.report_webhook`).Scan(&n))
			if n != 0 {
				t.Errorf("bob sees %d of alice's webhooks", n)
			}
			must(t, q(`SELECT count(*) FROM kiln.report_person`).Scan(&n))
			if n != 0 {
				t.Errorf("bob sees alice's report address")
			}
		}
	}
	_, err = bobDB.Exec(ctx, `SELECT kiln.report_webhook_remove($1)`, id)
	refused(t, "bob removes alice's webhook", err, "P0002")
	_, err = bobDB.Exec(ctx, `SELECT kiln.report_webhook_add('https://bob.example/hook', 'always', 'devel')`)
	refused(t, "bob adds a webhook to a bucket", err, "42501")
	_, err = bobDB.Exec(ctx, `SELECT kiln.report_set_person($1, 'bob@example.org', 'always')`, f.alice)
	refused(t, "bob sets alice's address", err, "42501")
	_, err = bobDB.Exec(ctx, `SELECT kiln.report_set_for($1, 'bob@example.org', 'always')`, f.alice)
	refused(t, "bob calls kiln.report_set_for", err, "42501")

	job := farmtest.Submit(t, f.db.Pool, f.alice, "devel", []string{"el9-x86_64"}, farmtest.File{Name: "a-1-1.src.rpm", Data: []byte("a")})
	_, err = bobDB.Exec(ctx, `INSERT INTO kiln.job_report_address (job_id, email) VALUES ($1, 'bob@example.org')`, job)
	refused(t, "bob adds a --report address to alice's job", err, "42501")
	farmtest.Split(t, f.db.Pool, job, "el9-x86_64")
	_, err = f.aliceDB.Exec(ctx, `INSERT INTO kiln.job_report_address (job_id, email) VALUES ($1, 'late@example.org')`, job)
	refused(t, "alice adds a --report address after the submit", err, "42501")
	// And the secret kiln.report_webhook_add returned is the one the
	// reporter signs with.
	var stored string
	must(t, f.repDB.QueryRow(ctx, `SELECT secret FROM kiln.report_webhook_secret WHERE webhook_id = $1`, id).Scan(&stored))
	if stored != secret {
		t.Error("the reporter reads another secret than the one returned")
	}
}

// TestAttackReporterRole: kiln-reporter's role changes no task, job or
// attempt, inserts no River job and sees no River job but its own kind.
func TestAttackReporterRole(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	job := farmtest.Submit(t, f.db.Pool, f.alice, "devel", []string{"el9-x86_64"}, farmtest.File{Name: "a-1-1.src.rpm", Data: []byte("a")})
	tasks := farmtest.Split(t, f.db.Pool, job, "el9-x86_64")
	farmtest.Enqueue(t, f.db.Pool, tasks[0])
	for what, sql := range map[string]string{
		"updates a task":        `UPDATE kiln.task SET status = 'succeeded' WHERE id = $1`,
		"updates a job":         `UPDATE kiln.job SET status = 'succeeded' WHERE id = (SELECT job_id FROM kiln.task WHERE id = $1)`,
		"updates an attempt":    `UPDATE kiln.attempt SET status = 'succeeded' WHERE task_id = $1`,
		"finishes a task":       `SELECT kiln.task_finish('b1', $1, 1, 'succeeded', '', '{}', false, '{}', '{}', '{}', '{}')`,
		"inserts a River job":   `INSERT INTO river.river_job (args, kind, max_attempts, queue) VALUES (jsonb_build_object('t', $1::bigint), 'report', 1, 'report')`,
		"inserts a delivery":    `INSERT INTO kiln.report_delivery (job_id, channel, target, job_status) SELECT $1, 'mail', 'x@example.org', 'failed'`,
		"reads a blob":          `SELECT count(*) FROM kiln.blob_chunk WHERE $1 > 0`,
		"changes a report time": `UPDATE kiln.report_delivery SET created_at = now() WHERE job_id = $1`,
	} {
		_, err := f.repDB.Exec(ctx, sql, tasks[0])
		refused(t, "the reporter "+what, err, "42501")
	}
	var n int
	must(t, f.repDB.QueryRow(ctx, `SELECT count(*) FROM river.river_job`).Scan(&n))
	if n != 0 {
		t.Errorf("the reporter sees %d River jobs that are not report River jobs", n)
	}
	tag, err := f.repDB.Exec(ctx, `UPDATE river.river_job SET state = 'cancelled'`)
	must(t, err)
	if tag.RowsAffected() != 0 {
		t.Errorf("the reporter cancelled %d build River jobs", tag.RowsAffected())
	}
}

// TestAttackHeaderInjection: CR and LF in a --report address or a
// person's address are refused (in kiln and in the database), and a package
// name with CR LF (a package is anyone's) stays inside the Subject.
func TestAttackHeaderInjection(t *testing.T) {
	t.Parallel()
	for _, a := range []string{"a@example.org\r\nBcc: evil@example.org", "a@example.org\nX: y", "a b@example.org", "<a@example.org>", "a@example.org,evil@example.org", ""} {
		if notify.CheckAddress(a) == nil {
			t.Errorf("CheckAddress(%q) accepted it", a)
		}
	}
	f := setup(t)
	ctx := t.Context()
	_, err := f.aliceDB.Exec(ctx, `SELECT kiln.report_set(E'alice@example.org\r\nBcc: evil@example.org', 'always')`)
	refused(t, "an address with CR LF", err, "22023")
	job := farmtest.Submit(t, f.db.Pool, f.alice, "devel", []string{"el9-x86_64"}, farmtest.File{Name: "a-1-1.src.rpm", Data: []byte("a")})
	_, err = f.aliceDB.Exec(ctx, `INSERT INTO kiln.job_report_address (job_id, email) VALUES ($1, E'a@example.org\r\nBcc: evil@example.org')`, job)
	refused(t, "a --report address with CR LF", err, "23514")
	_, err = f.aliceDB.Exec(ctx, `SELECT kiln.report_webhook_add(E'https://x.example/\r\nX: y', 'always', NULL)`)
	refused(t, "a webhook address with CR LF", err, "22023")

	r := &notify.Report{Job: 7, Bucket: "devel", Status: "failed", Packages: []notify.Package{{File: "x.src.rpm", Name: "evil\r\nBcc: evil@example.org\r\n\r\nbody"}}}
	msg, err := r.Message("kiln@farm.example", []string{"alice@example.org"}, time.Now())
	must(t, err)
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	must(t, err)
	if m.Header.Get("Bcc") != "" || len(m.Header["Subject"]) != 1 {
		t.Fatalf("the package name made headers: %v", m.Header)
	}
	subj, err := new(mimeDecoder).DecodeHeader(m.Header.Get("Subject"))
	must(t, err)
	if !strings.Contains(subj, "evil") || strings.ContainsAny(subj, "\r\n") {
		t.Errorf("Subject %q", subj)
	}
	if _, err := r.Message("kiln@farm.example", []string{"a@example.org\r\nBcc: evil@example.org"}, time.Now()); err == nil {
		t.Error("Message accepted a recipient with CR LF")
	}
}
