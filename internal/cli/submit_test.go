package cli

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// submitterDB is a test database with a platform, an open bucket, and a
// login role (a member of kiln_submitter) to submit as.
func submitterDB(t *testing.T) (*pgtest.DB, string) {
	t.Helper()
	db := pgtest.New(t)
	alice := "alice_" + db.Name
	if _, err := db.Pool.Exec(context.Background(), fmt.Sprintf(`CREATE ROLE %s LOGIN IN ROLE kiln_submitter;
		INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ('el9-x86_64', 'x86_64', 'rpm', 'rpmbuild');
		INSERT INTO kiln.bucket (name, open) VALUES ('devel', true)`, alice)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Pool.Exec(context.Background(), "DROP ROLE "+alice) })
	return db, alice
}

// finishJob waits for the job with key to appear, then takes it through a
// task to status (builders are not part of these tests).
func finishJob(t *testing.T, db *pgtest.DB, key, status string) {
	ctx := context.Background()
	var id int64
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		err := db.Pool.QueryRow(ctx, `SELECT id FROM kiln.job WHERE submission_key = $1`, key).Scan(&id)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("job with key %s never appeared", key)
			return
		}
	}
	var task int64
	if err := db.Pool.QueryRow(ctx, `INSERT INTO kiln.task (job_id, platform) VALUES ($1, 'el9-x86_64') RETURNING id`, id).Scan(&task); err != nil {
		t.Error(err)
		return
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE kiln.task SET status = $2, reason = 'by the test', finished_at = now() WHERE id = $1`, task, status); err != nil {
		t.Error(err)
	}
}

func TestSubmitCommandWait(t *testing.T) {
	t.Parallel()
	db, alice := submitterDB(t)
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "hello"})

	go finishJob(t, db, "ok-1", "succeeded")
	out, err := run(t, db.URLAs(alice), "--web-url", "https://kiln.example.org/", "submit", "--bucket", "devel",
		"--platform", "el9-x86_64", "--key", "ok-1", "--wait", srpm)
	if err != nil {
		t.Fatalf("kiln submit --wait: %v\n%s", err, out)
	}
	want := regexp.MustCompile(`^job (\d+) submitted \(key ok-1\)\nhttps://kiln.example.org/jobs/(\d+)\n(job \d+ submitted\n)?(job \d+ queued\n)?job \d+ succeeded\n$`)
	if m := want.FindStringSubmatch(out); m == nil || m[1] != m[2] {
		t.Fatalf("output:\n%s", out)
	}

	// Submitting again with the key finds the job; it has finished.
	out, err = run(t, db.URLAs(alice), "submit", "--bucket", "devel", "--key", "ok-1", srpm)
	if err != nil || !strings.HasPrefix(out, "job 1 was already submitted with key ok-1\n") {
		t.Fatalf("resubmit: %v\n%s", err, out)
	}

	go finishJob(t, db, "bad-1", "failed")
	out, err = run(t, db.URLAs(alice), "submit", "--bucket", "devel", "--key", "bad-1", "--wait", srpm)
	var exit cli.ExitCoder
	if !errors.As(err, &exit) || exit.ExitCode() != ExitFailure || err.Error() != "job 2 failed" {
		t.Fatalf("kiln submit --wait of a failing job: %v\n%s", err, out)
	}
	// It says which task failed and why, and how to see more.
	if !regexp.MustCompile(`(?m)^t\d+ el9-x86_64 failed: by the test$`).MatchString(out) || !strings.Contains(out, "kiln show 2 shows the job\n") {
		t.Fatalf("kiln submit --wait of a failing job does not say what failed:\n%s", out)
	}

	_, err = run(t, db.URLAs(alice), "submit", "--bucket", "devel", "--platform", "el9,!ALL", srpm)
	if !errors.As(err, &exit) || exit.ExitCode() != ExitUsage || err.Error() != "submit: !all would remove every platform" {
		t.Fatalf("bad platform: %v", err)
	}
}

// TestSubmitHelperProcess is the kiln command run as a child process by
// TestSubmitKilledHalfway.
func TestSubmitHelperProcess(t *testing.T) {
	if os.Getenv("KILN_SUBMIT_HELPER") != "1" {
		t.Skip("runs only as a child of TestSubmitKilledHalfway")
	}
	args := strings.Split(os.Getenv("KILN_SUBMIT_ARGS"), "\x1f")
	if err := App().RunContext(context.Background(), append([]string{"kiln"}, args...)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func TestSubmitKilledHalfway(t *testing.T) {
	t.Parallel()
	db, alice := submitterDB(t)
	ctx := context.Background()
	data := make([]byte, 64<<20)
	rand.New(rand.NewSource(2)).Read(data)
	big := testpkg.SRPM(t, testpkg.Spec{Name: "big", Source: data})
	small := testpkg.SRPM(t, testpkg.Spec{Name: "hello"})
	cmd := exec.Command(os.Args[0], "-test.run=^TestSubmitHelperProcess$")
	cmd.Env = append(os.Environ(), "KILN_SUBMIT_HELPER=1",
		"KILN_SUBMIT_ARGS="+strings.Join([]string{"--db", db.URLAs(alice), "submit", "--bucket", "devel", small, big}, "\x1f"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Kill it once chunks are being stored (alice is this test's own role,
	// so her sessions are the child's); 64 MiB take many round trips.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		var copying int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE usename = $1 AND query LIKE 'INSERT INTO kiln.blob_chunk%'`, alice).Scan(&copying)
		if err != nil {
			t.Fatal(err)
		}
		if copying > 0 {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the child finished before it could be killed: %v; it said: %s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("never saw the upload under way; child said: %s", stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-exited
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child was not killed: %v (%s)", err, stderr.String())
	}
	// The server notices the dropped connection and rolls back.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		var left int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, alice).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed submit's session did not end")
		}
	}
	var jobs, pkgs, blobs, chunks, river int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM kiln.job), (SELECT count(*) FROM kiln.package),
		(SELECT count(*) FROM kiln.blob), (SELECT count(*) FROM kiln.blob_chunk), (SELECT count(*) FROM river.river_job)`).
		Scan(&jobs, &pkgs, &blobs, &chunks, &river); err != nil {
		t.Fatal(err)
	}
	if jobs+pkgs+blobs+chunks+river != 0 {
		t.Fatalf("a killed submit left jobs=%d packages=%d blobs=%d chunks=%d river=%d", jobs, pkgs, blobs, chunks, river)
	}
}

func TestProgressPrinter(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	show := progressPrinter(&out, func() time.Time { return clock })
	step := func(d time.Duration, p submit.Progress) {
		clock = clock.Add(d)
		show(p)
	}
	step(0, submit.Progress{File: "small.src.rpm", Phase: "hashing", Done: 10, Total: 10}) // too small: never shown
	step(0, submit.Progress{File: "big.src.rpm", Phase: "hashing", Done: 16 << 20, Total: 16 << 20})
	step(0, submit.Progress{File: "big.src.rpm", Phase: "uploading", Done: 1 << 20, Total: 16 << 20}) // a new phase: shown
	step(progressInterval-time.Nanosecond, submit.Progress{File: "big.src.rpm", Phase: "uploading", Done: 2 << 20, Total: 16 << 20})
	step(time.Nanosecond, submit.Progress{File: "big.src.rpm", Phase: "uploading", Done: 3 << 20, Total: 16 << 20})
	step(time.Millisecond, submit.Progress{File: "big.src.rpm", Phase: "uploading", Done: 4 << 20, Total: 16 << 20})
	step(0, submit.Progress{File: "big.src.rpm", Phase: "uploading", Done: 16 << 20, Total: 16 << 20}) // done: always shown
	want := "\rbig.src.rpm: hashing 100% of 16 MiB\x1b[K\n" +
		"\rbig.src.rpm: uploading   6% of 16 MiB\x1b[K" +
		"\rbig.src.rpm: uploading  18% of 16 MiB\x1b[K" +
		"\rbig.src.rpm: uploading 100% of 16 MiB\x1b[K\n"
	if out.String() != want {
		t.Fatalf("progress output %q, want %q", out.String(), want)
	}
}
