package repo_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/repo"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// repo.Run is kiln-publisher: with Once it publishes what is pending and
// returns; serving, it publishes a job that ends while it runs, answers
// /healthz, and returns nil when its context ends. A GnuPG home others can
// read is refused before it connects.
func TestRun(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	pub := farmtest.Person(t, f.db, "pubrun", "kiln_publisher")
	cfg := repo.RunConfig{
		DB:        dbconn.Config{URL: f.db.URLAs(pub), AppName: "kiln-publisher"},
		GnuPGHome: f.publisher.Keys.Home,
		WorkDir:   filepath.Join(t.TempDir(), "work"),
		Once:      true,
	}

	f.job(t, "devel", debArtifact(t, "hello-kiln", "1.0"), nil)
	if err := repo.Run(ctx, cfg); err != nil {
		t.Fatalf("Run --once: %v", err)
	}
	if _, got := f.get(t, packagesPath); !bytes.Contains(got, []byte("Package: hello-kiln")) {
		t.Fatalf("after Run --once, Packages:\n%s", got)
	}

	// A free port for the health endpoint.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	health := l.Addr().String()
	must(t, l.Close())
	serving := cfg
	serving.Once, serving.HealthAddr = false, health
	serving.Serve = repo.ServeConfig{Poll: 500 * time.Millisecond}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- repo.Run(runCtx, serving) }()
	f.job(t, "devel", debArtifact(t, "second", "1.0"), nil)
	for {
		if _, got := f.get(t, packagesPath); bytes.Contains(got, []byte("Package: second")) {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned before publishing: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	resp, err := http.Get("http://" + health + "/healthz")
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("/healthz: %d %q", resp.StatusCode, body)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run after its context ended: %v", err)
	}

	open := t.TempDir()
	must(t, os.Chmod(open, 0o755))
	bad := cfg
	bad.GnuPGHome = open
	if err := repo.Run(ctx, bad); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("Run with a GnuPG home others can read: %v", err)
	}
}
