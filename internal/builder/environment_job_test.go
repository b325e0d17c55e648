package builder

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/riverjob"
)

// A builder of an sbuild platform works the platform's environment River
// job from its build queue: it runs mmdebstrap (as the build user) from the
// spec, and when that fails (here the mirror does not exist) the job fails
// with mmdebstrap's own words and the platform keeps what it had (no
// environment). TestLifecycle (internal/environment) makes one for real.
func TestBuilderWorksEnvironmentJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFarm(t)
	f.platform(t, "bookworm-amd64", "amd64", "deb", "sbuild", time.Hour, `{"dist": "bookworm"}`)
	f.exec(t, `INSERT INTO kiln.platform_environment (platform, spec)
		VALUES ('bookworm-amd64', '{"dist": "bookworm", "arch": "amd64", "mirror": "file:///nonexistent/debian", "components": ["main"]}')`)
	_, pool := f.builderPool(t, 1)
	cfg := testConfig(t, "bookworm-amd64")
	start(t, pool, cfg)
	res, err := f.inserter.Insert(ctx, riverjob.EnvironmentArgs{Platform: "bookworm-amd64"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Job.Queue != riverjob.BuildQueue("bookworm-amd64") {
		t.Fatalf("the environment River job is in queue %s", res.Job.Queue)
	}
	var jobErr string
	waitFor(t, "the environment River job to fail", func() bool {
		_ = f.db.Pool.QueryRow(ctx, `SELECT coalesce(errors[1] ->> 'error', '') FROM river.river_job WHERE id = $1`, res.Job.ID).Scan(&jobErr)
		return jobErr != ""
	})
	for _, want := range []string{"making the bookworm/amd64 environment with mmdebstrap", "mmdebstrap's last output", "does not have a Release file"} {
		if !strings.Contains(jobErr, want) {
			t.Fatalf("the River job's error lacks %q:\n%s", want, jobErr)
		}
	}
	var current *int64
	if err := f.db.Pool.QueryRow(ctx, `SELECT environment FROM kiln.platform_environment WHERE platform = 'bookworm-amd64'`).Scan(&current); err != nil || current != nil {
		t.Fatalf("after the failed job the platform's environment is %v (%v), want none", current, err)
	}
}
