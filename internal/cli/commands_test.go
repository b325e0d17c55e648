package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/report"
)

func TestJobs(t *testing.T) {
	t.Parallel()
	f, url := seed(t)
	J := f.Jobs

	out := must(t, url, 0, []string{"jobs"}, "JOB", "SUBMITTER")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 9 {
		t.Fatalf("jobs: %d lines, want header + 8:\n%s", len(lines), out)
	}
	// Newest first; each line carries the id, status and the tasks at a glance.
	order := []string{"cancelled", "partially_failed", "failed", "succeeded", "building", "queued", "invalid", "submitted"}
	for i, status := range order {
		fields := strings.Fields(lines[i+1])
		if fields[0] != fmt.Sprint(J[status]) || fields[3] != status {
			t.Errorf("line %d: %q, want job %d %s", i+1, lines[i+1], J[status], status)
		}
	}
	for _, want := range []string{
		"bookworm-amd64:ok el9-x86_64:ok", "bookworm-amd64:TIMEOUT el9-x86_64:ok", "bookworm-amd64:skip el9-x86_64:FAIL",
		"bookworm-amd64:wait el9-x86_64:build", "el8-aarch64:wait el9-x86_64:wait", "(waiting for validation)",
		"(broken-1-1.src.rpm: not an RPM file)", "hello,lib", f.Bob,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("jobs output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colours written to a non-terminal:\n%q", out)
	}

	out = must(t, url, 0, []string{"jobs", "--mine", "--status", "failed,partially_failed", "--status", "cancelled"})
	if strings.Count(out, "\n") != 3 || strings.Contains(out, f.Bob) {
		t.Errorf("--mine --status: \n%s", out)
	}
	must(t, url, 0, []string{"jobs", "--user", f.Bob, "--platform", "el8-aarch64"}, fmt.Sprint(J["queued"]))
	must(t, url, 0, []string{"jobs", "--bucket", "stable"}, "no jobs")
	must(t, url, 0, []string{"jobs", "--since", "2h"}, fmt.Sprint(J["submitted"]))
	must(t, url, 0, []string{"jobs", "--since", "2099-01-01"}, "no jobs")
	out = must(t, url, 0, []string{"jobs", "--limit", "3"}, fmt.Sprintf("more: add --before %d", J["failed"]))
	if strings.Contains(out, fmt.Sprintf("\n%d ", J["succeeded"])) {
		t.Errorf("--limit 3 shows a fourth job:\n%s", out)
	}
	must(t, url, 0, []string{"jobs", "--before", fmt.Sprint(J["queued"])}, fmt.Sprint(J["invalid"]))

	var list report.JobList
	mustJSON(t, url, &list, "jobs", "--limit", "2")
	if len(list.Jobs) != 2 || list.Jobs[0].ID != J["cancelled"] || list.NextBefore != J["partially_failed"] ||
		len(list.Jobs[1].Tasks) != 2 || list.Jobs[1].Tasks[0].Status != "timed_out" {
		t.Errorf("jobs --json: %+v", list)
	}
	// The JSON field names are the documented ones.
	raw := must(t, url, 0, []string{"jobs", "--limit", "1", "--json"})
	for _, field := range []string{`"jobs"`, `"next_before"`, `"id"`, `"submitter"`, `"bucket"`, `"status"`, `"priority"`, `"packages"`,
		`"tasks"`, `"platform"`, `"submitted_at"`, `"started_at"`, `"finished_at"`, `"age_seconds"`, `"duration_seconds"`, `"note"`, `"reason"`, `"resubmit_of"`} {
		if !strings.Contains(raw, field) {
			t.Errorf("jobs --json lacks %s:\n%s", field, raw)
		}
	}

	must(t, url, ExitUsage, []string{"jobs", "--status", "done"}, "not a job status")
	must(t, url, ExitUsage, []string{"jobs", "--since", "yesterday"}, "--since yesterday")
	must(t, url, ExitUsage, []string{"jobs", "--limit", "0"}, "--limit")
	must(t, url, ExitUsage, []string{"jobs", "42"}, "kiln show 42")
}

func TestShow(t *testing.T) {
	t.Parallel()
	f, url := seed(t)
	J, T := f.Jobs, f.Tasks

	id := J["succeeded"]
	el9 := T["succeeded/el9-x86_64"]
	out := must(t, url, 0, []string{"show", fmt.Sprint(id)},
		fmt.Sprintf("job %d  succeeded  submitted by %s to bucket devel", id, f.Alice),
		fmt.Sprintf("http://localhost:8080/jobs/%d", id),
		"hello-1.0-1.src.rpm", "lib-3-1.src.rpm",
		fmt.Sprintf("t%d", el9), "TASK  ATTEMPT  BUILDER", "went silent", "hello-1.0-1.x86_64.rpm", "hello_1.0-1_amd64.deb", "build.log")
	if !regexp.MustCompile(fmt.Sprintf(`t%d\s+el9-x86_64\s+succeeded\s+-\s+b1\s+2\s`, el9)).MatchString(out) {
		t.Errorf("task row of t%d:\n%s", el9, out)
	}
	if !regexp.MustCompile(fmt.Sprintf(`t%d\s+1\s+b2\s+lost`, el9)).MatchString(out) {
		t.Errorf("attempt history of t%d:\n%s", el9, out)
	}
	if strings.Contains(out, "log of") {
		t.Errorf("log tail shown for a job without failures:\n%s", out)
	}

	failed := T["failed/el9-x86_64"]
	out = must(t, url, 0, []string{"show", "--lines", "2", fmt.Sprint(J["failed"])},
		fmt.Sprintf("log of t%d (el9-x86_64, failed, attempt 1), last 2 lines", failed),
		"  make: *** [all] Error 1\n  error: Bad exit status", "rpmbuild exited with status 1", "ExclusiveArch: x86_64 aarch64")
	if !regexp.MustCompile(`bookworm-amd64\s+skipped\s+-\s+-\s+0\s+-\s+-\s+ExclusiveArch`).MatchString(out) {
		t.Errorf("a skipped task shows a wait or duration:\n%s", out)
	}
	if strings.Contains(out, "checking for gcc") {
		t.Errorf("--lines 2 shows more:\n%s", out)
	}
	must(t, url, 0, []string{"show", fmt.Sprint(J["partially_failed"])}, "build ran longer than 2h0m0s", "running tests...")
	// A job still building says where its pending task stands and when its
	// building one should end (kiln.task_eta).
	out = must(t, url, 0, []string{"show", fmt.Sprint(J["building"])}, "PLACE  WHEN", "(from its last builds)")
	if !regexp.MustCompile(fmt.Sprintf(`t%d\s+bookworm-amd64\s+pending\s+1\s+next in line; starts now, done in about `, T["building/bookworm-amd64"])).MatchString(out) {
		t.Errorf("estimate of t%d:\n%s", T["building/bookworm-amd64"], out)
	}
	must(t, url, 0, []string{"show", fmt.Sprint(J["submitted"])}, "waits for validation")
	must(t, url, 0, []string{"show", fmt.Sprint(J["invalid"])}, "reason: broken-1-1.src.rpm: not an RPM file")
	must(t, url, 0, []string{"show", fmt.Sprint(J["cancelled"])}, "cancelled by "+f.Alice)

	var j report.Job
	mustJSON(t, url, &j, "show", fmt.Sprint(id))
	if j.ID != id || len(j.Tasks) != 2 || len(j.Tasks[1].Attempts) != 2 || len(j.Tasks[1].Artifacts) != 2 || j.Packages[1].FileName != "lib-3-1.src.rpm" {
		t.Errorf("show --json: %+v", j)
	}

	must(t, url, ExitNotFound, []string{"show", "999999"}, "job 999999 does not exist", "kiln jobs")
	must(t, url, ExitUsage, []string{"show", "t5"}, "is a task")
	must(t, url, ExitUsage, []string{"show", "x"}, "not a job id")
	must(t, url, ExitUsage, []string{"show"}, "expected one job id")
}

func TestBuildersPlatformsQueue(t *testing.T) {
	t.Parallel()
	f, url := seed(t)

	out := must(t, url, 0, []string{"builders"}, "b1.example.org", "offline")
	if !regexp.MustCompile(fmt.Sprintf(`b1\s+b1.example.org\s+online\s+1/2\s+\S+ ago\s+t%d\s+bookworm-amd64,el9-x86_64`, f.Tasks["building/el9-x86_64"])).MatchString(out) {
		t.Errorf("builders:\n%s", out)
	}
	var bs []report.Builder
	mustJSON(t, url, &bs, "builders")
	if len(bs) != 2 || bs[1].Name != "b2" || bs[1].State != "offline" {
		t.Errorf("builders --json: %+v", bs)
	}

	out = must(t, url, 0, []string{"platforms"})
	if !regexp.MustCompile(`el8-aarch64\s+aarch64\s+rpm\s+rpmbuild\s+2h00m\s+no\s+1\s+0\s+\S+\s+0`).MatchString(out) ||
		!regexp.MustCompile(`el9-x86_64\s+x86_64\s+rpm\s+rpmbuild\s+2h00m\s+yes\s+1\s+1\s+\S+\s+1`).MatchString(out) {
		t.Errorf("platforms:\n%s", out)
	}
	var ps []report.Platform
	mustJSON(t, url, &ps, "platforms")
	if len(ps) != 3 || ps[0].Name != "bookworm-amd64" || ps[0].PackageFormat != "deb" {
		t.Errorf("platforms --json: %+v", ps)
	}

	out = must(t, url, 0, []string{"queue"}, "1 job waits for validation",
		"platform el8-aarch64 is inactive", "no builder builds el8-aarch64",
		fmt.Sprintf("t%d", f.Tasks["queued/el8-aarch64"]), fmt.Sprintf("t%d", f.Tasks["building/bookworm-amd64"]))
	if !regexp.MustCompile(`el9-x86_64\s+1\s+1\s+\S+\s+1/2\s+1/2\s+1 of 2 slots free`).MatchString(out) {
		t.Errorf("queue, el9 row:\n%s", out)
	}
	if !strings.Contains(out, "no builder builds el8-aarch64 (start a kiln-builder for it); next in line") {
		t.Errorf("queue: el8's task does not join why it waits to its place:\n%s", out)
	}
	out = must(t, url, 0, []string{"queue", "--mine"}, fmt.Sprintf("t%d", f.Tasks["building/bookworm-amd64"]))
	if strings.Contains(out, fmt.Sprintf("t%d ", f.Tasks["queued/el8-aarch64"])) {
		t.Errorf("queue --mine shows bob's task:\n%s", out)
	}
	var q report.Queue
	mustJSON(t, url, &q, "queue", "--user", f.Bob)
	if len(q.Tasks) != 2 || q.Tasks[0].Platform != "el8-aarch64" || !slices.Equal(q.Tasks[0].Blocked, []string{"platform_inactive", "no_builder"}) {
		t.Errorf("queue --user bob --json: %+v", q.Tasks)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	f, url := seed(t)
	J, T := f.Jobs, f.Tasks

	// Bob's job is answered as one that does not exist (docs/security.md).
	must(t, url, ExitNotFound, []string{"cancel", fmt.Sprint(J["queued"])}, fmt.Sprintf("job %d does not exist or is not yours", J["queued"]))
	must(t, url, ExitState, []string{"cancel", fmt.Sprint(J["succeeded"])}, "has already finished")
	must(t, url, ExitNotFound, []string{"cancel", "999999"}, "does not exist")
	must(t, url, ExitUsage, []string{"cancel"}, "name a job")

	// One task of the building job, then the whole job.
	task := T["building/bookworm-amd64"]
	must(t, url, 0, []string{"cancel", fmt.Sprintf("t%d", task)}, fmt.Sprintf("task t%d of job %d cancelled", task, J["building"]))
	must(t, url, ExitState, []string{"cancel", "--task", fmt.Sprint(task)}, "has already finished")
	var res []cancelled
	mustJSON(t, url, &res, "cancel", fmt.Sprint(J["building"]))
	if len(res) != 1 || res[0].JobID != J["building"] || res[0].Status != "cancelled" {
		t.Errorf("cancel --json: %+v", res)
	}
	must(t, url, 0, []string{"show", fmt.Sprint(J["building"])}, "cancelled by "+f.Alice)

	// An admin may cancel anybody's job.
	must(t, f.DB.URLAs(f.Admin), 0, []string{"cancel", fmt.Sprint(J["queued"])}, "cancelled")
}

func TestResubmit(t *testing.T) {
	t.Parallel()
	f, url := seed(t)
	ctx := context.Background()
	old := f.Jobs["failed"] // bob's

	var r resubmitted
	mustJSON(t, url, &r, "resubmit", "--platform", "el9-x86_64", fmt.Sprint(old))
	if r.ResubmitOf != old || r.JobID <= old || r.WebURL != fmt.Sprintf("http://localhost:8080/jobs/%d", r.JobID) {
		t.Fatalf("resubmit: %+v", r)
	}
	var submitter, bucket, status string
	var platforms []string
	var resubmitOf int64
	var samePackages bool
	err := f.DB.Pool.QueryRow(ctx, `SELECT submitter, bucket, platforms, status, resubmit_of,
		(SELECT array_agg((seq, file_name, format, blob_sha256, size) ORDER BY seq) FROM kiln.package WHERE job_id = j.id)
		= (SELECT array_agg((seq, file_name, format, blob_sha256, size) ORDER BY seq) FROM kiln.package WHERE job_id = $2)
		FROM kiln.job j WHERE id = $1`, r.JobID, old).Scan(&submitter, &bucket, &platforms, &status, &resubmitOf, &samePackages)
	if err != nil {
		t.Fatal(err)
	}
	if submitter != f.Alice || bucket != "devel" || !slices.Equal(platforms, []string{"el9-x86_64"}) || status != "submitted" || resubmitOf != old || !samePackages {
		t.Errorf("new job: %s %s %v %s %d same packages %v", submitter, bucket, platforms, status, resubmitOf, samePackages)
	}
	var kind, queue string
	var args map[string]any
	if err := f.DB.Pool.QueryRow(ctx, `SELECT kind, queue, args FROM river.river_job WHERE kind = 'validate' AND (args->>'job_id')::bigint = $1`, r.JobID).
		Scan(&kind, &queue, &args); err != nil {
		t.Fatalf("no validate River job for job %d: %v", r.JobID, err)
	}
	if queue != "incoming" {
		t.Errorf("validate River job in queue %s", queue)
	}

	out := must(t, url, 0, []string{"resubmit", fmt.Sprint(f.Jobs["succeeded"])}, "submitted (resubmit of job")
	var again int64
	fmt.Sscanf(out, "job %d", &again)
	var plat []string
	if err := f.DB.Pool.QueryRow(ctx, "SELECT platforms FROM kiln.job WHERE id = $1", again).Scan(&plat); err != nil || !slices.Equal(plat, []string{"el9-x86_64", "bookworm-amd64"}) {
		t.Errorf("resubmit without --platform: platforms %v (%v)", plat, err)
	}
	must(t, url, ExitNotFound, []string{"resubmit", "999999"}, "job 999999 does not exist")
}

func TestDownload(t *testing.T) {
	t.Parallel()
	f, url := seed(t)
	ctx := context.Background()
	id := fmt.Sprint(f.Jobs["succeeded"])

	dir := filepath.Join(t.TempDir(), "out")
	out := must(t, url, 0, []string{"download", "-o", dir, id}, "wrote "+filepath.Join(dir, "el9-x86_64", "hello-1.0-1.x86_64.rpm"))
	for name, want := range map[string]string{
		"el9-x86_64/hello-1.0-1.x86_64.rpm":    "binary rpm of hello",
		"el9-x86_64/build.log":                 "+ rpmbuild --rebuild hello-1.0-1.src.rpm\nWrote: hello-1.0-1.x86_64.rpm\n",
		"bookworm-amd64/hello_1.0-1_amd64.deb": "binary deb of hello",
	} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v\n%s", name, got, err, out)
		}
	}
	// Again: everything is there already.
	must(t, url, 0, []string{"download", "-o", dir, id}, "have  "+filepath.Join(dir, "bookworm-amd64", "hello_1.0-1_amd64.deb"))
	// One platform only, as JSON.
	var got []downloaded
	mustJSON(t, url, &got, "download", "-o", t.TempDir(), "--platform", "bookworm-amd64", id)
	if len(got) != 1 || got[0].File != "bookworm-amd64/hello_1.0-1_amd64.deb" || got[0].Skipped || len(got[0].SHA256) != 64 {
		t.Errorf("download --json: %+v", got)
	}
	must(t, url, ExitNotFound, []string{"download", "-o", t.TempDir(), fmt.Sprint(f.Jobs["queued"])}, "has no artifacts")
	must(t, url, ExitNotFound, []string{"download", "-o", t.TempDir(), "999999"}, "does not exist")

	// A file in the way (with other content) is never overwritten.
	inTheWay := t.TempDir()
	os.Mkdir(filepath.Join(inTheWay, "bookworm-amd64"), 0o755)
	os.WriteFile(filepath.Join(inTheWay, "bookworm-amd64", "hello_1.0-1_amd64.deb"), []byte("mine"), 0o644)
	must(t, url, ExitIntegrity, []string{"download", "-o", inTheWay, id}, "is in the way")
	if b, _ := os.ReadFile(filepath.Join(inTheWay, "bookworm-amd64", "hello_1.0-1_amd64.deb")); string(b) != "mine" {
		t.Errorf("existing file overwritten: %q", b)
	}

	// A symlink planted where a file goes is not followed, even to a file
	// with the right content.
	outside := t.TempDir()
	target := filepath.Join(outside, "target")
	os.WriteFile(target, []byte("binary deb of hello"), 0o644)
	planted := t.TempDir()
	os.Mkdir(filepath.Join(planted, "bookworm-amd64"), 0o755)
	os.Symlink(target, filepath.Join(planted, "bookworm-amd64", "hello_1.0-1_amd64.deb"))
	must(t, url, ExitIntegrity, []string{"download", "-o", planted, "--platform", "bookworm-amd64", id}, "is in the way")

	// A platform directory that is a symlink out of DIR is not followed.
	escape := t.TempDir()
	os.Symlink(outside, filepath.Join(escape, "el9-x86_64"))
	must(t, url, ExitIntegrity, []string{"download", "-o", escape, "--platform", "el9-x86_64", id}, "cannot create")
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("download wrote outside DIR: %v", entries)
	}

	// Bytes that do not match their checksum: the file is removed again.
	if _, err := f.DB.Pool.Exec(ctx, `UPDATE kiln.blob_chunk SET data = 'binary rpm of hellO'
		WHERE sha256 = sha256('binary rpm of hello'::bytea)`); err != nil {
		t.Fatal(err)
	}
	tampered := t.TempDir()
	must(t, url, ExitIntegrity, []string{"download", "-o", tampered, "--platform", "el9-x86_64", id}, "do not match their SHA-256", "was removed")
	if _, err := os.Stat(filepath.Join(tampered, "el9-x86_64", "hello-1.0-1.x86_64.rpm")); !os.IsNotExist(err) {
		t.Errorf("tampered artifact left on disk: %v", err)
	}
}

func TestSafeTarget(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ platform, file string }{
		{"el9-x86_64", "../etc/passwd"}, {"el9-x86_64", "a/b.rpm"}, {"el9-x86_64", ".."}, {"el9-x86_64", "."},
		{"el9-x86_64", "-rf"}, {"el9-x86_64", "a\nb"}, {"el9-x86_64", ""}, {"el9-x86_64", `a\b`},
		{"..", "x.rpm"}, {"a/b", "x.rpm"}, {"", "x.rpm"}, {"EL9", "x.rpm"},
	} {
		err := safeTarget(c.platform, c.file)
		if err == nil || classify(err) != ExitIntegrity {
			t.Errorf("safeTarget(%q, %q) = %v, want an integrity error", c.platform, c.file, err)
		}
	}
	if err := safeTarget("el9-x86_64", "hello-1.0-1.x86_64.rpm"); err != nil {
		t.Errorf("a good name refused: %v", err)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	f, url := seed(t)

	// The janitor never ran; b2 is offline; the oldest task waited seconds.
	out := must(t, url, 2, []string{"check"}, "KILN CRITICAL - oldest queued task waited", "1 of 2 builders offline", "janitor never ran",
		"| oldest_queued=", ";3600;21600;0", "pending=3;;;0", "validating=1;;;0", "builders_offline=1;1;3;0;2")
	if strings.Count(out, "\n") != 1 {
		t.Errorf("check printed more than one line:\n%s", out)
	}
	if _, err := f.DB.Pool.Exec(context.Background(), "INSERT INTO kiln.event (kind) VALUES ('janitor.round')"); err != nil {
		t.Fatal(err)
	}
	must(t, url, 1, []string{"check"}, "KILN WARNING", "janitor ran", "janitor_age=")
	must(t, url, 0, []string{"check", "--warn-offline", "0"}, "KILN OK")
	must(t, url, 2, []string{"check", "--crit-offline", "1"}, "KILN CRITICAL")
	// Every task waited at least 0s: a 1ns limit makes the queue critical.
	must(t, url, 2, []string{"check", "--warn-offline", "0", "--crit-queue", "1ns"}, "KILN CRITICAL - oldest queued task")
	var res checkResult
	mustJSON(t, url, &res, "check", "--warn-offline", "0")
	if res.State != "OK" || res.Health == nil || res.Pending != 3 || res.BuildersOffline != 1 || !strings.HasPrefix(res.Summary, "KILN OK - ") {
		t.Errorf("check --json: %+v", res)
	}
	// Every builder disabled while tasks of el9 and bookworm wait: critical at
	// once, whatever the thresholds.
	if _, err := f.DB.Pool.Exec(context.Background(), "UPDATE kiln.builder SET enabled = false"); err != nil {
		t.Fatal(err)
	}
	must(t, url, 2, []string{"check", "--warn-offline", "0"}, "KILN CRITICAL", "no usable builder (online, enabled, not draining) for bookworm-amd64, el9-x86_64", "stuck_platforms=2;;1;0")
	must(t, "postgres://nobody@127.0.0.1:1/none", 3, []string{"check"}, "KILN UNKNOWN - cannot reach PostgreSQL")
}

// A bad kiln check command line is UNKNOWN (3) with one status line, not
// kiln's usual usage error 2, which a monitoring system reads as CRITICAL.
func TestCheckUsageIsUnknown(t *testing.T) {
	t.Parallel()
	_, url := seed(t)
	bad := filepath.Join(t.TempDir(), "kiln.conf")
	if err := os.WriteFile(bad, []byte("colour = never\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "--badflag"},
		{"check", "--warn-queue", "soon"},
		{"check", "--crit-offline"},
		{"check", "everything"},
		{"--config", bad, "check"},
	} {
		out, code := kiln(t, url, args...)
		if code != checkUnknown || !strings.HasPrefix(out, "KILN UNKNOWN - usage: ") || strings.Count(out, "\n") != 1 {
			t.Errorf("kiln %s: exit %d, want %d (UNKNOWN) and one status line:\n%s", strings.Join(args, " "), code, checkUnknown, out)
		}
	}
	// Elsewhere a usage error stays 2.
	must(t, url, ExitUsage, []string{"jobs", "--badflag"}, "flag provided but not defined")
	must(t, url, ExitUsage, []string{"--config", bad, "jobs"}, "configuration:")
}

func TestErrorsAndColour(t *testing.T) {
	t.Parallel()
	f, url := seed(t)
	must(t, "postgres://nobody@127.0.0.1:1/none", ExitConnect, []string{"jobs"}, "cannot reach PostgreSQL", "set PGHOST/PGPORT or --db")
	must(t, f.DB.URLAs("nobody_at_all"), ExitConnect, []string{"jobs"}, "nobody_at_all")
	must(t, url, ExitUsage, []string{"jobs", "--frobnicate"}, "flag provided but not defined")

	out := must(t, url, 0, []string{"--color", "always", "jobs"})
	if !strings.Contains(out, "\x1b[32msucceeded\x1b[0m") || !strings.Contains(out, "el9-x86_64:\x1b[31mFAIL\x1b[0m") {
		t.Errorf("--color always:\n%q", out)
	}
	out = must(t, url, 0, []string{"--color", "never", "show", fmt.Sprint(f.Jobs["failed"])})
	if strings.Contains(out, "\x1b[") {
		t.Errorf("--color never:\n%q", out)
	}
	must(t, url, ExitUsage, []string{"--color", "sometimes", "jobs"}, "use auto, always or never")
	must(t, url, 0, []string{"completion", "bash"}, "complete -o bashdefault", "--generate-bash-completion")
	must(t, url, 0, []string{"man"}, ".TH kiln 1", ".SH watch", ".SH COMMANDS", ".SH EXIT STATUS")
}
