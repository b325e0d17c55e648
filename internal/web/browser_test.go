package web

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kiln-build/kiln/internal/testsupport/browsertest"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// TestBrowserFollowsJob opens a building job's page in headless chromium
// and plays a builder on another connection: the page must show the new
// log lines and the job turning to succeeded, with nothing but its own
// script. KILN_SCREENSHOT=path saves a screenshot (docs/screenshot-job.png
// was made so).
func TestBrowserFollowsJob(t *testing.T) {
	t.Parallel()
	exe := browsertest.Chromium(t)
	b := setup(t)
	f := b.f
	p := f.DB.Pool
	job := f.Jobs["building"]
	el9, deb := f.Tasks["building/"+farmtest.EL9], f.Tasks["building/"+farmtest.Bookworm]

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

	if err := chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("%s/jobs/%d", b.ts.URL, job))); err != nil {
		t.Fatal(err)
	}
	status, err := chromedp.Run(ctx, chromedp.Text("#job-status"))
	if err != nil || status != "building" {
		t.Fatalf("status on the page: %q (%v)", status, err)
	}
	// waitFor polls a JavaScript predicate on the page.
	waitFor := func(what, predicate string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingTimeout(2*time.Minute))); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	// The event stream is open before the builder goes on (the server
	// counts its subscribers).
	for {
		b.s.hub.mu.Lock()
		n := len(b.s.hub.subs)
		b.s.hub.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	lines := []string{
		"+ cd hello-1.1\n+ ./configure --prefix=/usr\nchecking for gcc... gcc\nchecking whether the C compiler works... yes\n",
		"+ make -j2\ngcc -O2 -g -o hello hello.c\n",
		"+ make install DESTDIR=/builddir/build/BUILDROOT/hello-1.1-1.x86_64\nProcessing files: hello-1.1-1.x86_64\n",
	}
	for i, l := range lines {
		farmtest.Log(t, p, el9, 1, 2+i, l)
	}
	waitFor("the el9 log lines", fmt.Sprintf(`document.querySelector("#livelog-%d-1 pre").textContent.includes("Processing files: hello-1.1-1.x86_64")`, el9))

	a := farmtest.Take(t, p, deb, "b1")
	farmtest.Log(t, p, deb, a, 0, "dpkg-buildpackage -us -uc -b\ndpkg-source --before-build .\n debian/rules build\n")
	waitFor("the bookworm log pane", fmt.Sprintf(`document.querySelector("#livelog-%d-%d pre") !== null &&
		document.querySelector("#livelog-%d-%d pre").textContent.includes("debian/rules build")`, deb, a, deb, a))

	farmtest.Log(t, p, el9, 1, 5, "Wrote: /builddir/build/RPMS/x86_64/hello-1.1-1.x86_64.rpm\n+ exit 0\n")
	// The live pane is read before the end: when the job ends the page
	// loads itself again and shows what a fresh load shows.
	waitFor("the el9 log's last line", fmt.Sprintf(`document.querySelector("#livelog-%d-1 pre") !== null &&
		document.querySelector("#livelog-%d-1 pre").textContent.includes("+ exit 0")`, el9, el9))
	text, err := chromedp.Run(ctx, chromedp.Text(fmt.Sprintf("#livelog-%d-1 pre", el9)))
	if err != nil {
		t.Fatal(err)
	}
	if want := "+ rpmbuild --rebuild hello-1.1-1.src.rpm\ncompiling hello.c\n" + strings.Join(lines, "") +
		"Wrote: /builddir/build/RPMS/x86_64/hello-1.1-1.x86_64.rpm\n+ exit 0\n"; text != want {
		t.Errorf("log on the page:\n%s\nwant:\n%s", text, want)
	}
	farmtest.Finish(t, p, el9, 1, "succeeded", "",
		farmtest.Artifact{Kind: "package", Name: "hello-1.1-1.x86_64.rpm", Data: []byte("binary rpm of hello 1.1")})
	farmtest.Log(t, p, deb, a, 1, "dpkg-deb: building package 'hello' in '../hello_1.1-1_amd64.deb'.\n")
	farmtest.Finish(t, p, deb, a, "succeeded", "",
		farmtest.Artifact{Kind: "package", Name: "hello_1.1-1_amd64.deb", Data: []byte("binary deb of hello 1.1")})

	waitFor("the job to succeed", `document.querySelector("#job-status").textContent === "succeeded"`)
	waitFor("the artifacts in the task table", `document.querySelector("#tasks").textContent.includes("hello_1.1-1_amd64.deb")`)

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
