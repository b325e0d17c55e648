package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// started runs kiln in the background; the returned function waits for it
// to exit and returns its status.
func started(t *testing.T, dbURL string, args ...string) (*syncBuffer, func() int) {
	t.Helper()
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- kilnTo(ctx, out, dbURL, args...) }()
	t.Cleanup(cancel)
	return out, func() int { return <-done }
}

// The changes are made by the test on other connections after watch has
// printed the job's state, so watch can only learn of them through NOTIFY.
func TestWatchFollowsAJobLive(t *testing.T) {
	t.Parallel()
	f, url := seed(t)
	p := f.DB.Pool
	job := farmtest.Submit(t, p, f.Alice, "devel", []string{farmtest.EL9, farmtest.Bookworm}, farmtest.File{Name: "live-1-1.src.rpm", Data: []byte("live")})

	out, exit := started(t, url, "watch", fmt.Sprint(job))
	waitFor(t, out, fmt.Sprintf("job %d submitted", job))

	ids := farmtest.Split(t, p, job, farmtest.EL9, farmtest.Bookworm)
	waitFor(t, out, fmt.Sprintf("t%d el9-x86_64 pending", ids[0]))
	waitFor(t, out, fmt.Sprintf("job %d queued", job))

	a := farmtest.Take(t, p, ids[0], "b1")
	waitFor(t, out, fmt.Sprintf("t%d el9-x86_64 building on b1 (attempt 1)", ids[0]))
	waitFor(t, out, fmt.Sprintf("job %d building", job))

	farmtest.Log(t, p, ids[0], a, 0, "compiling\n") // no line for a log batch
	farmtest.Finish(t, p, ids[0], a, "succeeded", "", farmtest.Artifact{Kind: "package", Name: "live-1-1.x86_64.rpm", Data: []byte("rpm")})
	waitFor(t, out, fmt.Sprintf("t%d el9-x86_64 succeeded after", ids[0]))

	b := farmtest.Take(t, p, ids[1], "b1")
	farmtest.Finish(t, p, ids[1], b, "failed", "dpkg-buildpackage exited with status 2")
	if code := exit(); code != ExitFailure {
		t.Fatalf("watch of a partially failed job exited %d, want %d\n%s", code, ExitFailure, out)
	}
	for _, want := range []string{
		fmt.Sprintf("t%d bookworm-amd64 failed: dpkg-buildpackage exited with status 2", ids[1]),
		fmt.Sprintf("job %d partially_failed", job),
		"live-1-1.x86_64.rpm", // the final kiln show
		fmt.Sprintf("error: job %d partially_failed", job),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("watch output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out.String(), "compiling") {
		t.Errorf("watch printed the log:\n%s", out)
	}
}

// A watch whose connection is cut (as by a server restart) says so,
// connects again and goes on; what changed meanwhile is not missed.
func TestWatchReconnects(t *testing.T) {
	t.Parallel()
	f, _ := seed(t)
	p := f.DB.Pool
	carol := farmtest.Person(t, f.DB, "carol", "kiln_submitter")
	job := farmtest.Submit(t, p, f.Alice, "devel", []string{farmtest.EL9}, farmtest.File{Name: "cut-1-1.src.rpm", Data: []byte("cut")})
	out, exit := started(t, f.DB.URLAs(carol), "watch", fmt.Sprint(job))
	waitFor(t, out, fmt.Sprintf("job %d submitted", job))
	if _, err := p.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, carol); err != nil {
		t.Fatal(err)
	}
	ids := farmtest.Split(t, p, job, farmtest.EL9)
	waitFor(t, out, "; reconnecting")
	waitFor(t, out, fmt.Sprintf("job %d queued", job))
	a := farmtest.Take(t, p, ids[0], "b1")
	farmtest.Finish(t, p, ids[0], a, "succeeded", "")
	if code := exit(); code != 0 {
		t.Fatalf("watch exited %d after a reconnect\n%s", code, out)
	}
}

func TestWatchSucceededAndJSON(t *testing.T) {
	t.Parallel()
	f, url := seed(t)
	p := f.DB.Pool

	// A job that has finished already: watch says so and exits at once.
	out := must(t, url, 0, []string{"watch", fmt.Sprint(f.Jobs["succeeded"])}, "succeeded")
	if !strings.Contains(out, fmt.Sprintf("job %d succeeded", f.Jobs["succeeded"])) {
		t.Errorf("watch of a finished job:\n%s", out)
	}
	must(t, url, ExitFailure, []string{"watch", fmt.Sprint(f.Jobs["cancelled"])}, "cancelled")
	must(t, url, ExitNotFound, []string{"watch", "999999"}, "does not exist")
	// Its events carry when they happened, not when watch saw them.
	if _, err := p.Exec(t.Context(), `UPDATE kiln.job SET finished_at = finished_at - interval '3 days' WHERE id = $1`, f.Jobs["succeeded"]); err != nil {
		t.Fatal(err)
	}
	var old report.Job
	mustJSON(t, url, &old, "show", fmt.Sprint(f.Jobs["succeeded"]))
	line, _ := kiln(t, url, "watch", "--json", fmt.Sprint(f.Jobs["succeeded"]))
	var first watchEvent
	if err := json.NewDecoder(strings.NewReader(line)).Decode(&first); err != nil || old.FinishedAt == nil || !first.At.Equal(*old.FinishedAt) {
		t.Errorf("watch of a job finished at %v stamped %v (%v):\n%s", old.FinishedAt, first.At, err, line)
	}

	job := farmtest.Submit(t, p, f.Bob, "devel", []string{farmtest.EL9}, farmtest.File{Name: "json-1-1.src.rpm", Data: []byte("json")})
	ids := farmtest.Split(t, p, job, farmtest.EL9)
	buf, exit := started(t, url, "watch", "--json", fmt.Sprint(job))
	waitFor(t, buf, `"status":"queued"`)
	a := farmtest.Take(t, p, ids[0], "b1")
	waitFor(t, buf, `"status":"building"`)
	farmtest.Finish(t, p, ids[0], a, "succeeded", "")
	if code := exit(); code != 0 {
		t.Fatalf("watch --json exited %d\n%s", code, buf)
	}
	// JSON lines: events, then the final job.
	dec := json.NewDecoder(strings.NewReader(buf.String()))
	var events []watchEvent
	var final report.Job
	for dec.More() {
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("%v\n%s", err, buf)
		}
		b, _ := json.Marshal(raw)
		if _, isJob := raw["packages"]; isJob {
			json.Unmarshal(b, &final)
			continue
		}
		var e watchEvent
		json.Unmarshal(b, &e)
		events = append(events, e)
	}
	var seen []string
	for _, e := range events {
		seen = append(seen, fmt.Sprintf("%d/%s", e.TaskID, e.Status))
	}
	want := fmt.Sprintf("0/queued %d/pending 0/building %d/building 0/succeeded %d/succeeded", ids[0], ids[0], ids[0])
	if strings.Join(seen, " ") != want || final.ID != job || final.Status != "succeeded" {
		t.Errorf("watch --json events %q, want %q; final %+v", strings.Join(seen, " "), want, final)
	}
}

func TestLogFollowsLive(t *testing.T) {
	t.Parallel()
	f, url := seed(t)
	p := f.DB.Pool
	job := farmtest.Submit(t, p, f.Alice, "devel", []string{farmtest.EL9}, farmtest.File{Name: "follow-1-1.src.rpm", Data: []byte("follow")})
	task := farmtest.Split(t, p, job, farmtest.EL9)[0]
	ref := fmt.Sprintf("t%d", task)

	must(t, url, ExitNotFound, []string{"log", ref}, "has not started yet")

	// Followed from before the first attempt.
	out, exit := started(t, url, "log", "-f", ref)
	a := farmtest.Take(t, p, task, "b2")
	waitFor(t, out, "--- attempt 1 on b2 ---")
	farmtest.Log(t, p, task, a, 0, "first line\n")
	waitFor(t, out, "first line\n")
	farmtest.Log(t, p, task, a, 1, "second line\n")
	waitFor(t, out, "second line\n")

	// The janitor finds b2 silent; b1 takes the task again.
	farmtest.Lose(t, p, task)
	a = farmtest.Take(t, p, task, "b1")
	waitFor(t, out, "--- attempt 2 on b1 ---")
	farmtest.Log(t, p, task, a, 0, "again from the start\n")
	farmtest.Log(t, p, task, a, 1, "error: it broke\n")
	farmtest.Finish(t, p, task, a, "failed", "rpmbuild exited with status 1")
	if code := exit(); code != ExitFailure {
		t.Fatalf("log -f of a failed task exited %d\n%s", code, out)
	}
	want := "--- attempt 1 on b2 ---\nfirst line\nsecond line\n--- attempt 2 on b1 ---\nagain from the start\nerror: it broke\n" +
		"error: task " + ref + " failed: rpmbuild exited with status 1\n"
	if out.String() != want {
		t.Errorf("log -f printed:\n%s\nwant:\n%s", out, want)
	}

	// Without -f: the current attempt, or an earlier one.
	must(t, url, 0, []string{"log", ref}, "again from the start\nerror: it broke\n")
	if o := must(t, url, 0, []string{"log", "--attempt", "1", fmt.Sprint(task)}); o != "first line\nsecond line\n" {
		t.Errorf("log --attempt 1: %q", o)
	}
	must(t, url, ExitNotFound, []string{"log", "--attempt", "3", ref}, "has no attempt 3")
	var chunks []report.LogChunk
	mustJSON(t, url, &chunks, "log", ref)
	if len(chunks) != 2 || chunks[1].Data != "error: it broke\n" || chunks[1].Attempt != 2 {
		t.Errorf("log --json: %+v", chunks)
	}
	// Following a task that has ended prints its log and its outcome.
	must(t, url, ExitFailure, []string{"log", "-f", ref}, "error: it broke\n", "failed: rpmbuild exited")
	must(t, url, 0, []string{"log", "-f", fmt.Sprintf("t%d", f.Tasks["succeeded/el9-x86_64"])}, "Wrote: hello-1.0-1.x86_64.rpm")
	must(t, url, ExitNotFound, []string{"log", "t999999"}, "task 999999 does not exist")
	must(t, url, ExitUsage, []string{"log", "tx"}, "not a task id")
}

// A log -f whose connection is cut while batches keep arriving says so,
// connects again and goes on from the last batch it printed: no line lost
// or printed twice.
func TestLogReconnects(t *testing.T) {
	t.Parallel()
	f, _ := seed(t)
	p := f.DB.Pool
	carol := farmtest.Person(t, f.DB, "carol", "kiln_submitter")
	job := farmtest.Submit(t, p, f.Alice, "devel", []string{farmtest.EL9}, farmtest.File{Name: "logcut-1-1.src.rpm", Data: []byte("cut")})
	task := farmtest.Split(t, p, job, farmtest.EL9)[0]
	a := farmtest.Take(t, p, task, "b1")
	out, exit := started(t, f.DB.URLAs(carol), "log", "-f", fmt.Sprintf("t%d", task))
	want := "--- attempt 1 on b1 ---\n"
	for seq := range 40 {
		line := fmt.Sprintf("line %d\n", seq)
		farmtest.Log(t, p, task, a, seq, line)
		want += line
		if seq == 10 {
			waitFor(t, out, line)
			if _, err := p.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, carol); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, out, "; reconnecting")
	farmtest.Finish(t, p, task, a, "succeeded", "")
	if code := exit(); code != 0 {
		t.Fatalf("log -f exited %d after a reconnect\n%s", code, out)
	}
	note := regexp.MustCompile(`(?m)^kiln: .*; reconnecting\n`)
	if got := note.ReplaceAllString(out.String(), ""); got != want {
		t.Errorf("log -f across a reconnect printed:\n%s\nwant:\n%s", got, want)
	}
}
