package report_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

func TestWebQueries(t *testing.T) {
	t.Parallel()
	f, db := seeded(t)
	ctx := context.Background()

	building, err := report.BuildingTasks(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(building) != 1 || building[0].TaskID != f.Tasks["building/"+farmtest.EL9] || building[0].Builder != "b1" ||
		building[0].Submitter != f.Alice || !slices.Equal(building[0].Packages, []string{"hello"}) || building[0].Attempt != 1 {
		t.Errorf("building tasks: %+v", building)
	}

	attempts, err := report.BuilderAttempts(ctx, db, "b2", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 1 || attempts[0].Status != "lost" || attempts[0].TaskID != f.Tasks["succeeded/"+farmtest.EL9] || attempts[0].JobID != f.Jobs["succeeded"] {
		t.Errorf("attempts of b2: %+v", attempts)
	}
	if attempts, _ = report.BuilderAttempts(ctx, db, "b1", 2); len(attempts) != 2 || attempts[0].TaskID != f.Tasks["building/"+farmtest.EL9] {
		t.Errorf("newest two attempts of b1: %+v", attempts)
	}

	failed := f.Tasks["failed/"+farmtest.EL9]
	last, more, err := report.LogLast(ctx, db, failed, 1, 1)
	if err != nil || len(last) != 1 || last[0].Seq != 1 || !more {
		t.Errorf("last chunk: %+v more %v (%v)", last, more, err)
	}
	if last, more, _ = report.LogLast(ctx, db, failed, 1, 5); len(last) != 2 || last[0].Seq != 0 || more {
		t.Errorf("all chunks: %+v more %v", last, more)
	}

	task, _ := report.GetTask(ctx, db, f.Tasks["succeeded/"+farmtest.EL9])
	art, err := report.GetArtifact(ctx, db, task.Artifacts[1].ID)
	if err != nil || art.FileName != "hello-1.0-1.x86_64.rpm" || *art.SHA256 != *task.Artifacts[1].SHA256 {
		t.Errorf("artifact: %+v (%v)", art, err)
	}
	if _, err := report.GetArtifact(ctx, db, 999999); !errors.Is(err, report.ErrNotFound) {
		t.Errorf("missing artifact: %v", err)
	}

	c, err := report.GetCounts(ctx, db, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if c.Jobs["submitted"] != 1 || c.Jobs["queued"] != 1 || c.Jobs["building"] != 1 || c.JobsFinished["succeeded"] != 1 ||
		c.JobsFinished["cancelled"] != 1 || c.Tasks["pending"] != 3 || c.Tasks["building"] != 1 || c.Builders["online"] != 1 {
		t.Errorf("counts: %+v", c)
	}
	recent, err := report.RecentBuilds(ctx, db, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// el9: cancelled, failed, lost, 2 succeeded; bookworm: succeeded, timed out.
	if len(recent) != 6 || recent[0].Platform != farmtest.Bookworm || recent[5].Platform != farmtest.EL9 ||
		recent[5].Status != "succeeded" || recent[5].Count != 2 || recent[5].P99Seconds < recent[5].P50Seconds {
		t.Errorf("recent builds: %+v", recent)
	}
	if none, _ := report.RecentBuilds(ctx, db, time.Nanosecond); len(none) != 0 {
		t.Errorf("builds of the last nanosecond: %+v", none)
	}
}
