package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/environment"
	"github.com/kiln-build/kiln/internal/environment/envtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// Debian's own hello, fetched from the archive now, goes through the whole
// farm: kiln submit, the splitter, and kiln-builder building on an sbuild
// platform in the shared clean environment (installed as a builder
// installs one). Its build dependencies (help2man, texinfo) are not on the
// host; the build-info record names the versions installed, and the .deb
// artifact's checksum matches its bytes. A package whose build dependency
// no archive has ends at stage unsatisfiable, naming it, not retried.
func TestDebianHelloThroughTheFarm(t *testing.T) {
	t.Parallel()
	const deb = "bookworm-amd64"
	path, spec := envtest.Shared(t)
	for _, p := range []string{"help2man", "texinfo"} {
		if _, err := exec.LookPath(p); err == nil {
			t.Fatalf("%s is on the host's PATH; this test proves the environment provides it", p)
		}
	}
	src := t.TempDir()
	if out, err := exec.Command("sh", "-c", "cd "+src+" && apt-get source --download-only hello").CombinedOutput(); err != nil {
		t.Fatalf("apt-get source hello (needs the deb-src entry .ci/setup-debian adds): %v\n%s", err, out)
	}
	dscs, _ := filepath.Glob(filepath.Join(src, "hello_*.dsc"))
	if len(dscs) != 1 {
		t.Fatalf("apt-get source left %v", dscs)
	}

	f := sbuildFarm(t, deb, spec)
	role := f.role(t, "kiln_builder")
	work, cache := filepath.Join(t.TempDir(), "work"), filepath.Join(t.TempDir(), "envs")
	for _, d := range []string{work, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, up := range []string{filepath.Dir(d), filepath.Dir(filepath.Dir(d))} {
			if err := os.Chmod(up, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	startProc(t, "hb", binary(t, "kiln-builder"), append(f.login(role), "--name", "hb", "--platform", deb, "--workdir", work,
		"--environment-cache", cache, "--heartbeat", "1s", "--grace", "1s")...)
	waitFor(t, "the builder to register", func() bool {
		return f.count(t, `SELECT count(*) FROM kiln.builder WHERE name = 'hb' AND state = 'online'`) == 1
	})
	env := installEnvironment(t, f, role, "hb", deb, path, spec)

	as := f.login(f.person)
	submit := func(dsc string) int64 {
		out, code := kiln(t, nil, append(as, "submit", "--bucket", "devel", "--platform", deb, dsc)...)
		if code != 0 {
			t.Fatalf("kiln submit %s: exit %d\n%s", dsc, code, out)
		}
		return f.taskOf(t, submittedJob(t, out))
	}
	hello := submit(dscs[0])
	missing := submit(testpkg.DSC(t, testpkg.Deb{Name: "kiln-wants-nothing-there", Version: "1.0",
		BuildDepends: "kiln-no-such-package (>= 2)"}))

	if st := f.waitEnd(t, hello); st.Status != "succeeded" {
		t.Fatalf("hello: task %+v\n%s", st, f.attemptLog(t, hello, 1))
	}
	var infoJSON []byte
	var envSum string
	f.scan(t, `SELECT build_info, build_info -> 'environment' ->> 'sha256' FROM kiln.attempt WHERE task_id = $1 AND attempt = 1`,
		[]any{hello}, &infoJSON, &envSum)
	var info struct {
		Packages []struct {
			BuildDepends map[string]string `json:"installed_build_depends"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(infoJSON, &info); err != nil || len(info.Packages) != 1 {
		t.Fatalf("build info %s: %v", infoJSON, err)
	}
	for _, p := range []string{"help2man", "texinfo"} {
		if info.Packages[0].BuildDepends[p] == "" {
			t.Fatalf("the build info's installed build dependencies lack %s: %v", p, info.Packages[0].BuildDepends)
		}
	}
	if envSum != env.Sum.String() {
		t.Fatalf("built in environment %s, want %s", envSum, env.Sum)
	}
	version := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(dscs[0]), "hello_"), ".dsc")
	var content []byte
	var sum []byte
	f.scan(t, `SELECT (SELECT string_agg(c.data, ''::bytea ORDER BY c.seq) FROM kiln.blob_chunk c WHERE c.sha256 = a.blob_sha256), a.blob_sha256
		FROM kiln.artifact a WHERE a.task_id = $1 AND a.kind = 'package' AND a.file_name = $2`,
		[]any{hello, "hello_" + version + "_amd64.deb"}, &content, &sum)
	if got := sha256.Sum256(content); hex.EncodeToString(got[:]) != hex.EncodeToString(sum) {
		t.Fatal("hello's .deb artifact does not match its checksum")
	}

	st := f.waitEnd(t, missing)
	var stage, attemptStage string
	var retries int
	f.scan(t, `SELECT t.failure_stage, a.failure_stage, t.infra_retries FROM kiln.task t
		JOIN kiln.attempt a ON a.task_id = t.id AND a.attempt = t.attempt WHERE t.id = $1`, []any{missing}, &stage, &attemptStage, &retries)
	if st.Status != "failed" || stage != "unsatisfiable" || attemptStage != "unsatisfiable" || retries != 0 || st.Attempt != 1 {
		t.Fatalf("unsatisfiable: task %+v, stage %s/%s, %d retries", st, stage, attemptStage, retries)
	}
	if st.Reason == nil || !strings.Contains(*st.Reason, "unsatisfiable build dependencies") || !strings.Contains(*st.Reason, "kiln-no-such-package") {
		t.Fatalf("unsatisfiable: reason %v does not name what is missing", st.Reason)
	}
	var biStage string
	f.scan(t, `SELECT build_info ->> 'stage' FROM kiln.attempt WHERE task_id = $1 AND attempt = 1`, []any{missing}, &biStage)
	if biStage != "install-build-deps" {
		t.Fatalf("unsatisfiable: build info stage %q, want install-build-deps", biStage)
	}
	// kiln show says the stage on its own.
	var job int64
	f.scan(t, `SELECT job_id FROM kiln.task WHERE id = $1`, []any{missing}, &job)
	out, code := kiln(t, nil, append(as, "show", strconv.FormatInt(job, 10))...)
	if code == 2 || !strings.Contains(out, "STAGE") || !strings.Contains(out, " unsatisfiable ") {
		t.Fatalf("kiln show (exit %d) does not show the stage:\n%s", code, out)
	}
}

// sbuildFarm is a farm with a splitter and an sbuild platform of Debian
// bookworm whose environment has spec.
func sbuildFarm(t testing.TB, platform string, spec environment.Spec) *farm {
	t.Helper()
	f := newFarm(t)
	f.exec(t, `INSERT INTO kiln.platform (name, arch, package_format, backend, backend_settings, timeout)
		VALUES ($1, 'amd64', 'deb', 'sbuild', '{"dist": "bookworm"}', '1 hour')`, platform)
	f.exec(t, `INSERT INTO kiln.platform_environment (platform, spec) VALUES ($1, $2)`, platform, spec)
	f.startSplitter(t, f.role(t, "kiln_splitter"))
	return f
}

// installEnvironment installs the environment at path for platform in
// builder's name, as a builder that made it would
// (kiln.environment_install), with role's rights.
func installEnvironment(t testing.TB, f *farm, role, builder, platform, path string, spec environment.Spec) environment.Environment {
	t.Helper()
	pool, err := dbconn.Open(context.Background(), dbconn.Config{URL: f.db.URLAs(role), AppName: "kiln-e2e-environment"})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	made, err := environment.Inspect(context.Background(), path, spec)
	if err != nil {
		t.Fatal(err)
	}
	env, err := environment.Install(context.Background(), pool, builder, platform, made)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// waitEnd waits, as long as sbuild on a loaded machine may take, until the
// task has ended.
func (f *farm) waitEnd(t testing.TB, id int64) task {
	t.Helper()
	deadline := time.Now().Add(20 * time.Minute)
	for {
		r := f.task(t, id)
		switch r.Status {
		case "succeeded", "failed", "timed_out", "lost", "cancelled":
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d still %s after 20 minutes", id, r.Status)
		}
		time.Sleep(time.Second)
	}
}

// attemptLog returns the stored log of an attempt.
func (f *farm) attemptLog(t testing.TB, id int64, attempt int) string {
	t.Helper()
	var s string
	f.scan(t, `SELECT coalesce(string_agg(data, '' ORDER BY seq), '') FROM kiln.log_chunk WHERE task_id = $1 AND attempt = $2`,
		[]any{id, attempt}, &s)
	return s
}
