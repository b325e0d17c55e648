package web

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kiln-build/kiln/internal/testsupport/browsertest"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// clockText is what differs between two loads of the same state: the
// durations that grow with the clock ("12s ago", a pending task's wait).
var clockText = regexp.MustCompile(`\b\d+(s|m\d\ds|h\d\dm|d\d\dh)\b`)

// mainHTML is the main part of the page open in ctx, with clockText
// blanked.
func mainHTML(t *testing.T, ctx context.Context) string {
	t.Helper()
	html, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").outerHTML`))
	if err != nil {
		t.Fatal(err)
	}
	return clockText.ReplaceAllString(html, "T")
}

// TestBrowserOpenPagesMatchFreshLoad keeps a job page, the pages of its two
// tasks (one building, one waiting for a builder), the dashboard, the queue
// and the job list open while the job's build ends (one task succeeds with
// an artifact, the other fails), then loads each page afresh in another
// tab: the open page must show exactly what the fresh load shows, the
// attempts finished, finish times, artifacts, the failure's log tail and
// the job's row included.
func TestBrowserOpenPagesMatchFreshLoad(t *testing.T) {
	t.Parallel()
	exe := browsertest.Chromium(t)
	b := setup(t)
	f := b.f
	p := f.DB.Pool
	job := f.Jobs["building"]
	el9, deb := f.Tasks["building/"+farmtest.EL9], f.Tasks["building/"+farmtest.Bookworm]

	browser := browsertest.Start(t, exe)
	paths := []string{
		fmt.Sprintf("/jobs/%d", job), fmt.Sprintf("/tasks/%d", el9), fmt.Sprintf("/tasks/%d", deb),
		"/", "/queue", "/jobs",
	}
	tabs := map[string]context.Context{}
	for i, path := range paths {
		ctx := browser
		if i > 0 {
			var cancel context.CancelFunc
			ctx, cancel = chromedp.NewContext(browser)
			t.Cleanup(cancel)
		}
		if err := chromedp.Do(ctx, chromedp.Navigate(b.ts.URL+path)); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		tabs[path] = ctx
	}
	// Every page's event stream is open before the build moves on (the
	// server subscribes a stream before it answers, and the page marks
	// html[data-stream] when the answer arrives): counting the server's
	// subscribers could count one page twice and miss another.
	for _, path := range paths {
		if _, err := chromedp.Run(tabs[path], chromedp.Poll[bool](`document.documentElement.dataset.stream === "open"`,
			chromedp.WithPollingTimeout(time.Minute))); err != nil {
			t.Fatalf("%s never opened its event stream: %v", path, err)
		}
	}

	farmtest.Log(t, p, el9, 1, 2, "Wrote: /builddir/build/RPMS/x86_64/hello-1.1-1.x86_64.rpm\n+ exit 0\n")
	farmtest.Finish(t, p, el9, 1, "succeeded", "",
		farmtest.Artifact{Kind: "package", Name: "hello-1.1-1.x86_64.rpm", Data: []byte("binary rpm of hello 1.1")})
	a := farmtest.Take(t, p, deb, "b1")
	farmtest.Log(t, p, deb, a, 0, "dpkg-buildpackage -us -uc -b\nhello.c:3:1: error: expected ';' before '}' token\nmake: *** [hello] Error 1\n")
	farmtest.Finish(t, p, deb, a, "failed", "build failed: exit status 2")

	fresh, cancel := chromedp.NewContext(browser)
	defer cancel()
	for i, path := range paths {
		ctx := tabs[path]
		// The job and task pages load themselves again after the end
		// event (html[data-live] turns "fresh").
		if i < 3 {
			if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.documentElement.dataset.live === "fresh"`,
				chromedp.WithPollingTimeout(2*time.Minute))); err != nil {
				t.Fatalf("%s never loaded itself again: %v", path, err)
			}
		}
		// The list pages load themselves again at most every farmPace;
		// wait until the open page and a fresh load agree.
		var live, want string
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
			if err := chromedp.Do(fresh, chromedp.Navigate(b.ts.URL+path)); err != nil {
				t.Fatal(err)
			}
			live, want = mainHTML(t, ctx), mainHTML(t, fresh)
			if live == want || time.Now().After(deadline) {
				break
			}
		}
		if live != want {
			t.Errorf("%s open through the build differs from a fresh load:\n%s\nfresh:\n%s", path, live, want)
		}
	}
	// What the fresh job page shows, the open one shows too.
	job0 := mainHTML(t, tabs[paths[0]])
	for _, want := range []string{"hello-1.1-1.x86_64.rpm", "Why it failed", "expected &#39;;&#39; before", "st-partially_failed"} {
		if !strings.Contains(job0, want) && !strings.Contains(job0, strings.ReplaceAll(want, "&#39;", "'")) {
			t.Errorf("job page lacks %q:\n%s", want, job0)
		}
	}
}

// TestBrowserFailedTaskOpensAtError loads the page of a failed task: the
// log is scrolled to its first error line, which is marked.
func TestBrowserFailedTaskOpensAtError(t *testing.T) {
	t.Parallel()
	exe := browsertest.Chromium(t)
	b := setup(t)
	p := b.f.DB.Pool
	deb := b.f.Tasks["building/"+farmtest.Bookworm]
	a := farmtest.Take(t, p, deb, "b1")
	var log strings.Builder
	for i := range 200 {
		fmt.Fprintf(&log, "compiling part %d of hello\n", i)
	}
	log.WriteString("hello.c:3:1: error: expected ';' before '}' token\n")
	for i := range 50 {
		fmt.Fprintf(&log, "make: leaving directory %d\n", i)
	}
	farmtest.Log(t, p, deb, a, 0, log.String())
	farmtest.Finish(t, p, deb, a, "failed", "build failed: exit status 2")

	ctx := browsertest.Start(t, exe)
	if err := chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("%s/tasks/%d", b.ts.URL, deb))); err != nil {
		t.Fatal(err)
	}
	mark, err := chromedp.Run(ctx, chromedp.Text("#first-error"))
	if err != nil || mark != "hello.c:3:1: error: expected ';' before '}' token" {
		t.Fatalf("marked line: %q (%v)", mark, err)
	}
	// The mark is inside the log box's visible part.
	visible, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(function () {
		var pre = document.getElementById("log").getBoundingClientRect();
		var m = document.getElementById("first-error").getBoundingClientRect();
		return m.top >= pre.top && m.bottom <= pre.bottom && m.top >= 0 && m.bottom <= window.innerHeight;
	})()`))
	if err != nil || !visible {
		t.Errorf("the first error is not in view (%v)", err)
	}
}

// TestBrowserNarrowPages loads every kind of page at 400 px width: none
// scrolls sideways (log and code blocks scroll inside themselves).
func TestBrowserNarrowPages(t *testing.T) {
	t.Parallel()
	exe := browsertest.Chromium(t)
	b := setup(t)
	f := b.f
	ctx := browsertest.Start(t, exe)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(400, 900)); err != nil {
		t.Fatal(err)
	}
	paths := []string{"/", "/jobs", "/builders", "/builders/b1", "/platforms", "/queue", "/nosuch", "/jobs/999999"}
	for _, id := range f.Jobs {
		paths = append(paths, fmt.Sprintf("/jobs/%d", id))
	}
	for _, id := range f.Tasks {
		paths = append(paths, fmt.Sprintf("/tasks/%d", id))
	}
	for _, path := range paths {
		if err := chromedp.Do(ctx, chromedp.Navigate(b.ts.URL+path)); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		wide, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(function () {
			var d = document.documentElement;
			if (d.scrollWidth <= d.clientWidth) return "";
			var out = [];
			document.querySelectorAll("body *").forEach(function (e) {
				if (e.closest("pre, code")) return;
				var r = e.getBoundingClientRect();
				if (r.right > d.clientWidth + 1) out.push(e.tagName.toLowerCase() + (e.className ? "." + e.className : "") + " to " + Math.round(r.right) + "px");
			});
			return "page is " + d.scrollWidth + "px wide: " + out.slice(0, 8).join(", ");
		})()`))
		if err != nil {
			t.Fatal(err)
		}
		if wide != "" {
			t.Errorf("%s at 400 px: %s", path, wide)
		}
	}
}
