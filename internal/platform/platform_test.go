package platform_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/platform"
	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// TestReads reads platforms as alice, a plain submitter: every role that
// reads a platform must be able to.
func TestReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	f := farmtest.Seed(t, db)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO kiln.platform (name, arch, package_format, backend, backend_settings, timeout, max_processes, max_disk)
		VALUES ('slow', 'x86_64', 'rpm', 'noop', '{"sleep": "1s"}', interval '30 hours', 64, 1073741824)`); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, db.URLAs(f.Alice))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	all, err := platform.List(ctx, pool)
	if err != nil || len(all) < 2 {
		t.Fatalf("List = %d platforms, %v", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].Name >= all[i].Name {
			t.Fatalf("List is not in name order: %s before %s", all[i-1].Name, all[i].Name)
		}
	}
	p, err := platform.Get(ctx, pool, "slow", false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Timeout != 30*time.Hour || p.TimeoutSeconds != 30*3600 || p.PackageFormat != "rpm" || p.BackendSettings["sleep"] != "1s" || !p.Active {
		t.Errorf("Get(slow) = %+v", p)
	}
	want := sandbox.Limits{Processes: 64, Memory: sandbox.DefaultMemory, Disk: 1 << 30}
	if got := p.Limits(); got != want {
		t.Errorf("Limits() = %+v, want %+v (its own where set, the defaults elsewhere)", got, want)
	}
	if longest, err := platform.LongestTimeout(ctx, pool); err != nil || longest != 30*time.Hour {
		t.Errorf("LongestTimeout = %v, %v; want 30h", longest, err)
	}
	if _, err := platform.Get(ctx, pool, "nowhere", false); !errors.Is(err, platform.ErrNotFound) {
		t.Errorf("Get(nowhere) = %v, want ErrNotFound", err)
	}
}
