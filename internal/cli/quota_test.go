package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// TestAdminQuota: kiln admin quota show, set and reset, as an admin's own
// role (not a superuser); a person may not use them.
func TestAdminQuota(t *testing.T) {
	t.Parallel()
	db, alice := submitterDB(t)
	ctx := context.Background()
	adm := "adm_" + db.Name
	if _, err := db.Pool.Exec(ctx, "CREATE ROLE "+adm+" LOGIN IN ROLE kiln_admin"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Pool.Exec(context.Background(), "DROP ROLE "+adm) })
	asAdmin := db.URLAs(adm)

	mustRun := func(want string, args ...string) string {
		t.Helper()
		out, err := run(t, asAdmin, args...)
		if err != nil {
			t.Fatalf("kiln %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !strings.Contains(out, want) {
			t.Fatalf("kiln %s: output lacks %q:\n%s", strings.Join(args, " "), want, out)
		}
		return out
	}
	mustFail := func(code int, want, url string, args ...string) {
		t.Helper()
		out, err := run(t, url, args...)
		if err == nil || ExitCode(err) != code || !strings.Contains(err.Error(), want) {
			t.Fatalf("kiln %s: got %v (exit %d, %s), want exit %d and %q", strings.Join(args, " "), err, ExitCode(err), out, code, want)
		}
	}

	// cells is the line of the table in out that starts with title, in
	// cells separated by two spaces or more.
	cells := func(out, title string) string {
		t.Helper()
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, title+"  ") {
				return strings.Join(regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1), " | ")
			}
		}
		t.Fatalf("no line %q in:\n%s", title, out)
		return ""
	}
	expect := func(out, title, want string) {
		t.Helper()
		if got := cells(out, title); got != want {
			t.Fatalf("%s: got %q, want %q in:\n%s", title, got, want, out)
		}
	}

	out := mustRun("default quotas (last set by ", "admin", "quota", "show")
	expect(out, "jobs per hour", "jobs per hour | 500 | default | - | each hour")
	expect(out, "bytes per day", "bytes per day | 21474836480 (20 GiB) | default | - | each day, 00:00 UTC")
	expect(out, "options size", "options size | 65536 (64 KiB) | default | - | (each job)")
	expect(out, "platforms in a list", "platforms in a list | 1000 | default | - | (each job)")
	expect(out, "validate River jobs per job", "validate River jobs per job | 5 | default | - | (each job)")
	expect(out, "River job size", "River job size | 8192 (8 KiB) | default | - | (each River job)")
	if !strings.Contains(out, "nobody has quotas of their own") {
		t.Fatalf("no overrides yet:\n%s", out)
	}

	out = mustRun("quotas of "+alice+" (last set by "+adm, "admin", "quota", "set", "--jobs-per-hour", "3", "--bytes-per-day", "1GiB", alice)
	hour := time.Now().UTC().Truncate(time.Hour).Add(time.Hour).Format("2006-01-02 15:04 UTC")
	if got := cells(out, "jobs per hour"); got != "jobs per hour | 3 | own | 0 | "+hour && !strings.HasPrefix(got, "jobs per hour | 3 | own | 0 | ") {
		t.Fatalf("after set: %q", got)
	}
	if got := cells(out, "bytes per day"); !strings.HasPrefix(got, "bytes per day | 1073741824 (1 GiB) | own | 0 (0 B) | ") {
		t.Fatalf("after set: %q", got)
	}
	expect(out, "options size", "options size | 65536 (64 KiB) | default | - | (each job)")
	out = mustRun("quotas of their own", "admin", "quota", "show")
	if got := cells(out, alice); got != alice+" | 3 | 1073741824 (1 GiB) | - | - | - | -" {
		t.Fatalf("overrides: %q", got)
	}

	out = mustRun("{", "admin", "quota", "show", "--json", alice)
	var pq struct {
		Person string `json:"person"`
		Limits []struct {
			Quota    string     `json:"quota"`
			Limit    int64      `json:"limit"`
			Own      bool       `json:"own"`
			Used     *int64     `json:"used"`
			ResetsAt *time.Time `json:"resets_at"`
		} `json:"limits"`
	}
	if err := json.Unmarshal([]byte(out), &pq); err != nil {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	if pq.Person != alice || len(pq.Limits) != 6 || pq.Limits[0].Quota != "jobs_per_hour" || pq.Limits[0].Limit != 3 || !pq.Limits[0].Own ||
		pq.Limits[0].Used == nil || *pq.Limits[0].Used != 0 || pq.Limits[0].ResetsAt == nil || pq.Limits[2].Own || pq.Limits[2].Used != nil {
		t.Fatalf("show --json: %+v", pq)
	}

	// Back to the default, one quota at a time or all at once.
	out = mustRun("quotas of "+alice, "admin", "quota", "set", "--jobs-per-hour", "default", alice)
	if got := cells(out, "jobs per hour"); !strings.HasPrefix(got, "jobs per hour | 500 | default | 0 | ") {
		t.Fatalf("back to the default: %q", got)
	}
	mustRun(alice+" has the default quotas again", "admin", "quota", "reset", alice)
	mustFail(ExitError, "has no quotas of their own", asAdmin, "admin", "quota", "reset", alice)
	mustRun("nobody has quotas of their own", "admin", "quota", "show")

	// The defaults change for everyone and come back with reset.
	expect(mustRun("default quotas", "admin", "quota", "set", "--platforms-per-job", "20"), "platforms in a list", "platforms in a list | 20 | default | - | (each job)")
	expect(mustRun("quotas of "+alice, "admin", "quota", "show", alice), "platforms in a list", "platforms in a list | 20 | default | - | (each job)")
	mustRun("built-in ones again", "admin", "quota", "reset")
	expect(mustRun("default quotas", "admin", "quota", "show"), "platforms in a list", "platforms in a list | 1000 | default | - | (each job)")

	// Mistakes.
	mustFail(ExitUsage, "give a whole number", asAdmin, "admin", "quota", "set", "--bytes-per-day", "lots", alice)
	mustFail(ExitUsage, "give a whole number", asAdmin, "admin", "quota", "set", "--jobs-per-hour", "-1", alice)
	mustFail(ExitUsage, "give at least one quota", asAdmin, "admin", "quota", "set", alice)
	mustFail(ExitError, "the defaults need a limit", asAdmin, "admin", "quota", "set", "--jobs-per-hour", "default")
	mustFail(ExitError, "does not exist", asAdmin, "admin", "quota", "set", "--jobs-per-hour", "5", "nobody_"+db.Name)
	mustFail(ExitError, "does not exist", asAdmin, "admin", "quota", "show", "nobody_"+db.Name)
	// A person may read their quotas but not change them.
	mustFail(ExitPermission, "needs kiln_admin", db.URLAs(alice), "admin", "quota", "set", "--jobs-per-hour", "1000", alice)
	mustFail(ExitPermission, "needs kiln_admin", db.URLAs(alice), "admin", "quota", "reset")
	out, err := run(t, db.URLAs(alice), "admin", "quota", "show", alice)
	if err != nil {
		t.Fatalf("alice reading her quotas: %v\n%s", err, out)
	}
	if got := cells(out, "jobs per hour"); !strings.HasPrefix(got, "jobs per hour | 500 | default | 0 | ") {
		t.Fatalf("alice reading her quotas: %q", got)
	}
}

// TestSubmitRefusedByQuota: kiln submit past a quota prints which quota and
// when it resets, exits 6, and leaves nothing behind.
func TestSubmitRefusedByQuota(t *testing.T) {
	t.Parallel()
	// The hour's window must not turn between the submit that fills it
	// and the one it refuses.
	if now := time.Now(); now.Truncate(time.Hour).Add(time.Hour).Sub(now) < 15*time.Second {
		time.Sleep(now.Truncate(time.Hour).Add(time.Hour).Sub(now) + time.Second)
	}
	db, alice := submitterDB(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, "INSERT INTO kiln.quota (person, jobs_per_hour, bytes_per_day) VALUES ($1, 1, 64 << 10)", alice); err != nil {
		t.Fatal(err)
	}
	// kiln submit parses an SRPM before uploading it: real ones.
	small := testpkg.SRPM(t, testpkg.Spec{Name: "small"})
	if out, err := run(t, db.URLAs(alice), "submit", "--bucket", "devel", "--platform", "el9-x86_64", small); err != nil {
		t.Fatalf("the first submit: %v\n%s", err, out)
	}
	counts := func() (jobs, blobs int) {
		t.Helper()
		if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM kiln.job), (SELECT count(*) FROM kiln.blob)`).Scan(&jobs, &blobs); err != nil {
			t.Fatal(err)
		}
		return
	}
	jobs, blobs := counts()

	// Past the bytes of the day: a package larger than 64 KiB.
	big := testpkg.SRPM(t, testpkg.Spec{Name: "big", Source: bytes.Repeat([]byte("big package "), 30000)})
	_, err := run(t, db.URLAs(alice), "submit", "--bucket", "devel", "--platform", "el9-x86_64", big)
	day := time.Now().UTC().Truncate(24 * time.Hour)
	want := fmt.Sprintf(`submit refused: quota "bytes per day" exceeded for %s: storing a blob of `, alice)
	if err == nil || !strings.HasPrefix(err.Error(), want) || ExitCode(err) != ExitState ||
		!strings.Contains(err.Error(), "resets at "+day.Add(24*time.Hour).Format("2006-01-02")+" 00:00 UTC (") ||
		!strings.Contains(err.Error(), "kiln admin quota set --bytes-per-day N "+alice) {
		t.Fatalf("submit past the bytes of the day: %v (exit %d), want %q... and exit %d", err, ExitCode(err), want, ExitState)
	}
	if j, b := counts(); j != jobs || b != blobs {
		t.Fatalf("the refused submit left %d jobs and %d blobs behind", j-jobs, b-blobs)
	}

	// Past the jobs of the hour: the same small package again.
	_, err = run(t, db.URLAs(alice), "submit", "--bucket", "devel", "--platform", "el9-x86_64", small)
	t.Logf("kiln: %v", err)
	want = fmt.Sprintf(`submit refused: quota "jobs per hour" exceeded for %s: 1 jobs since `, alice)
	if err == nil || !strings.HasPrefix(err.Error(), want) || ExitCode(err) != ExitState || !strings.Contains(err.Error(), "(limit 1); resets at ") {
		t.Fatalf("submit past the jobs of the hour: %v (exit %d)", err, ExitCode(err))
	}
	// kiln resubmit is refused the same way.
	var first int64
	if err := db.Pool.QueryRow(ctx, `SELECT min(id) FROM kiln.job`).Scan(&first); err != nil {
		t.Fatal(err)
	}
	_, err = run(t, db.URLAs(alice), "resubmit", fmt.Sprint(first))
	want = fmt.Sprintf(`resubmitting job %d refused: quota "jobs per hour" exceeded for %s: 1 jobs since `, first, alice)
	if err == nil || !strings.HasPrefix(err.Error(), want) || ExitCode(err) != ExitState {
		t.Fatalf("resubmit past the jobs of the hour: %v (exit %d)", err, ExitCode(err))
	}
	if j, b := counts(); j != jobs || b != blobs {
		t.Fatalf("the refused submits left %d jobs and %d blobs behind", j-jobs, b-blobs)
	}
}
