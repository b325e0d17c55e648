package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// hostileLog is build output meant for a terminal (window title, clipboard
// write, cursor moves, C1 CSI); the web shows it escaped, as text.
const hostileLog = "\x1b]0;pwned\x07 \x1b]52;c;cm0gLXJmIH4=\x07 \x1b[1A\x1b[2K FAILED\rok \u009b2J \x1b[31mred\x1b[0m\n"

// noControls fails unless body has no control characters but newline and
// tab (nor C1), and no ESC at all.
func noControls(t *testing.T, what, body string) {
	t.Helper()
	for i, r := range body {
		if (r < 0x20 && r != '\n' && r != '\t' && r != '\r') || (r >= 0x7f && r <= 0x9f) {
			t.Errorf("%s has control character %U at %d: %q", what, r, i, body[max(0, i-20):min(len(body), i+20)])
			return
		}
	}
}

// TestBuildOutputShownEscaped: a hostile build's log and failure reason,
// and a person's note, on the job and task pages, in the live log events
// and in the raw log's headers.
func TestBuildOutputShownEscaped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.f
	p := f.DB.Pool
	job := farmtest.Submit(t, p, f.Bob, "devel", []string{farmtest.EL9, farmtest.Bookworm}, farmtest.File{Name: "evil-1-1.src.rpm", Data: []byte("evil")})
	if _, err := p.Exec(t.Context(), `UPDATE kiln.job SET note = $2 WHERE id = $1`, job, strings.TrimSuffix(hostileLog, "\n")); err != nil {
		t.Fatal(err)
	}
	tasks := farmtest.Split(t, p, job, farmtest.EL9, farmtest.Bookworm)
	failed, building := tasks[0], tasks[1]
	a := farmtest.Take(t, p, failed, "b1")
	farmtest.Log(t, p, failed, a, 0, hostileLog)
	farmtest.Finish(t, p, failed, a, "failed", "rpmbuild said: "+strings.TrimSuffix(hostileLog, "\n"))
	a2 := farmtest.Take(t, p, building, "b1")
	farmtest.Log(t, p, building, a2, 0, hostileLog)

	escaped := `\x1b]0;pwned\x07`
	for _, path := range []string{fmt.Sprintf("/jobs/%d", job), fmt.Sprintf("/tasks/%d", failed), fmt.Sprintf("/tasks/%d", building), "/jobs"} {
		body := b.get(t, path, http.StatusOK)
		noControls(t, path, body)
		if path != "/jobs" {
			contains(t, path, body, escaped)
		}
	}

	// The live log of the building task.
	events := b.stream(t, fmt.Sprintf("/tasks/%d/events?attempt=%d&after=-1", building, a2))
	l := await(t, events, "log", func(l logEvent) bool { return l.Task == building })
	noControls(t, "live log event", l.Text)
	contains(t, "live log event", l.Text, escaped, `\u009b2J`)

	// The raw log is the log as stored, served as plain text the browser
	// may not sniff into anything else.
	resp, err := http.Get(b.ts.URL + fmt.Sprintf("/tasks/%d/log.txt", failed))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct, ns := resp.Header.Get("Content-Type"), resp.Header.Get("X-Content-Type-Options"); ct != "text/plain; charset=utf-8" || ns != "nosniff" {
		t.Errorf("raw log served as %q with X-Content-Type-Options %q", ct, ns)
	}
}

// TestForgedNotifyIsOnlyAHint: the attacker (any role may NOTIFY) sends
// forged payloads on the channels kiln-web listens to: a status the job
// does not have, and a log notification naming a private task under a
// public job's id. The stream re-reads with the web's own rights: it shows
// only the job's real statuses and never the private log.
func TestForgedNotifyIsOnlyAHint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.f
	p := f.DB.Pool
	ctx := context.Background()
	if _, err := p.Exec(ctx, `INSERT INTO kiln.bucket (name, private) VALUES ('embargo', true)`); err != nil {
		t.Fatal(err)
	}
	const secret = "embargoed fix for CVE-2026-0001"
	private := farmtest.Submit(t, p, f.Bob, "embargo", []string{farmtest.EL9}, farmtest.File{Name: "fix-1-1.src.rpm", Data: []byte("fix")})
	ptask := farmtest.Split(t, p, private, farmtest.EL9)[0]
	pa := farmtest.Take(t, p, ptask, "b2")
	farmtest.Log(t, p, ptask, pa, 0, secret+"\n")

	public := f.Jobs["building"]
	events := b.stream(t, fmt.Sprintf("/jobs/%d/events?log=%d.%d.-1", public, ptask, pa))
	await(t, events, "status", func(s statusEvent) bool { return s.Status == "building" })

	attacker := farmtest.Person(t, f.DB, "mallory", "kiln_reader")
	conn, err := pgx.Connect(ctx, f.DB.URLAs(attacker))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, n := range []struct{ channel, payload string }{
		{"kiln_job", fmt.Sprintf(`{"job": %d, "status": "succeeded"}`, public)},
		{"kiln_task", fmt.Sprintf(`{"job": %d, "task": %d, "status": "succeeded"}`, public, ptask)},
		{"kiln_log", fmt.Sprintf(`{"job": %d, "task": %d, "attempt": %d, "seq": 0}`, public, ptask, pa)},
		{"kiln_log", `not json at all`},
	} {
		if _, err := conn.Exec(ctx, "SELECT pg_notify($1, $2)", n.channel, n.payload); err != nil {
			t.Fatal(err)
		}
	}
	// Then the job really ends; the stream sends its end and closes.
	farmtest.Cancel(t, p, f.Alice, public)
	var all []event
	deadline := time.After(2 * time.Minute) // a hang guard, not a timing assertion
	for done := false; !done; {
		select {
		case e, open := <-events:
			if !open {
				done = true
				break
			}
			all = append(all, e)
		case <-deadline:
			t.Fatal("the stream did not end")
		}
	}
	for _, e := range all {
		if strings.Contains(e.data, secret) {
			t.Errorf("the stream of a public job sent the private log: %s %s", e.name, e.data)
		}
		if (e.name == "status" || e.name == "end") && strings.Contains(e.data, "succeeded") {
			t.Errorf("the stream sent the forged status: %s %s", e.name, e.data)
		}
	}
	if last := all[len(all)-1]; last.name != "end" || !strings.Contains(last.data, "cancelled") {
		t.Errorf("the stream ended with %+v, want the real end (cancelled)", last)
	}
}
