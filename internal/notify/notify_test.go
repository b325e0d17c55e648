package notify_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/notify"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/riverjob"
)

// farm is a test database with a platform, a bucket, a builder, the person
// alice and kiln-reporter's login role.
type farm struct {
	db       *pgtest.DB
	alice    string
	reporter string
	aliceDB  *pgxpool.Pool
	repDB    *pgxpool.Pool
}

func setup(t *testing.T) *farm {
	t.Helper()
	db := pgtest.New(t)
	f := &farm{db: db}
	farmtest.Platform(t, db.Pool, "el9-x86_64", "x86_64")
	farmtest.Bucket(t, db.Pool, "devel")
	farmtest.Builder(t, db.Pool, "b1", 2, true, "el9-x86_64")
	f.alice = farmtest.Person(t, db, "alice", "kiln_submitter")
	f.reporter = farmtest.Person(t, db, "reporter", "kiln_reporter")
	f.aliceDB = connect(t, db.URLAs(f.alice))
	f.repDB = connect(t, db.URLAs(f.reporter))
	return f
}

func connect(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// failedJob submits a job as alice with --report addresses, builds it and
// fails it with a log, as the builder would.
func (f *farm) failedJob(t *testing.T, pkg string, report ...string) int64 {
	t.Helper()
	job := farmtest.Submit(t, f.db.Pool, f.alice, "devel", []string{"el9-x86_64"}, farmtest.File{Name: pkg, Data: []byte(pkg)})
	for _, a := range report {
		_, err := f.aliceDB.Exec(t.Context(), `INSERT INTO kiln.job_report_address (job_id, email) VALUES ($1, $2)`, job, a)
		must(t, err)
	}
	tasks := farmtest.Split(t, f.db.Pool, job, "el9-x86_64")
	att := farmtest.Take(t, f.db.Pool, tasks[0], "b1")
	farmtest.Log(t, f.db.Pool, tasks[0], att, 0, "configure ok\nmake: *** [all] Error 1\nerror: Bad exit status\n")
	farmtest.Finish(t, f.db.Pool, tasks[0], att, "failed", "rpmbuild exited with status 1")
	return job
}

// smtpServer is Debian's aiosmtpd writing every message it accepts into a
// maildir, on a fixed port so it can be stopped and started again.
type smtpServer struct {
	t    *testing.T
	addr string
	dir  string
	cmd  *exec.Cmd
}

func newSMTPServer(t *testing.T) *smtpServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := l.Addr().String()
	l.Close()
	return &smtpServer{t: t, addr: addr, dir: filepath.Join(t.TempDir(), "maildir")}
}

func python() string {
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3" // Debian's, which has python3-aiosmtpd
	}
	return "python3"
}

func (s *smtpServer) start() {
	t := s.t
	t.Helper()
	s.cmd = exec.Command(python(), "-m", "aiosmtpd", "-n", "-l", s.addr, "-c", "aiosmtpd.handlers.Mailbox", s.dir)
	s.cmd.Stderr = os.Stderr
	must(t, s.cmd.Start())
	cmd := s.cmd
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", s.addr)
		if err == nil {
			c.Close()
			return
		}
		if i > 300 {
			t.Fatalf("aiosmtpd (python3-aiosmtpd) did not listen on %s: %v", s.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *smtpServer) messages() []*mail.Message {
	s.t.Helper()
	files, _ := filepath.Glob(filepath.Join(s.dir, "new", "*"))
	var out []*mail.Message
	for _, f := range files {
		b, err := os.ReadFile(f)
		must(s.t, err)
		m, err := mail.ReadMessage(strings.NewReader(string(b)))
		must(s.t, err)
		out = append(out, m)
	}
	return out
}

// waitFor polls cond until it holds. The two minutes are not a timing
// assertion, only a bound so that a broken test fails instead of hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	give := time.After(2 * time.Minute)
	for !cond() {
		select {
		case <-give:
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (f *farm) deliveries(t *testing.T, job int64) map[string]string {
	t.Helper()
	rows, err := f.db.Pool.Query(t.Context(), `SELECT channel || ':' || target, status FROM kiln.report_delivery WHERE job_id = $1`, job)
	must(t, err)
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		must(t, rows.Scan(&k, &v))
		out[k] = v
	}
	must(t, rows.Err())
	return out
}

type noJanitor struct{}

func (noJanitor) Upkeep(context.Context) error { return nil }
func (noJanitor) Prune(context.Context) error  { return nil }

// run starts kiln-reporter's River client as the reporter role, and a
// janitor's River client as River's leader (its scheduler makes retried
// River jobs available again, as kiln-janitor does on a farm).
func (f *farm) run(t *testing.T, smtpAddr string) *notify.Reporter {
	t.Helper()
	ctx := t.Context()
	rep, err := notify.New(ctx, notify.Config{DB: f.repDB, SMTP: notify.SMTP{Addr: smtpAddr, From: "kiln@farm.example", Timeout: 10 * time.Second}})
	must(t, err)
	rc, err := riverjob.NewReporterClient(f.repDB, riverjob.ReporterConfig{Reporter: rep, RetryMin: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	must(t, err)
	janitor := farmtest.Person(t, f.db, "janitor", "kiln_janitor")
	jc, err := riverjob.NewJanitorClient(connect(t, f.db.URLAs(janitor)), riverjob.JanitorConfig{Janitor: noJanitor{}, UpkeepEvery: time.Hour, PruneEvery: time.Hour, RescueAfter: time.Hour})
	must(t, err)
	for _, c := range []*riverjob.Client{rc, jc} {
		must(t, c.Start(context.WithoutCancel(ctx)))
		t.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = c.Stop(sctx)
		})
	}
	return rep
}

// TestMailServerDownThenBack: the job fails while the mail server is down;
// the delivery is retried with backoff and, once the server is back, the
// one report arrives exactly once, to the submitter and the --report
// address, with the headers filters use and the last lines of the log.
func TestMailServerDownThenBack(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	_, err := f.aliceDB.Exec(ctx, `SELECT kiln.report_set('alice@example.org', 'failure')`)
	must(t, err)
	smtpd := newSMTPServer(t) // not started: the server is down
	f.run(t, smtpd.addr)
	job := f.failedJob(t, "hello-1.0-1.src.rpm", "team@example.org")

	want := map[string]string{"mail:alice@example.org": "pending", "mail:team@example.org": "pending"}
	if got := f.deliveries(t, job); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("deliveries when the job failed: %v, want %v", got, want)
	}
	waitFor(t, "two failed tries", func() bool {
		var tries int
		must(t, f.db.Pool.QueryRow(ctx, `SELECT min(tries) FROM kiln.report_delivery WHERE job_id = $1`, job).Scan(&tries))
		return tries >= 2
	})
	var lastErr string
	must(t, f.db.Pool.QueryRow(ctx, `SELECT last_error FROM kiln.report_delivery WHERE job_id = $1 LIMIT 1`, job).Scan(&lastErr))
	if !strings.Contains(lastErr, "connecting to the mail server") {
		t.Errorf("last_error = %q", lastErr)
	}

	smtpd.start()
	waitFor(t, "the report delivered", func() bool {
		d := f.deliveries(t, job)
		return d["mail:alice@example.org"] == "sent" && d["mail:team@example.org"] == "sent"
	})
	waitFor(t, "the River job completed", func() bool {
		var n int
		must(t, f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM river.river_job WHERE kind = 'report' AND state <> 'completed'`).Scan(&n))
		return n == 0
	})
	msgs := smtpd.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages arrived, want exactly 1", len(msgs))
	}
	m := msgs[0]
	for k, v := range map[string]string{"X-Kiln-Job": fmt.Sprint(job), "X-Kiln-Bucket": "devel", "X-Kiln-Status": "failed",
		"Message-Id": fmt.Sprintf("<kiln-job-%d@farm.example>", job), "To": "alice@example.org, team@example.org",
		"Subject": fmt.Sprintf("[kiln] job %d failed: hello (devel)", job)} {
		if got := m.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if got := m.Header.Get("X-Rcpttos"); got != "" && !strings.Contains(got, "team@example.org") {
		t.Errorf("envelope recipients %q", got)
	}
	body := decodeBody(t, m)
	for _, s := range []string{"el9-x86_64", "failed", "rpmbuild exited with status 1", "| make: *** [all] Error 1", "hello-1.0-1.src.rpm"} {
		if !strings.Contains(body, s) {
			t.Errorf("body lacks %q:\n%s", s, body)
		}
	}
}

func decodeBody(t *testing.T, m *mail.Message) string {
	t.Helper()
	if m.Header.Get("Content-Transfer-Encoding") != "quoted-printable" || !strings.HasPrefix(m.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("not a quoted-printable text/plain message: %v", m.Header)
	}
	b, err := io.ReadAll(qpReader(m.Body))
	must(t, err)
	return string(b)
}

// TestSucceededJobFollowsWhen: a person who wants failures only is not told
// of a job that succeeded; the bucket that wants every report is.
func TestSucceededJobFollowsWhen(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	_, err := f.aliceDB.Exec(ctx, `SELECT kiln.report_set('alice@example.org', 'failure')`)
	must(t, err)
	admin := farmtest.Person(t, f.db, "admin", "kiln_admin")
	_, err = connect(t, f.db.URLAs(admin)).Exec(ctx, `SELECT kiln.report_set_bucket('devel', ARRAY['devel-list@example.org'], 'always')`)
	must(t, err)
	job := farmtest.Submit(t, f.db.Pool, f.alice, "devel", []string{"el9-x86_64"}, farmtest.File{Name: "ok-1-1.src.rpm", Data: []byte("x")})
	tasks := farmtest.Split(t, f.db.Pool, job, "el9-x86_64")
	att := farmtest.Take(t, f.db.Pool, tasks[0], "b1")
	farmtest.Finish(t, f.db.Pool, tasks[0], att, "succeeded", "", farmtest.Artifact{Kind: "package", Name: "ok-1-1.x86_64.rpm", Data: []byte("rpm")})
	want := map[string]string{"mail:devel-list@example.org": "pending"}
	if got := f.deliveries(t, job); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("deliveries: %v, want %v", got, want)
	}
	smtpd := newSMTPServer(t)
	smtpd.start()
	f.run(t, smtpd.addr)
	waitFor(t, "the report delivered", func() bool { return f.deliveries(t, job)["mail:devel-list@example.org"] == "sent" })
	msgs := smtpd.messages()
	if len(msgs) != 1 || msgs[0].Header.Get("X-Kiln-Status") != "succeeded" {
		t.Fatalf("messages: %d", len(msgs))
	}
	if body := decodeBody(t, msgs[0]); !strings.Contains(body, "ok-1-1.x86_64.rpm") {
		t.Errorf("the artifact is not in the report:\n%s", body)
	}
}

// TestWebhookSignedAndRetried: the webhook's receiver answers 503 first,
// then checks the HMAC with the secret kiln.report_webhook_add returned and
// accepts: one report accepted, recorded once.
func TestWebhookSignedAndRetried(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	var mu sync.Mutex
	var accepted, refused int
	var secret string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if refused == 0 {
			refused++
			http.Error(w, "down for a moment", http.StatusServiceUnavailable)
			return
		}
		if !notify.Verify(secret, body, r.Header.Get(notify.SignatureHeader)) || notify.Verify("wrong"+secret, body, r.Header.Get(notify.SignatureHeader)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			t.Errorf("signature %q does not verify", r.Header.Get(notify.SignatureHeader))
			return
		}
		if !strings.Contains(string(body), `"status":"failed"`) || !strings.Contains(string(body), `"log_tail":[`) {
			t.Errorf("body %s", body)
		}
		accepted++
	}))
	t.Cleanup(srv.Close)
	var id int64
	must(t, f.aliceDB.QueryRow(ctx, `SELECT id, secret FROM kiln.report_webhook_add($1, 'always', NULL)`, srv.URL+"/hook").Scan(&id, &secret))
	if len(secret) != 64 {
		t.Fatalf("secret %q", secret)
	}
	f.run(t, "127.0.0.1:1") // no mail wanted: alice set no address
	job := f.failedJob(t, "hook-1-1.src.rpm")
	key := fmt.Sprintf("webhook:%d", id)
	waitFor(t, "the webhook delivered", func() bool { return f.deliveries(t, job)[key] == "sent" })
	mu.Lock()
	defer mu.Unlock()
	if accepted != 1 || refused != 1 {
		t.Errorf("accepted %d, refused %d; want 1 and 1", accepted, refused)
	}
}

// TestCrashBetweenSendAndRecord: kiln-reporter dies after the mail server
// accepted the message and before the delivery is recorded. The next try
// sends it again, with the same Message-ID: delivery is at least once, and
// a duplicate is recognisable (docs/reports.md, "Exactly once?"). After a
// recorded delivery, further tries send nothing.
func TestCrashBetweenSendAndRecord(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	_, err := f.aliceDB.Exec(ctx, `SELECT kiln.report_set('alice@example.org', 'always')`)
	must(t, err)
	job := f.failedJob(t, "crash-1-1.src.rpm")
	smtpd := newSMTPServer(t)
	smtpd.start()
	rep, err := notify.New(ctx, notify.Config{DB: f.repDB, SMTP: notify.SMTP{Addr: smtpd.addr, From: "kiln@farm.example"}})
	must(t, err)
	crash := errors.New("killed")
	rep.SetAfterSend(func() error { return crash })
	args := riverjob.ReportArgs{JobID: job, Channel: riverjob.ReportMail}
	if err := rep.Deliver(ctx, args); !errors.Is(err, crash) {
		t.Fatalf("Deliver = %v", err)
	}
	if d := f.deliveries(t, job); d["mail:alice@example.org"] != "pending" {
		t.Fatalf("after the crash: %v", d)
	}
	rep.SetAfterSend(nil)
	must(t, rep.Deliver(ctx, args))
	must(t, rep.Deliver(ctx, args)) // a River job retried after its success sends nothing
	msgs := smtpd.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2 (one before the crash, one after)", len(msgs))
	}
	if a, b := msgs[0].Header.Get("Message-Id"), msgs[1].Header.Get("Message-Id"); a != b {
		t.Errorf("Message-IDs differ: %s, %s", a, b)
	}
	if d := f.deliveries(t, job); d["mail:alice@example.org"] != "sent" {
		t.Errorf("after the retry: %v", d)
	}
}

// TestInvalidAndCancelledJobs: a job the splitter finds invalid is a
// failure (reported to whoever wants failures); a cancelled one is reported
// only to those who want every report. Both are queued as River jobs in
// the transaction that ends the job, whoever ends it.
func TestInvalidAndCancelledJobs(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	_, err := f.aliceDB.Exec(ctx, `SELECT kiln.report_set('alice@example.org', 'failure')`)
	must(t, err)
	bad := farmtest.Submit(t, f.db.Pool, f.alice, "devel", []string{"el9-x86_64"}, farmtest.File{Name: "bad-1-1.src.rpm", Data: []byte("x")})
	farmtest.Invalidate(t, f.db.Pool, bad, "not an SRPM")
	gone := farmtest.Submit(t, f.db.Pool, f.alice, "devel", []string{"el9-x86_64"}, farmtest.File{Name: "gone-1-1.src.rpm", Data: []byte("y")})
	farmtest.Split(t, f.db.Pool, gone, "el9-x86_64")
	farmtest.Cancel(t, f.db.Pool, f.alice, gone)
	if got := f.deliveries(t, bad); got["mail:alice@example.org"] != "pending" {
		t.Errorf("invalid job: %v", got)
	}
	if got := f.deliveries(t, gone); len(got) != 0 {
		t.Errorf("cancelled job, failures only: %v", got)
	}
	var n int
	must(t, f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM river.river_job WHERE kind = 'report' AND queue = 'report' AND args->>'job_id' = $1::bigint::text`, bad).Scan(&n))
	if n != 1 {
		t.Errorf("%d report River jobs for the invalid job, want 1", n)
	}
}

// Each kind of recipient alone gets its report, and a job nobody asked
// about gets none: the trigger's quick look for "nobody to tell" misses
// none of them.
func TestEachRecipientAloneIsTold(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, f *farm, admin *pgxpool.Pool)
		job   []string // the job's --report addresses
		want  string
	}{
		{"nobody", nil, nil, "map[]"},
		{"the submitter's address", func(t *testing.T, f *farm, _ *pgxpool.Pool) {
			_, err := f.aliceDB.Exec(t.Context(), `SELECT kiln.report_set('alice@example.org', 'always')`)
			must(t, err)
		}, nil, "map[mail:alice@example.org:pending]"},
		{"a --report address", nil, []string{"team@example.org"}, "map[mail:team@example.org:pending]"},
		{"the bucket's addresses", func(t *testing.T, f *farm, admin *pgxpool.Pool) {
			_, err := admin.Exec(t.Context(), `SELECT kiln.report_set_bucket('devel', ARRAY['devel-list@example.org'], 'always')`)
			must(t, err)
		}, nil, "map[mail:devel-list@example.org:pending]"},
		{"the submitter's webhook", func(t *testing.T, f *farm, _ *pgxpool.Pool) {
			_, err := f.aliceDB.Exec(t.Context(), `SELECT kiln.report_webhook_add('https://alice.example/hook', 'always', NULL)`)
			must(t, err)
		}, nil, "webhook"},
		{"the bucket's webhook", func(t *testing.T, f *farm, admin *pgxpool.Pool) {
			_, err := admin.Exec(t.Context(), `SELECT kiln.report_webhook_add('https://devel.example/hook', 'always', 'devel')`)
			must(t, err)
		}, nil, "webhook"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			admin := connect(t, f.db.URLAs(farmtest.Person(t, f.db, "admin", "kiln_admin")))
			if c.setup != nil {
				c.setup(t, f, admin)
			}
			got := fmt.Sprint(f.deliveries(t, f.failedJob(t, "told-1-1.src.rpm", c.job...)))
			if c.want == "webhook" {
				if !strings.HasPrefix(got, "map[webhook:") || !strings.HasSuffix(got, ":pending]") {
					t.Fatalf("deliveries %s, want one webhook delivery", got)
				}
				return
			}
			if got != c.want {
				t.Fatalf("deliveries %s, want %s", got, c.want)
			}
		})
	}
}
