package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// listening reports whether the listener is connected now.
func (h *hub) listening() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.connected
}

// event is one server-sent event.
type event struct {
	name, data string
}

// stream opens an event stream and returns its events as they arrive.
func (b *bundle) stream(t *testing.T, path string) <-chan event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", b.ts.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan event, 100)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var e event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				e.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				e.data = strings.TrimPrefix(line, "data: ")
			case line == "" && e.name != "":
				out <- e
				e = event{}
			}
		}
	}()
	return out
}

// await reads events until one named name satisfies ok (nil: any), failing
// the test if the stream ends first. The deadline only stops a hung test.
func await[T any](t *testing.T, events <-chan event, name string, ok func(T) bool) T {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case e, open := <-events:
			if !open {
				t.Fatalf("stream ended while waiting for %s", name)
			}
			if e.name != name {
				continue
			}
			var v T
			if err := json.Unmarshal([]byte(e.data), &v); err != nil {
				t.Fatalf("%s event %q: %v", name, e.data, err)
			}
			if ok == nil || ok(v) {
				return v
			}
		case <-deadline:
			t.Fatalf("no %s event came", name)
		}
	}
}

func TestLiveJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.f
	p := f.DB.Pool
	el9, deb := f.Tasks["building/"+farmtest.EL9], f.Tasks["building/"+farmtest.Bookworm]
	// The page showed el9's log up to batch 1.
	events := b.stream(t, fmt.Sprintf("/jobs/%d/events?log=%d.1.1", f.Jobs["building"], el9))
	// Each wake-up sends the table, then the status, then the logs; await
	// skips what comes before the event it waits for.
	html := await[string](t, events, "tasks", nil)
	contains(t, "tasks fragment", html, fmt.Sprintf(`<a href="/tasks/%d">el9-x86_64</a>`, el9), `st-pending`)
	await(t, events, "status", func(s statusEvent) bool { return s.Status == "building" && !s.Final })

	farmtest.Log(t, p, el9, 1, 2, "linking hello\n")
	got := await(t, events, "log", func(l logEvent) bool { return l.Task == el9 })
	if got.Seq != 2 || got.Attempt != 1 || got.Text != "linking hello\n" || got.Platform != farmtest.EL9 {
		t.Errorf("first live log event: %+v (batches 0 and 1 were on the page already)", got)
	}

	// The other task starts: its log arrives too, and the table changes.
	a := farmtest.Take(t, p, deb, "b1")
	farmtest.Log(t, p, deb, a, 0, "dpkg-buildpackage -b\n")
	await(t, events, "tasks", func(h string) bool { return !strings.Contains(h, "st-pending") })
	if l := await(t, events, "log", func(l logEvent) bool { return l.Task == deb }); l.Seq != 0 || l.Text != "dpkg-buildpackage -b\n" {
		t.Errorf("log of the second task: %+v", l)
	}

	farmtest.Finish(t, p, el9, 1, "succeeded", "")
	farmtest.Log(t, p, deb, a, 1, "dpkg-deb: building package 'hello'\n")
	farmtest.Finish(t, p, deb, a, "succeeded", "", farmtest.Artifact{Kind: "package", Name: "hello_1.1-1_amd64.deb", Data: []byte("deb")})
	// The last log batch and the final status may come in one wake-up
	// (status first) or in two, so collect up to the end in any order.
	var lastLog *logEvent
	var final, ended bool
	for e := range events {
		if ended {
			t.Errorf("event after the end: %+v", e)
			continue
		}
		switch e.name {
		case "log":
			var l logEvent
			if err := json.Unmarshal([]byte(e.data), &l); err != nil {
				t.Fatalf("log event %q: %v", e.data, err)
			}
			if l.Task == deb && l.Seq == 1 {
				lastLog = &l
			}
		case "status":
			var st statusEvent
			if err := json.Unmarshal([]byte(e.data), &st); err != nil {
				t.Fatalf("status event %q: %v", e.data, err)
			}
			final = final || (st.Status == "succeeded" && st.Final)
		case "end":
			var st statusEvent
			if err := json.Unmarshal([]byte(e.data), &st); err != nil || st.Status != "succeeded" {
				t.Errorf("end event %q (%v)", e.data, err)
			}
			ended = true
		}
	}
	if lastLog == nil || !strings.Contains(lastLog.Text, "dpkg-deb") {
		t.Errorf("last log batch: %+v", lastLog)
	}
	if !final || !ended {
		t.Errorf("final status seen %v, end seen %v", final, ended)
	}
}

func TestLiveTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.f
	p := f.DB.Pool
	el9, deb := f.Tasks["building/"+farmtest.EL9], f.Tasks["building/"+farmtest.Bookworm]

	building := b.stream(t, fmt.Sprintf("/tasks/%d/events?attempt=1&after=1", el9))
	waiting := b.stream(t, fmt.Sprintf("/tasks/%d/events?attempt=0&after=-1", deb))
	await(t, building, "status", func(s statusEvent) bool { return s.Status == "building" })
	await(t, waiting, "status", func(s statusEvent) bool { return s.Status == "pending" })

	// A hostile line travels as data, in one event (the page inserts it as
	// text), its carriage return shown escaped (termtext).
	farmtest.Log(t, p, el9, 1, 2, "</pre><script>x()</script>\r\nevent: end\n")
	if l := await[logEvent](t, building, "log", nil); l.Seq != 2 || l.Text != "</pre><script>x()</script>\\r\nevent: end\n" {
		t.Errorf("log event: %+v", l)
	}
	farmtest.Take(t, p, deb, "b1")
	await[statusEvent](t, waiting, "reload", nil)

	farmtest.Finish(t, p, el9, 1, "failed", "rpmbuild exited with status 1")
	await(t, building, "status", func(s statusEvent) bool { return s.Status == "failed" && s.Final })
	await(t, building, "end", func(s statusEvent) bool { return s.Status == "failed" })

	b.get(t, fmt.Sprintf("/tasks/%d/events", el9), http.StatusBadRequest)
	b.get(t, "/tasks/999999/events?attempt=1&after=0", http.StatusNotFound)
	b.get(t, "/jobs/999999/events", http.StatusNotFound)
}

// TestLiveReconnect ends the listener's database connection: the hub
// reconnects and the stream catches up with what happened meanwhile.
func TestLiveReconnect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.f
	p := f.DB.Pool
	el9 := f.Tasks["building/"+farmtest.EL9]
	events := b.stream(t, fmt.Sprintf("/tasks/%d/events?attempt=1&after=1", el9))
	await(t, events, "status", func(s statusEvent) bool { return s.Status == "building" })

	var killed int
	if err := p.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE usename = $1 AND query LIKE 'LISTEN %'`, b.web).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminating the listener: %d (%v)", killed, err)
	}
	farmtest.Log(t, p, el9, 1, 2, "written while nobody listened\n")
	if l := await[logEvent](t, events, "log", nil); l.Seq != 2 || l.Text != "written while nobody listened\n" {
		t.Errorf("after reconnecting: %+v", l)
	}
	farmtest.Log(t, p, el9, 1, 3, "and after\n")
	if l := await[logEvent](t, events, "log", nil); l.Seq != 3 {
		t.Errorf("after reconnecting: %+v", l)
	}
}

// The hub watches a task's log as soon as a first stream follows it, renews
// the watches of the tasks some stream still follows (however many:
// kiln.watch_logs takes at most report.WatchMax a call), and stops renewing
// a task no stream follows any more.
func TestHubRenewsTheWatchesOfFollowedTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.f.DB.Pool
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var warnings strings.Builder
	var mu sync.Mutex
	h := newHub(b.s.db, slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return warnings.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelWarn})))
	h.renewEvery = 100 * time.Millisecond
	go h.renewWatches(ctx)

	// watched says whether the task's log is watched now.
	watched := func(task int64) bool {
		var ok bool
		if err := p.QueryRow(ctx, "SELECT EXISTS (SELECT FROM kiln.log_watch WHERE task_id = $1 AND until > now())", task).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	expire := func() {
		if _, err := p.Exec(ctx, "UPDATE kiln.log_watch SET until = now() - interval '1 second'"); err != nil {
			t.Fatal(err)
		}
	}
	el9, deb := b.f.Tasks["building/"+farmtest.EL9], b.f.Tasks["building/"+farmtest.Bookworm]
	// More tasks than one call may name: ids of no task, which the
	// database ignores.
	many := make([]int64, report.WatchMax+1)
	for i := range many {
		many[i] = 1<<40 + int64(i)
	}
	h.watch(ctx, el9)
	h.watch(ctx, el9, deb)
	h.watch(ctx, many...)
	if !watched(el9) || !watched(deb) {
		t.Fatalf("followed at once: %v %v", watched(el9), watched(deb))
	}

	h.unwatch(deb)
	expire()
	waitUntil(t, "the followed task's watch to be renewed", func() bool { return watched(el9) })
	h.unwatch(el9) // one stream still follows it
	expire()
	waitUntil(t, "the task one stream follows to be renewed", func() bool { return watched(el9) })
	// Two renewals later the task nobody follows is still not watched.
	expire()
	waitUntil(t, "another renewal", func() bool { return watched(el9) })
	expire()
	waitUntil(t, "another renewal", func() bool { return watched(el9) })
	if watched(deb) {
		t.Fatal("a task no stream follows was renewed")
	}
	h.unwatch(el9)
	expire()
	time.Sleep(5 * h.renewEvery)
	if watched(el9) {
		t.Fatal("a task no stream follows any more was renewed")
	}
	mu.Lock()
	defer mu.Unlock()
	if warnings.Len() > 0 {
		t.Fatalf("the hub warned:\n%s", warnings.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// waitUntil polls cond every 20 ms for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
