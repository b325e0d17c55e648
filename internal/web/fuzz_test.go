package web

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/task"
)

// The job list's query string: refused filters are the client's error (400,
// never 500), accepted ones stay in range, and the next-page link the page
// builds from them carries the same filters.
func FuzzJobFilter(f *testing.F) {
	for _, s := range []string{"", "status=failed&status=partially_failed", "status=nope", "since=36h", "since=1.5d",
		"since=2025-05-01", "since=-1h", "limit=5000", "limit=-1", "limit=x", "before=42&limit=10",
		"submitter=alice&bucket=devel&platform=el9-x86_64", "status=&status=queued", "before=9223372036854775808", "%zz=1"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.Local)
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw) // as r.URL.Query() reads it
		flt, err := jobFilter(q, now)
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("jobFilter(%q): %v, not a bad request", raw, err)
			}
			return
		}
		if flt.Limit < 0 || flt.Limit > report.MaxLimit || flt.Before < 0 {
			t.Fatalf("jobFilter(%q) = limit %d, before %d: out of range", raw, flt.Limit, flt.Before)
		}
		for _, st := range flt.Status {
			if !task.JobStatus(st).Valid() {
				t.Fatalf("jobFilter(%q) accepted status %q", raw, st)
			}
		}
		if v := q.Get("since"); v != "" {
			want, err := report.ParseSince(v, now.UTC())
			if err != nil || !flt.Since.Equal(want) {
				t.Fatalf("jobFilter(%q) since = %s, ParseSince = %s, %v", raw, flt.Since, want, err)
			}
		}
		for _, before := range []int64{0, 1, flt.Before + 1} {
			link, err := url.Parse(jobsPage(q, before))
			if err != nil || link.Path != "/jobs" {
				t.Fatalf("jobsPage(%q, %d) = %q: %v", raw, before, jobsPage(q, before), err)
			}
			next, err := jobFilter(link.Query(), now)
			want := flt
			want.Before = before
			if err != nil || !reflect.DeepEqual(next, want) {
				t.Fatalf("the link %s reads as %+v, %v; want %+v", link, next, err, want)
			}
		}
	})
}

// ?log=TASK.ATTEMPT.SEQ: what is accepted is in range and reads back the
// same when written out again; nothing is made up.
func FuzzParseFollow(f *testing.F) {
	for _, s := range []string{"log=17.1.4", "log=17.1.-1&log=18.2.0", "log=17.1.4&log=17.1.9", "log=0.1.1", "log=1.0.1",
		"log=1.1.-2", "log=1.1", "log=1.1.1.1", "log=+5.01.3", "log=9223372036854775807.2147483647.2147483647", "log=a.b.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		vals := q["log"]
		out := parseFollow(vals)
		if len(out) > len(vals) {
			t.Fatalf("parseFollow(%q) = %d entries from %d values", vals, len(out), len(vals))
		}
		for k, seq := range out {
			if k.task <= 0 || k.attempt <= 0 || seq < -1 {
				t.Fatalf("parseFollow(%q) accepted task %d attempt %d seq %d", vals, k.task, k.attempt, seq)
			}
			v := fmt.Sprintf("%d.%d.%d", k.task, k.attempt, seq)
			if again := parseFollow([]string{v}); !reflect.DeepEqual(again, map[logKey]int{k: seq}) {
				t.Fatalf("parseFollow(%q) = %v", v, again)
			}
		}
	})
}

// fuzzKey is the session key of FuzzParseSession: the committed seeds hold
// cookies it signed.
var fuzzKey = []byte("kiln fuzz session key, not a secret")

// The session cookie: only a value this server signed, unexpired and
// naming a person, is accepted, and a person's cookie reads back as theirs
// until it expires (and never under another key).
func FuzzParseSession(f *testing.F) {
	s := &Server{cfg: Config{SessionKey: fuzzKey}}
	other := &Server{cfg: Config{SessionKey: []byte("another key")}}
	now := time.Unix(1767225600, 0) // 2026-01-01
	for _, v := range []string{"", "alice", "alice..", "alice.1767229200.", "..", s.sessionValue("alice", now.Add(time.Hour)),
		s.sessionValue("Alice", now.Add(time.Hour)), s.sessionValue("alice", now.Add(-time.Second)), other.sessionValue("alice", now.Add(time.Hour))} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		name, until, ok := s.parseSession(v, now)
		if ok && (!personName.MatchString(name) || until.Before(now) || v != s.sessionValue(name, until)) {
			t.Fatalf("parseSession(%q) accepted %q until %s", v, name, until)
		}
		if !personName.MatchString(v) {
			return
		}
		cookie := s.sessionValue(v, now.Add(time.Hour))
		if name, until, ok := s.parseSession(cookie, now); !ok || name != v || !until.Equal(now.Add(time.Hour)) {
			t.Fatalf("the session of %q read back as %q until %s, %v", v, name, until, ok)
		}
		if _, _, ok := s.parseSession(cookie, now.Add(time.Hour+time.Second)); ok {
			t.Fatalf("the session of %q was accepted after it expired", v)
		}
		if _, _, ok := other.parseSession(cookie, now); ok {
			t.Fatalf("the session of %q was accepted under another key", v)
		}
	})
}

// The login's ?next= target stays on this site as a browser reads it:
// browsers drop tabs and newlines from a URL and take a backslash for a
// slash, so /\t/evil.example would lead to //evil.example.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/jobs/42", "", "jobs", "//evil.example", "/\\evil.example", "/\t/evil.example",
		"https://evil.example/", "/%2F/evil.example", " //evil.example", "/jobs?x=//y"} {
		f.Add(s)
	}
	browser := strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/")
	f.Fuzz(func(t *testing.T, next string) {
		p := localPath(next)
		seen := browser.Replace(strings.TrimLeft(p, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f "))
		u, err := url.Parse(seen)
		if !strings.HasPrefix(seen, "/") || strings.HasPrefix(seen, "//") || err == nil && (u.Host != "" || u.Scheme != "") {
			t.Fatalf("localPath(%q) = %q, which a browser reads as %q: off this site", next, p, seen)
		}
		if p != "/" && p != next {
			t.Fatalf("localPath(%q) = %q: changed a target it kept", next, p)
		}
	})
}
