package builder

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/backend"
	"github.com/kiln-build/kiln/internal/environment"
	"github.com/kiln-build/kiln/internal/environment/envtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// On an sbuild platform the builder builds in the platform's current
// environment (the shared test environment, installed as a builder would):
// a job of two packages, the second build-depending (with a version
// constraint) on the binary package only the first produces, builds in one
// task, in one pass, the second against the first's .deb; the second alone
// ends with the unsatisfiable outcome naming what is missing.
func TestSbuildEnvironmentChainInOneTask(t *testing.T) {
	t.Parallel()
	path, spec := envtest.Shared(t)
	f := newFarm(t)
	f.platform(t, "bookworm-amd64", "amd64", "deb", "sbuild", time.Hour, `{"dist": "bookworm"}`)
	f.exec(t, `INSERT INTO kiln.platform_environment (platform, spec) VALUES ('bookworm-amd64', $1)`, spec)
	_, pool := f.builderPool(t, 2)
	cfg := testConfig(t, "bookworm-amd64")
	cfg.Slots = 2
	start(t, pool, cfg)
	waitFor(t, "the builder to register", func() bool {
		var n int
		_ = f.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM kiln.builder WHERE name = $1", cfg.Name).Scan(&n)
		return n == 1
	})
	made, err := environment.Inspect(context.Background(), path, spec)
	if err != nil {
		t.Fatal(err)
	}
	env, err := environment.Install(context.Background(), pool, cfg.Name, "bookworm-amd64", made)
	if err != nil {
		t.Fatal(err)
	}

	user := testpkg.DSC(t, testpkg.Deb{Name: "kiln-user", Version: "1.0", BuildDepends: "kiln-base (>= 1.2)"})
	base := testpkg.DSC(t, testpkg.Deb{Name: "kiln-base", Version: "1.2"})
	_, chain := f.submit(t, "bookworm-amd64", "retry", base, user)
	_, alone := f.submit(t, "bookworm-amd64", "retry", user)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of task %d:\n%s", chain, f.logOf(t, chain, 1))
		}
	})

	if st := f.waitLong(t, chain); st != "succeeded" {
		_, _, reason := f.taskStatus(t, chain)
		t.Fatalf("chain: task %s (%s)\n%s", st, reason, f.logOf(t, chain, 1))
	}
	info := f.buildInfo(t, chain, 1)
	if info.Environment == nil || info.Environment.ID != env.ID || info.Environment.SHA256 != env.Sum.String() {
		t.Fatalf("build info names environment %+v, want %d %s", info.Environment, env.ID, env.Sum)
	}
	if info.Passes != 1 || info.Packages[0].Tries != 1 || info.Packages[1].Tries != 1 {
		t.Fatalf("passes %d, packages %+v", info.Passes, info.Packages)
	}
	if v := info.Packages[1].BuildDepends["kiln-base"]; v != "1.2" {
		t.Fatalf("kiln-user's installed build dependencies %v lack kiln-base 1.2", info.Packages[1].BuildDepends)
	}
	arts := f.artifacts(t, chain, 1)
	for _, name := range []string{"kiln-user_1.0_all.deb", "kiln-base_1.2_all.deb"} {
		if a, ok := arts[name]; !ok || a.kind != backend.KindPackage {
			t.Fatalf("artifacts %v lack %s", arts, name)
		}
	}

	if st := f.waitLong(t, alone); st != "failed" {
		t.Fatalf("kiln-user alone: task %s\n%s", st, f.logOf(t, alone, 1))
	}
	_, _, reason := f.taskStatus(t, alone)
	if !strings.Contains(reason, "unsatisfiable build dependencies: kiln-user_1.0.dsc (kiln-base:amd64 (>= 1.2))") {
		t.Fatalf("kiln-user alone: reason %q does not name what is missing", reason)
	}
	info = f.buildInfo(t, alone, 1)
	if !info.Unsatisfiable || info.Stage != backend.StageBuildDeps || info.Passes != 1 || !info.Packages[0].Unsatisfiable {
		t.Fatalf("kiln-user alone: build info %+v", info)
	}

	// The builder had never seen the environment: one task's log says it
	// was fetched, the other's that it came from the cache.
	var fetched, cached int
	for _, task := range []int64{chain, alone} {
		log := f.logOf(t, task, 1)
		named := fmt.Sprintf("kiln: environment %d of platform bookworm-amd64 (sha256 %s, %d bytes, ", env.ID, env.Sum, env.Size)
		switch {
		case strings.Contains(log, named) && strings.Contains(log, "fetched from the database into this builder's cache in "):
			fetched++
		case strings.Contains(log, named) && strings.Contains(log, "), from this builder's cache\n"):
			cached++
		default:
			t.Fatalf("task %d's log does not say where its environment came from:\n%s", task, log)
		}
	}
	if fetched != 1 || cached != 1 {
		t.Fatalf("%d logs say fetched, %d cached; want one each", fetched, cached)
	}
}

// waitLong waits until the task has ended, for as long as sbuild on a loaded
// machine may take (three runs of about a minute each when idle).
func (f *farm) waitLong(t *testing.T, task int64) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Minute)
	for {
		st, _, _ := f.taskStatus(t, task)
		if st == "succeeded" || st == "failed" || st == "timed_out" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d still %s after 20 minutes", task, st)
		}
		time.Sleep(time.Second)
	}
}

// The host dpkg backend checks build dependencies first: a missing one is
// the unsatisfiable outcome naming it, not a failed build.
func TestDpkgUnsatisfiable(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "bookworm-amd64", "amd64", "deb", "dpkg", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "kiln-wants", Version: "1.0", BuildDepends: "kiln-no-such-package (>= 2)"})
	_, task := f.submit(t, "bookworm-amd64", "retry", dsc)
	start(t, pool, testConfig(t, "bookworm-amd64"))
	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "failed" {
		t.Fatalf("task %s\n%s", st, f.logOf(t, task, 1))
	}
	_, _, reason := f.taskStatus(t, task)
	if !strings.Contains(reason, "unsatisfiable build dependencies: kiln-wants_1.0.dsc (kiln-no-such-package (>= 2))") {
		t.Fatalf("reason %q", reason)
	}
	// The log says the host build used no bucket, and what would.
	if log := f.logOf(t, task, 1); !strings.Contains(log, "kiln: the dpkg backend builds with the packages installed on this host "+
		"and installs no build dependencies: it uses no bucket's repository (to build against the buckets' repositories, use an sbuild platform)") {
		t.Fatalf("the log does not say the dpkg backend uses no bucket:\n%s", log)
	}
	info := f.buildInfo(t, task, 1)
	if !info.Unsatisfiable || info.Stage != backend.StageBuildDeps || info.Passes != 1 {
		t.Fatalf("build info %+v", info)
	}
}

// The host rpmbuild backend reports BuildRequires the host lacks as the
// unsatisfiable outcome naming them.
func TestRpmbuildUnsatisfiable(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-wants", BuildRequires: []string{"kiln-no-such-package >= 2"}})
	_, task := f.submit(t, "el9-x86_64", "retry", srpm)
	start(t, pool, testConfig(t, "el9-x86_64"))
	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "failed" {
		t.Fatalf("task %s\n%s", st, f.logOf(t, task, 1))
	}
	_, _, reason := f.taskStatus(t, task)
	if !strings.Contains(reason, "unsatisfiable build dependencies: kiln-wants-1.0-1.src.rpm (kiln-no-such-package >= 2 is needed by kiln-wants-1.0-1") {
		t.Fatalf("reason %q\n%s", reason, f.logOf(t, task, 1))
	}
	if log := f.logOf(t, task, 1); !strings.Contains(log, "kiln: the rpmbuild backend builds with the packages installed on this host "+
		"and installs no build dependencies: it uses no bucket's repository (to build against the buckets' repositories, use a mock platform)") {
		t.Fatalf("the log does not say the rpmbuild backend uses no bucket:\n%s", log)
	}
	info := f.buildInfo(t, task, 1)
	if !info.Unsatisfiable || info.Stage != backend.StageBuildDeps {
		t.Fatalf("build info %+v", info)
	}
}
