package builder

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/internal/testsupport/proctest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
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

func TestDpkgTask(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "bookworm-amd64", "amd64", "deb", "dpkg", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "kiln-greet", Version: "2.0", Build: "echo GREETINGS-FROM-RULES"})
	_, task := f.submit(t, "bookworm-amd64", "retry", dsc)
	start(t, pool, testConfig(t, "bookworm-amd64"))

	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "succeeded" {
		_, _, reason := f.taskStatus(t, task)
		t.Fatalf("task %s: %s\n%s", st, reason, f.logOf(t, task, 1))
	}
	log := f.logOf(t, task, 1)
	for _, want := range []string{"GREETINGS-FROM-RULES", "dpkg-buildpackage", "dpkg-deb: building package 'kiln-greet'"} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %q:\n%s", want, log)
		}
	}
	arts := f.artifacts(t, task, 1)
	deb, ok := arts["kiln-greet_2.0_all.deb"]
	if !ok || deb.kind != "package" {
		t.Fatalf("no .deb among the artifacts %v", arts)
	}
	if sha256.Sum256(deb.content) != [32]byte(deb.sum) || int64(len(deb.content)) != deb.size {
		t.Fatal("the .deb artifact's checksum or size does not match its content")
	}
	p := filepath.Join(t.TempDir(), "x.deb")
	os.WriteFile(p, deb.content, 0o644)
	out, err := exec.Command("dpkg-deb", "--field", p, "Package", "Version").CombinedOutput()
	if err != nil || string(out) != "Package: kiln-greet\nVersion: 2.0\n" {
		t.Fatalf("dpkg-deb --field: %v %q", err, out)
	}
}

func TestFailedPackageOthersStillBuilt(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	good1 := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-good-one"})
	bad := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-bad", Build: "echo THIS-PACKAGE-IS-BROKEN; exit 1"})
	good2 := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-good-two"})
	job, task := f.submit(t, "el9-x86_64", "retry", good1, bad, good2)
	start(t, pool, testConfig(t, "el9-x86_64"))

	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "failed" {
		t.Fatalf("task %s, want failed", st)
	}
	_, _, reason := f.taskStatus(t, task)
	if !strings.Contains(reason, "1 of 3 packages failed") || !strings.Contains(reason, "kiln-bad-1.0-1.src.rpm") {
		t.Fatalf("reason %q", reason)
	}
	if log := f.logOf(t, task, 1); !strings.Contains(log, "THIS-PACKAGE-IS-BROKEN") {
		t.Fatalf("the log lacks the failure:\n%s", log)
	}
	arts := f.artifacts(t, task, 1)
	var built []string
	for name, a := range arts {
		if a.kind == "package" {
			built = append(built, name)
		}
	}
	if len(built) != 2 || !hasPrefix(built, "kiln-good-one-") || !hasPrefix(built, "kiln-good-two-") {
		t.Fatalf("packages built: %v", built)
	}
	if _, ok := arts["build.log"]; !ok {
		t.Fatal("the failed task kept no build.log")
	}
	var jobStatus string
	f.db.Pool.QueryRow(context.Background(), "SELECT status FROM kiln.job WHERE id = $1", job).Scan(&jobStatus)
	if jobStatus != "failed" {
		t.Fatalf("job %s", jobStatus)
	}
}

func hasPrefix(names []string, prefix string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// The first package can only build once the second one has: its %build
// looks for the second one's RPM in the local repository.
func TestRetryPolicy(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	needs := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-needs-base",
		Build: `ls "$KILN_REPO"/kiln-base-1.0-1.*.rpm || { echo BASE-NOT-THERE-YET; exit 1; }; echo FOUND-BASE`})
	base := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-base"})
	_, retryTask := f.submit(t, "el9-x86_64", "retry", needs, base)
	_, immediateTask := f.submit(t, "el9-x86_64", "immediate", needs, base)
	start(t, pool, testConfig(t, "el9-x86_64"))

	if st := f.waitStatus(t, retryTask, "succeeded", "failed", "timed_out"); st != "succeeded" {
		_, _, reason := f.taskStatus(t, retryTask)
		t.Fatalf("policy retry: task %s (%s)\n%s", st, reason, f.logOf(t, retryTask, 1))
	}
	log := f.logOf(t, retryTask, 1)
	first, found := strings.Index(log, "BASE-NOT-THERE-YET"), strings.Index(log, "FOUND-BASE")
	if first < 0 || found < first {
		t.Fatalf("expected a failed first try and a later success:\n%s", log)
	}
	info := f.buildInfo(t, retryTask, 1)
	if info.Passes != 2 || info.Packages[0].Tries != 2 || info.Packages[1].Tries != 1 {
		t.Fatalf("passes %d, packages %+v", info.Passes, info.Packages)
	}
	arts := f.artifacts(t, retryTask, 1)
	if _, ok := arts["kiln-needs-base-1.0-1.x86_64.rpm"]; !ok {
		t.Fatalf("artifacts %v", arts)
	}

	if st := f.waitStatus(t, immediateTask, "succeeded", "failed", "timed_out"); st != "failed" {
		t.Fatalf("policy immediate: task %s", st)
	}
	info = f.buildInfo(t, immediateTask, 1)
	if info.Packages[0].Status != "failed" || info.Packages[1].Status != "not_built" {
		t.Fatalf("policy immediate went on after the first failure: %+v", info.Packages)
	}
	_, _, reason := f.taskStatus(t, immediateTask)
	if !strings.Contains(reason, "not built (policy immediate): kiln-base-1.0-1.src.rpm") {
		t.Fatalf("reason %q", reason)
	}
}

func (f *farm) buildInfo(t testing.TB, task int64, attempt int) buildInfo {
	t.Helper()
	var raw []byte
	if err := f.db.Pool.QueryRow(context.Background(), "SELECT build_info FROM kiln.attempt WHERE task_id = $1 AND attempt = $2",
		task, attempt).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var info buildInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	return info
}

func TestTimeoutKillsEverything(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", 15*time.Second, "")
	_, pool := f.builderPool(t, 1)
	marker := proctest.SleepMarker()
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-sleepy",
		Build: "sleep " + marker + " & echo SLEEPING-NOW; sleep " + marker})
	_, task := f.submit(t, "el9-x86_64", "retry", srpm)
	start(t, pool, testConfig(t, "el9-x86_64"))

	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "timed_out" {
		t.Fatalf("task %s, want timed_out", st)
	}
	if log := f.logOf(t, task, 1); !strings.Contains(log, "SLEEPING-NOW") || !strings.Contains(log, "timeout") {
		t.Fatalf("log:\n%s", log)
	}
	var attemptStatus string
	f.db.Pool.QueryRow(context.Background(), "SELECT status FROM kiln.attempt WHERE task_id = $1 AND attempt = 1", task).Scan(&attemptStatus)
	if attemptStatus != "timed_out" {
		t.Fatalf("attempt %s", attemptStatus)
	}
	proctest.NoLeftovers(t, "sleep "+marker)
}

// A build that tries to reach the database over the network and to read
// the builder's keytab gets neither, and runs unprivileged under root.
func TestSandboxedBuild(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	secretDir, err := os.MkdirTemp("/var/tmp", "kiln-builder-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(secretDir) })
	os.Chmod(secretDir, 0o755)
	keytab := filepath.Join(secretDir, "kiln-builder.keytab")
	// World-readable on purpose: only the sandbox keeps the build from it.
	os.WriteFile(keytab, []byte("SECRET-KEY-MATERIAL"), 0o644)
	port := os.Getenv("PGPORT")
	if port == "" {
		t.Fatal("PGPORT is not set")
	}
	script := `if bash -c 'exec 3<>/dev/tcp/127.0.0.1/` + port + `'; then echo NET-REACHED; else echo NET-BLOCKED; fi
if cat ` + keytab + `; then echo KEYTAB-READ; else echo KEYTAB-HIDDEN; fi
echo BUILD-UID=$(id -u)
echo hi > kiln-probe.txt`
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-probe", Build: script})
	_, task := f.submit(t, "el9-x86_64", "retry", srpm)
	cfg := testConfig(t, "el9-x86_64")
	cfg.Hide = []string{keytab}
	start(t, pool, cfg)

	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "succeeded" {
		t.Fatalf("task %s\n%s", st, f.logOf(t, task, 1))
	}
	log := f.logOf(t, task, 1)
	if !strings.Contains(log, "NET-BLOCKED") || strings.Contains(log, "NET-REACHED") {
		t.Fatalf("the build reached the network:\n%s", log)
	}
	if !strings.Contains(log, "KEYTAB-HIDDEN") || strings.Contains(log, "SECRET-KEY-MATERIAL") {
		t.Fatalf("the build read the keytab:\n%s", log)
	}
	// An ordinary uid of its own user namespace (rpmbuild runs
	// Unprivileged; sandbox's tests check the host uid of its files), an
	// unprivileged uid of its own outside when the builder is root.
	if !strings.Contains(log, fmt.Sprintf("BUILD-UID=%d\n", sandbox.BuildUID)) {
		t.Fatalf("the build does not run as uid %d of its own user namespace:\n%s", sandbox.BuildUID, log)
	}
	if info := f.buildInfo(t, task, 1); os.Geteuid() == 0 && !strings.Contains(info.BuildUser, "uid 1000") {
		t.Fatalf("build user %q, want a uid of the build range", info.BuildUser)
	}
}

func TestLogCap(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-chatty", Build: "seq 1 200000; echo LAST-LINE; echo hi > kiln-chatty.txt"})
	_, task := f.submit(t, "el9-x86_64", "retry", srpm)
	cfg := testConfig(t, "el9-x86_64")
	cfg.LogLimit = 20000
	start(t, pool, cfg)

	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "succeeded" {
		t.Fatalf("task %s", st)
	}
	log := f.logOf(t, task, 1)
	if !strings.Contains(log, "the log reached its limit of 20000 bytes") || strings.Contains(log, "LAST-LINE") ||
		len(log) > 20000+200 {
		t.Fatalf("log of %d bytes ends:\n%s", len(log), log[max(0, len(log)-500):])
	}
	var truncated bool
	var logBytes int64
	f.db.Pool.QueryRow(context.Background(), "SELECT log_truncated, log_bytes FROM kiln.attempt WHERE task_id = $1 AND attempt = 1",
		task).Scan(&truncated, &logBytes)
	if !truncated || logBytes != int64(len(log)) {
		t.Fatalf("log_truncated %v, log_bytes %d (log %d bytes)", truncated, logBytes, len(log))
	}
	var chunks int
	f.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM kiln.log_chunk WHERE task_id = $1", task).Scan(&chunks)
	if chunks < 1 {
		t.Fatal("no log chunks")
	}
}

// The builder gives the backend the platform's architecture: sbuild (here a
// stand-in that prints its command line and leaves a .deb) builds with
// --arch=<platform arch> when the backend settings name none. The platform
// names its chroot, so no environment is looked up.
func TestSbuildGetsThePlatformArch(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "bookworm-arm64", "arm64", "deb", "sbuild", time.Hour, `{"dist": "bookworm", "chroot": "bookworm-arm64-sbuild"}`)
	_, pool := f.builderPool(t, 1)
	progDir := t.TempDir()
	// The stand-in runs as the build user when the tests run as root.
	for _, d := range []string{progDir, filepath.Dir(progDir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	prog := filepath.Join(progDir, "sbuild")
	script := `#!/bin/sh
echo "sbuild $*"
[ "$1" = --version ] && exit 0
for a in "$@"; do case "$a" in --build-dir=*) out=${a#--build-dir=};; esac; done
echo deb > "$out/kiln-arch_1.0_arm64.deb"
`
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "kiln-arch", Version: "1.0"})
	_, task := f.submit(t, "bookworm-arm64", "retry", dsc)
	cfg := testConfig(t, "bookworm-arm64")
	cfg.Backend.Sbuild = prog
	start(t, pool, cfg)

	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "succeeded" {
		_, _, reason := f.taskStatus(t, task)
		t.Fatalf("task %s: %s\n%s", st, reason, f.logOf(t, task, 1))
	}
	if log := f.logOf(t, task, 1); !strings.Contains(log, "sbuild --dist=bookworm --arch=arm64 --chroot=bookworm-arm64-sbuild --build-dir=") {
		t.Fatalf("sbuild was not told the platform's architecture:\n%s", log)
	}
	if _, ok := f.artifacts(t, task, 1)["kiln-arch_1.0_arm64.deb"]; !ok {
		t.Fatal("the stand-in's .deb is not among the artifacts")
	}
}
