package builder

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testpkg"
)

func TestRpmbuildTask(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-hello", Build: "echo HELLO-FROM-PERCENT-BUILD; echo hi > kiln-hello.txt"})
	job, task := f.submit(t, "el9-x86_64", "retry", srpm)
	cfg := testConfig(t, "el9-x86_64")
	cfg.Slots = 2
	r := start(t, pool, cfg)

	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "succeeded" {
		_, _, reason := f.taskStatus(t, task)
		t.Fatalf("task %s: %s\n%s", st, reason, f.logOf(t, task, 1))
	}
	log := f.logOf(t, task, 1)
	for _, want := range []string{"HELLO-FROM-PERCENT-BUILD", "Wrote: ", "kiln-hello-1.0-1"} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %q:\n%s", want, log)
		}
	}
	arts := f.artifacts(t, task, 1)
	var rpm artifact
	for name, a := range arts {
		if a.kind == "package" {
			if rpm.name != "" || !strings.HasPrefix(name, "kiln-hello-1.0-1.") || !strings.HasSuffix(name, ".rpm") {
				t.Fatalf("unexpected package artifact %s", name)
			}
			rpm = a
		}
	}
	if rpm.name == "" {
		t.Fatalf("no RPM among the artifacts %v", arts)
	}
	if sha256.Sum256(rpm.content) != [32]byte(rpm.sum) || int64(len(rpm.content)) != rpm.size {
		t.Fatal("the RPM artifact's checksum or size does not match its content")
	}
	// It is a real binary RPM of the package.
	p := filepath.Join(t.TempDir(), rpm.name)
	os.WriteFile(p, rpm.content, 0o644)
	out, err := exec.Command("rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{SOURCERPM}", p).CombinedOutput()
	if err != nil || string(out) != "kiln-hello 1.0 kiln-hello-1.0-1.src.rpm" {
		t.Fatalf("rpm -qp: %v %q", err, out)
	}
	if a, ok := arts["build.log"]; !ok || a.kind != "log" || !strings.Contains(string(a.content), "HELLO-FROM-PERCENT-BUILD") {
		t.Fatal("no build.log artifact holding the log")
	}
	// The build-info record, in the attempt row and as an artifact.
	var infoJSON []byte
	var logBytes int64
	var attemptStatus string
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT build_info, log_bytes, status FROM kiln.attempt
		WHERE task_id = $1 AND attempt = 1`, task).Scan(&infoJSON, &logBytes, &attemptStatus); err != nil {
		t.Fatal(err)
	}
	var info buildInfo
	if err := json.Unmarshal(infoJSON, &info); err != nil {
		t.Fatal(err)
	}
	if info.Builder != cfg.Name || info.Backend != "rpmbuild" || !strings.Contains(info.Tools["rpmbuild"], "RPM") ||
		info.Status != "succeeded" || len(info.Packages) != 1 || info.Packages[0].Status != "succeeded" ||
		info.FinishedAt.Before(info.StartedAt) || attemptStatus != "succeeded" {
		t.Fatalf("build info %s (attempt %s)", infoJSON, attemptStatus)
	}
	if _, ok := arts["kiln-buildinfo.json"]; !ok {
		t.Fatal("no build-info artifact")
	}
	if logBytes != int64(len(log)) {
		t.Fatalf("attempt.log_bytes %d, log is %d bytes", logBytes, len(log))
	}
	var jobStatus string
	f.db.Pool.QueryRow(context.Background(), "SELECT status FROM kiln.job WHERE id = $1", job).Scan(&jobStatus)
	if jobStatus != "succeeded" {
		t.Fatalf("job status %s", jobStatus)
	}
	// Registered with its host, slots, version and platform; offline after.
	var state, host, version string
	var slots int
	var platforms []string
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT state, host, slots, version,
		(SELECT array_agg(platform) FROM kiln.builder_platform WHERE builder = name) FROM kiln.builder WHERE name = $1`,
		cfg.Name).Scan(&state, &host, &slots, &version, &platforms); err != nil {
		t.Fatal(err)
	}
	if state != "online" || host == "" || slots != 2 || version != "test" || len(platforms) != 1 {
		t.Fatalf("builder row: %s %s %d %s %v", state, host, slots, version, platforms)
	}
	r.stop()
	f.db.Pool.QueryRow(context.Background(), "SELECT state FROM kiln.builder WHERE name = $1", cfg.Name).Scan(&state)
	if state != "offline" {
		t.Fatalf("builder %s after stopping", state)
	}
}
