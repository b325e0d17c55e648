package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// bundle is one test's seeded farm and a kiln-web serving it, connected as
// a login role of kiln_web like the real one.
type bundle struct {
	f   *farmtest.Farm
	s   *Server
	ts  *httptest.Server
	web string // the web's login role
}

func setup(t *testing.T, adjust ...func(*Config)) *bundle {
	t.Helper()
	db := pgtest.New(t)
	f := farmtest.Seed(t, db)
	b := &bundle{f: f, web: farmtest.Person(t, db, "web", "kiln_web")}
	pool, err := pgxpool.New(context.Background(), db.URLAs(b.web))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg := Config{DB: pool, SessionKey: []byte("0123456789abcdef0123456789abcdef")}
	for _, a := range adjust {
		a(&cfg)
	}
	if b.s, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.ts = httptest.NewUnstartedServer(b.s.Handler())
	b.ts.Config.BaseContext = func(net.Listener) context.Context { return ctx }
	b.ts.Start()
	t.Cleanup(b.ts.Close)
	t.Cleanup(cancel) // runs first: ends the event streams so Close can return
	go b.s.Run(ctx)
	// The live updates listen before the test starts (a probe would see
	// 503 until then).
	for !b.s.hub.listening() {
		select {
		case <-ctx.Done():
			t.Fatal("listener never connected")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return b
}

// get fetches path and fails the test unless the status is want.
func (b *bundle) get(t *testing.T, path string, want int) string {
	t.Helper()
	resp, err := http.Get(b.ts.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d\n%s", path, resp.StatusCode, want, body)
	}
	return string(body)
}

// getJSON fetches an API path into v.
func (b *bundle) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	body := b.get(t, path, http.StatusOK)
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
}

func contains(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s does not contain %q", what, w)
		}
	}
}

func lacks(t *testing.T, what, body string, nots ...string) {
	t.Helper()
	for _, n := range nots {
		if strings.Contains(body, n) {
			t.Errorf("%s contains %q", what, n)
		}
	}
}

func TestDashboardAndLists(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.f
	building := f.Tasks["building/"+farmtest.EL9]

	page := b.get(t, "/", http.StatusOK)
	contains(t, "dashboard", page, "el9-x86_64", "bookworm-amd64", "el8-aarch64", "inactive",
		`href="/builders/b1"`, fmt.Sprintf(`href="/tasks/%d">task %d</a> of <a href="/jobs/%d">job %d</a>: hello on el9-x86_64`, building, building, f.Jobs["building"], f.Jobs["building"]),
		fmt.Sprintf(`href="/jobs/%d"`, f.Jobs["cancelled"]), fmt.Sprintf(`href="/jobs/%d"`, f.Jobs["submitted"]))

	page = b.get(t, "/platforms", http.StatusOK)
	contains(t, "platforms", page, "rpmbuild", "dpkg", "2h00m", `<tr class="inactive">`)

	page = b.get(t, "/builders", http.StatusOK)
	contains(t, "builders", page, "b1.example.org", "b2.example.org", "offline", "1/2")

	page = b.get(t, "/builders/b1", http.StatusOK)
	contains(t, "builder b1", page, "Recent attempts", fmt.Sprintf(`href="/tasks/%d?attempt=1"`, building), "timed out", "rpmbuild exited with status 1")
	lacks(t, "builder b1 (anonymous)", page, "Disable this builder")
	b.get(t, "/builders/nope", http.StatusNotFound)
}

// jobIDs lists the job links of a job list page, in order.
func jobIDs(page string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<td><a href="/jobs/(\d+)">`).FindAllStringSubmatch(page, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestJobList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	J := b.f.Jobs
	ids := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, fmt.Sprint(J[n]))
		}
		return out
	}
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", ids("cancelled", "partially_failed", "failed", "succeeded", "building", "queued", "invalid", "submitted")},
		{"?submitter=" + b.f.Bob, ids("failed", "queued")},
		{"?status=failed", ids("failed")},
		{"?status=failed&status=partially_failed", ids("partially_failed", "failed")},
		{"?platform=el8-aarch64", ids("queued")},
		{"?bucket=stable", nil},
		{"?since=1h&submitter=" + b.f.Bob, ids("failed", "queued")},
		{"?since=2999-01-01", nil},
	} {
		if got := jobIDs(b.get(t, "/jobs"+c.query, http.StatusOK)); !slices.Equal(got, c.want) {
			t.Errorf("/jobs%s: %v, want %v", c.query, got, c.want)
		}
	}

	// Keyset pagination: pages of three, following the "older" link.
	var all []string
	next := "/jobs?limit=3&status=" // an empty status is no filter
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		page := b.get(t, next, http.StatusOK)
		all = append(all, jobIDs(page)...)
		m := regexp.MustCompile(`<a href="([^"]+)" rel="next">`).FindStringSubmatch(page)
		next = ""
		if m != nil {
			next = strings.ReplaceAll(m[1], "&amp;", "&")
			if !strings.Contains(next, "limit=3") {
				t.Errorf("next page link %s lost the filters", next)
			}
		}
	}
	if want := ids("cancelled", "partially_failed", "failed", "succeeded", "building", "queued", "invalid", "submitted"); !slices.Equal(all, want) {
		t.Errorf("paged: %v, want %v", all, want)
	}

	b.get(t, "/jobs?status=done", http.StatusBadRequest)
	b.get(t, "/jobs?since=yesterday", http.StatusBadRequest)
	b.get(t, "/jobs?before=x", http.StatusBadRequest)
}

func TestJobPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.f
	ctx := context.Background()

	j, err := report.GetJob(ctx, f.DB.Pool, f.Jobs["succeeded"])
	if err != nil {
		t.Fatal(err)
	}
	el9 := j.Tasks[1]
	rpm := el9.Artifacts[1]
	page := b.get(t, fmt.Sprintf("/jobs/%d", j.ID), http.StatusOK)
	contains(t, "succeeded job", page, `<span id="job-status" class="st st-succeeded">succeeded</span>`,
		"hello-1.0-1.src.rpm", "lib-3-1.src.rpm", j.Packages[0].SHA256, "hello 1.0-1",
		fmt.Sprintf(`href="/artifacts/%d/hello-1.0-1.x86_64.rpm"`, rpm.ID), *rpm.SHA256,
		fmt.Sprintf(`href="/tasks/%d?attempt=1">#1</a> b2 <span class="st st-lost">lost</span>`, el9.ID),
		"went silent", fmt.Sprintf(`href="/tasks/%d?attempt=2">#2</a> b1 <span class="st st-succeeded">`, el9.ID))
	lacks(t, "finished job", page, "data-events", "Cancel job")

	page = b.get(t, fmt.Sprintf("/jobs/%d", f.Jobs["building"]), http.StatusOK)
	contains(t, "building job", page, fmt.Sprintf(`data-events="/jobs/%d/events"`, f.Jobs["building"]),
		fmt.Sprintf(`data-task="%d" data-attempt="1" data-seq="1">&#43; rpmbuild --rebuild hello-1.1-1.src.rpm
compiling hello.c
</pre>`, f.Tasks["building/"+farmtest.EL9]), `<span class="st st-pending">pending</span>`)

	page = b.get(t, fmt.Sprintf("/jobs/%d", f.Jobs["failed"]), http.StatusOK)
	contains(t, "failed job", page, "rpmbuild exited with status 1", "ExclusiveArch: x86_64 aarch64", `st-skipped`)

	page = b.get(t, fmt.Sprintf("/jobs/%d", f.Jobs["invalid"]), http.StatusOK)
	contains(t, "invalid job", page, "broken-1-1.src.rpm: not an RPM file")

	page = b.get(t, fmt.Sprintf("/jobs/%d", f.Jobs["cancelled"]), http.StatusOK)
	contains(t, "cancelled job", page, "cancelled by "+f.Alice)

	b.get(t, "/jobs/999999", http.StatusNotFound)
	b.get(t, "/jobs/abc", http.StatusBadRequest)
}

func TestTaskPageLogAndDownload(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.f
	failed := f.Tasks["failed/"+farmtest.EL9]
	// The first error line is marked (<mark id="first-error">), so the log
	// is checked up to it and the error line on its own.
	log := "&#43; rpmbuild --rebuild tools-1.9-1.src.rpm\nchecking for gcc... gcc\n"
	errLine := "tools.c:3:1: error: expected &#39;;&#39;"

	page := b.get(t, fmt.Sprintf("/tasks/%d", failed), http.StatusOK)
	contains(t, "failed task", page, log, errLine, fmt.Sprintf(`href="/tasks/%d/log.txt?attempt=1"`, failed),
		"rpmbuild exited with status 1", `<span id="task-status" class="st st-failed">failed</span>`)
	lacks(t, "failed task", page, "data-events")

	raw := b.get(t, fmt.Sprintf("/tasks/%d/log.txt", failed), http.StatusOK)
	if want := "+ rpmbuild --rebuild tools-1.9-1.src.rpm\nchecking for gcc... gcc\ntools.c:3:1: error: expected ';'\nmake: *** [all] Error 1\nerror: Bad exit status from /var/tmp/rpm-tmp (%build)\n"; raw != want {
		t.Errorf("raw log: %q, want %q", raw, want)
	}
	lost := f.Tasks["succeeded/"+farmtest.EL9]
	if raw := b.get(t, fmt.Sprintf("/tasks/%d/log.txt?attempt=1", lost), http.StatusOK); raw != "building on b2\n" {
		t.Errorf("log of the lost attempt: %q", raw)
	}
	page = b.get(t, fmt.Sprintf("/tasks/%d?attempt=1", lost), http.StatusOK)
	contains(t, "lost attempt", page, "building on b2", "Log of attempt 1")
	b.get(t, fmt.Sprintf("/tasks/%d?attempt=3", lost), http.StatusBadRequest)
	b.get(t, fmt.Sprintf("/tasks/%d/log.txt?attempt=9", lost), http.StatusBadRequest)

	building := f.Tasks["building/"+farmtest.EL9]
	page = b.get(t, fmt.Sprintf("/tasks/%d", building), http.StatusOK)
	contains(t, "building task", page, fmt.Sprintf(`data-events="/tasks/%d/events?attempt=1&amp;after=1"`, building), "compiling hello.c")
	pending := f.Tasks["building/"+farmtest.Bookworm]
	page = b.get(t, fmt.Sprintf("/tasks/%d", pending), http.StatusOK)
	contains(t, "pending task", page, fmt.Sprintf(`data-events="/tasks/%d/events?attempt=0&amp;after=-1"`, pending), "Waiting for a builder")
	b.get(t, "/tasks/999999", http.StatusNotFound)

	// Download: the blob as stored, under its name, with its digest.
	task, err := report.GetTask(context.Background(), f.DB.Pool, lost)
	if err != nil {
		t.Fatal(err)
	}
	art := task.Artifacts[1]
	resp, err := http.Get(b.ts.URL + artifactURL(art))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(body)
	if resp.StatusCode != 200 || string(body) != "binary rpm of hello" || hex.EncodeToString(sum[:]) != *art.SHA256 ||
		resp.Header.Get("X-Checksum-Sha256") != *art.SHA256 ||
		resp.Header.Get("Content-Disposition") != `attachment; filename=hello-1.0-1.x86_64.rpm` {
		t.Errorf("download: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	// A wrong name redirects to the right one; a missing artifact is 404.
	b.get(t, fmt.Sprintf("/artifacts/%d/other.rpm", art.ID), http.StatusOK)
	b.get(t, "/artifacts/999999/x.rpm", http.StatusNotFound)
	// Pruned content is gone.
	if _, err := f.DB.Pool.Exec(context.Background(), "UPDATE kiln.artifact SET blob_sha256 = NULL, pruned_at = now() WHERE id = $1", art.ID); err != nil {
		t.Fatal(err)
	}
	b.get(t, artifactURL(art), http.StatusGone)
}

func TestAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.f
	ctx := context.Background()

	var list report.JobList
	b.getJSON(t, "/api/jobs?limit=3", &list)
	if len(list.Jobs) != 3 || list.Jobs[0].ID != f.Jobs["cancelled"] || list.NextBefore != f.Jobs["failed"] {
		t.Errorf("/api/jobs: %+v", list)
	}
	b.getJSON(t, fmt.Sprintf("/api/jobs?before=%d&submitter=%s", list.NextBefore, f.Bob), &list)
	if len(list.Jobs) != 1 || list.Jobs[0].ID != f.Jobs["queued"] {
		t.Errorf("/api/jobs page 2 of bob: %+v", list)
	}

	var job report.Job
	b.getJSON(t, fmt.Sprintf("/api/jobs/%d", f.Jobs["succeeded"]), &job)
	want, _ := report.GetJob(ctx, f.DB.Pool, f.Jobs["succeeded"])
	if job.ID != want.ID || job.Status != "succeeded" || len(job.Tasks) != 2 || len(job.Tasks[1].Attempts) != 2 ||
		*job.Tasks[1].Artifacts[1].SHA256 != *want.Tasks[1].Artifacts[1].SHA256 || job.Packages[1].SHA256 != want.Packages[1].SHA256 {
		t.Errorf("/api/jobs/N: %+v", job)
	}
	// The same fields as the CLI's --json: the JSON of the report type.
	raw := b.get(t, fmt.Sprintf("/api/jobs/%d", f.Jobs["succeeded"]), http.StatusOK)
	contains(t, "/api/jobs/N", raw, `"platforms_requested"`, `"submission_key"`, `"duration_seconds"`, `"attempts"`, `"artifacts"`, `"sha256"`)

	var task report.Task
	b.getJSON(t, fmt.Sprintf("/api/tasks/%d", f.Tasks["failed/"+farmtest.EL9]), &task)
	if task.Status != "failed" || task.Reason == nil || *task.Reason != "rpmbuild exited with status 1" {
		t.Errorf("/api/tasks/N: %+v", task)
	}
	var chunks []report.LogChunk
	b.getJSON(t, fmt.Sprintf("/api/tasks/%d/log?after=0", f.Tasks["failed/"+farmtest.EL9]), &chunks)
	if len(chunks) != 1 || chunks[0].Seq != 1 || !strings.HasPrefix(chunks[0].Data, "tools.c:3:1") {
		t.Errorf("/api/tasks/N/log: %+v", chunks)
	}
	var builders []report.Builder
	b.getJSON(t, "/api/builders", &builders)
	if len(builders) != 2 || builders[0].Name != "b1" || builders[0].Busy != 1 {
		t.Errorf("/api/builders: %+v", builders)
	}
	var bp BuilderPage
	b.getJSON(t, "/api/builders/b2", &bp)
	if bp.Builder.Name != "b2" || len(bp.Attempts) != 1 || bp.Attempts[0].Status != "lost" {
		t.Errorf("/api/builders/b2: %+v", bp)
	}
	var platforms []report.Platform
	b.getJSON(t, "/api/platforms", &platforms)
	if len(platforms) != 3 || platforms[2].Name != farmtest.EL9 || platforms[2].Pending != 1 || platforms[2].Building != 1 {
		t.Errorf("/api/platforms: %+v", platforms)
	}
	var q report.Queue
	b.getJSON(t, "/api/queue?platform="+farmtest.EL9, &q)
	if q.Validating != 1 || len(q.Tasks) != 1 || q.Tasks[0].TaskID != f.Tasks["queued/"+farmtest.EL9] {
		t.Errorf("/api/queue: %+v", q)
	}
	var h report.Health
	b.getJSON(t, "/api/health", &h)
	if h.Pending != 3 || h.BuildersOnline != 1 {
		t.Errorf("/api/health: %+v", h)
	}
	var e apiError
	if body := b.get(t, "/api/jobs/999999", http.StatusNotFound); json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "does not exist") {
		t.Errorf("/api/jobs/999999: %s", body)
	}
	b.get(t, "/api/jobs?status=nope", http.StatusBadRequest)
	b.get(t, "/api/builders/nope", http.StatusNotFound)
}

func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if body := b.get(t, "/healthz", http.StatusOK); body != "ok\n" {
		t.Errorf("/healthz: %q", body)
	}
	m := b.get(t, "/metrics", http.StatusOK)
	contains(t, "/metrics", m,
		"# TYPE kiln_queue_pending gauge\n",
		`kiln_queue_pending{platform="el9-x86_64"} 1`+"\n",
		`kiln_queue_building{platform="el9-x86_64"} 1`+"\n",
		`kiln_queue_pending{platform="el8-aarch64"} 1`+"\n",
		`kiln_platform_active{platform="el8-aarch64"} 0`+"\n",
		`kiln_jobs_finished_recent{status="succeeded",window_seconds="3600"} 1`+"\n",
		`kiln_jobs_finished_recent{status="invalid",window_seconds="3600"} 1`+"\n",
		`kiln_jobs{status="building"} 1`+"\n",
		`kiln_tasks_unfinished{status="pending"} 3`+"\n",
		`kiln_builders{state="offline"} 1`+"\n",
		`kiln_builds_recent{platform="el9-x86_64",status="succeeded",window_seconds="3600"} 2`+"\n",
		`kiln_builds_recent{platform="el9-x86_64",status="lost",window_seconds="3600"} 1`+"\n",
		"# TYPE kiln_build_duration_seconds summary\n",
		`kiln_build_duration_seconds{platform="bookworm-amd64",status="timed_out",window_seconds="3600",quantile="0.5"} `,
		`kiln_build_duration_seconds_count{platform="el9-x86_64",status="failed",window_seconds="3600"} 1`+"\n")
	// Every line is a comment or "name{labels} value".
	sample := regexp.MustCompile(`^[a-z_]+(\{([a-z_]+="[^"\\]*",?)*\})? [0-9.e+-]+$`)
	for _, line := range strings.Split(strings.TrimSuffix(m, "\n"), "\n") {
		if !strings.HasPrefix(line, "# ") && !sample.MatchString(line) {
			t.Errorf("malformed metrics line %q", line)
		}
	}
}

// TestHostileNames puts markup into every free-text field people control
// and checks each page shows it as text.
func TestHostileNames(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.f
	p := f.DB.Pool
	const note = `</td><script>alert("note")</script>`
	const file = `<img src=x onerror=alert(1)>.src.rpm`
	const line = "</pre><script>alert('log')</script>\n"
	id := farmtest.Submit(t, p, f.Alice, "devel", []string{farmtest.EL9}, farmtest.File{Name: file, Data: []byte("x")})
	if _, err := p.Exec(context.Background(), "UPDATE kiln.job SET note = $2 WHERE id = $1", id, note); err != nil {
		t.Fatal(err)
	}
	task := farmtest.Split(t, p, id, farmtest.EL9)[0]
	a := farmtest.Take(t, p, task, "b1")
	farmtest.Log(t, p, task, a, 0, line)
	farmtest.Finish(t, p, task, a, "failed", `<b onmouseover="x()">bad</b>`,
		farmtest.Artifact{Kind: "other", Name: `"><svg onload=alert(2)>.txt`, Data: []byte("y")})

	for _, path := range []string{"/", "/jobs", fmt.Sprintf("/jobs/%d", id), fmt.Sprintf("/tasks/%d", task), "/builders/b1"} {
		page := b.get(t, path, http.StatusOK)
		lacks(t, path, page, "<script>alert", "<img src=x", "<svg", `<b onmouseover`)
	}
	page := b.get(t, fmt.Sprintf("/jobs/%d", id), http.StatusOK)
	contains(t, "hostile job", page, "&lt;/td&gt;&lt;script&gt;alert(&#34;note&#34;)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;.src.rpm",
		"&lt;b onmouseover=&#34;x()&#34;&gt;bad&lt;/b&gt;", "&#34;&gt;&lt;svg onload=alert(2)&gt;.txt")
	page = b.get(t, fmt.Sprintf("/tasks/%d", task), http.StatusOK)
	contains(t, "hostile task", page, "&lt;/pre&gt;&lt;script&gt;alert(&#39;log&#39;)&lt;/script&gt;")
	// The download name is quoted for Content-Disposition.
	tk, _ := report.GetTask(context.Background(), p, task)
	resp, err := http.Get(b.ts.URL + artifactURL(tk.Artifacts[0]))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="\"><svg onload=alert(2)>.txt"` {
		t.Errorf("Content-Disposition: %s", cd)
	}
	// The raw log is plain text that browsers must not sniff.
	resp, err = http.Get(b.ts.URL + fmt.Sprintf("/tasks/%d/log.txt", task))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("raw log headers: %v", resp.Header)
	}
}

func TestRequireAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.RequireAuth = true })
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(b.ts.URL + "/jobs?status=failed")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next="+url.QueryEscape("/jobs?status=failed") {
		t.Errorf("anonymous page with require-auth: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	b.get(t, "/api/jobs", http.StatusUnauthorized)
	b.get(t, "/healthz", http.StatusOK)
	b.get(t, "/metrics", http.StatusOK)
	b.get(t, "/static/style.css", http.StatusOK)
	// With a session, reading works.
	req, _ := http.NewRequest("GET", b.ts.URL+"/jobs", nil)
	req.AddCookie(b.session(t, b.f.Bob))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("page with a session: %d", resp.StatusCode)
	}
}
