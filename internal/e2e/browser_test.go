package e2e

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kiln-build/kiln/internal/testsupport/browsertest"
)

// A job's page in headless chromium, served by a kiln-web daemon, while
// real kiln-splitter and kiln-builder daemons build the job: the page shows
// the build's log lines as they come (the build waits at a gate until the
// page has shown its first lines, so they certainly arrived while it ran)
// and the status turning to succeeded, with the built package listed.
// KILN_SCREENSHOT=path saves a screenshot of the finished page
// (docs/screenshot-job.png is made so).
func TestBrowserFollowsRealBuild(t *testing.T) {
	t.Parallel()
	exe := browsertest.Chromium(t)
	f := newFarm(t)
	f.startSplitter(t, f.role(t, "kiln_splitter"))
	f.startBuilder(t, "build01", f.role(t, "kiln_builder"))
	_, web := f.startWeb(t, f.role(t, "kiln_web"))
	g := newGate(t)
	out, code := kiln(t, nil, append(f.login(f.person), "--web-url", web, "submit", "--bucket", "devel", "--platform", platform,
		"--note", "a real build, followed in chromium", gatedSRPM(t, "hello", g))...)
	if code != 0 {
		t.Fatalf("kiln submit: exit %d\n%s", code, out)
	}
	job := submittedJob(t, out)
	task := f.taskOf(t, job)

	ctx := browsertest.Start(t, exe)

	var mu sync.Mutex
	var problems []string
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError || strings.Contains(m.Text, "Content Security Policy") {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	// waitPage polls a JavaScript predicate on the page.
	waitPage := func(what, predicate string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingTimeout(2*time.Minute))); err != nil {
			t.Fatalf("waiting for the page to show %s: %v", what, err)
		}
	}

	// The page is opened as soon as the job exists; the task may not have
	// started yet, and its log pane appears when it does.
	if err := chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("%s/jobs/%d", web, job))); err != nil {
		t.Fatal(err)
	}
	pane := fmt.Sprintf(`document.querySelector("#livelog-%d-1 pre")`, task)
	waitPage("the first log lines", pane+` !== null && `+pane+`.textContent.includes("line 2: compiling hello.c")`)
	if got := f.task(t, task); got.Status != "building" {
		t.Fatalf("task %+v while the page shows its first lines; want building", got)
	}
	// Read in one evaluation: the live updates replace the element, and a
	// query by node id can find it gone in between (it failed CI once).
	if status, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#job-status").textContent.trim()`)); err != nil || status != "building" {
		t.Fatalf("status on the page while building: %q (%v)", status, err)
	}
	g.open(t)

	waitPage("the job succeeded", `document.querySelector("#job-status").textContent === "succeeded"`)
	waitPage("the package in the task table", `document.querySelector("#tasks").textContent.includes("hello-1.0-1.x86_64.rpm")`)
	// When the job ends the open page loads itself again, as a fresh load
	// shows a finished job (no live pane); the task page then holds the
	// whole log as stored, in order.
	if err := chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("%s/tasks/%d", web, task))); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text("#log"))
	if err != nil {
		t.Fatal(err)
	}
	var stored string
	f.scan(t, `SELECT string_agg(data, '' ORDER BY seq) FROM kiln.log_chunk WHERE task_id = $1 AND attempt = 1`, []any{task}, &stored)
	if text != stored {
		t.Errorf("log on the page:\n%s\nstored:\n%s", text, stored)
	}
	inOrder(t, "the page's log", text, "line 1: configuring hello", "line 2: compiling hello.c", "line 3:", "line 5:", "Wrote: ")

	if path := os.Getenv("KILN_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range problems {
		t.Errorf("browser console: %s", m)
	}
}
