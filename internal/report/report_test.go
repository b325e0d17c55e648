package report_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// seeded returns a seeded farm and a pool connected as alice, a plain
// member of kiln_submitter: every query must work with her grants.
func seeded(t *testing.T) (*farmtest.Farm, *pgxpool.Pool) {
	t.Helper()
	db := pgtest.New(t)
	f := farmtest.Seed(t, db)
	pool, err := pgxpool.New(context.Background(), db.URLAs(f.Alice))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return f, pool
}

func ids(jobs []report.JobSummary) []int64 {
	var out []int64
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func TestListJobs(t *testing.T) {
	t.Parallel()
	f, db := seeded(t)
	ctx := context.Background()
	J := f.Jobs

	all, err := report.ListJobs(ctx, db, report.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{J["cancelled"], J["partially_failed"], J["failed"], J["succeeded"], J["building"], J["queued"], J["invalid"], J["submitted"]}
	if !slices.Equal(ids(all.Jobs), want) || all.NextBefore != 0 {
		t.Fatalf("all jobs: %v next %d, want %v", ids(all.Jobs), all.NextBefore, want)
	}
	for _, j := range all.Jobs {
		if J[string(j.Status)] != j.ID {
			t.Errorf("job %d has status %s, seeded as %d", j.ID, j.Status, J[string(j.Status)])
		}
	}
	succ := all.Jobs[3]
	if succ.Submitter != f.Alice || succ.Bucket != "devel" || !slices.Equal(succ.Packages, []string{"hello", "lib"}) ||
		len(succ.Tasks) != 2 || succ.Tasks[0] != (report.TaskBrief{ID: f.Tasks["succeeded/bookworm-amd64"], Platform: "bookworm-amd64", Status: "succeeded"}) ||
		succ.FinishedAt == nil || succ.AgeSeconds < 0 || succ.DurationSeconds < 0 {
		t.Errorf("succeeded job summary: %+v", succ)
	}
	if sub := all.Jobs[7]; !slices.Equal(sub.Packages, []string{"hello-1.0-1.src.rpm"}) || len(sub.Tasks) != 0 {
		t.Errorf("submitted job: packages %v (file names until validated), tasks %v", sub.Packages, sub.Tasks)
	}

	check := func(name string, f report.Filter, want ...int64) {
		t.Helper()
		got, err := report.ListJobs(ctx, db, f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(ids(got.Jobs), want) {
			t.Errorf("%s: got %v, want %v", name, ids(got.Jobs), want)
		}
	}
	check("mine", report.Filter{Mine: true}, J["cancelled"], J["partially_failed"], J["succeeded"], J["building"], J["invalid"], J["submitted"])
	check("bob", report.Filter{Submitter: f.Bob}, J["failed"], J["queued"])
	check("failed or partially", report.Filter{Status: []string{"failed", "partially_failed"}}, J["partially_failed"], J["failed"])
	check("status queued", report.Filter{Status: []string{"queued"}}, J["queued"])
	check("platform el8", report.Filter{Platform: farmtest.EL8}, J["queued"])
	check("bucket", report.Filter{Bucket: "stable"})
	check("bob on el9", report.Filter{Submitter: f.Bob, Platform: farmtest.EL9}, J["failed"], J["queued"])
	check("since future", report.Filter{Since: time.Now().Add(time.Hour)})
	check("since past", report.Filter{Since: time.Now().Add(-time.Hour), Mine: true, Status: []string{"invalid"}}, J["invalid"])

	// Pages of three, following the cursor.
	var paged []int64
	cur := report.Filter{Limit: 3}
	for pages := 0; ; pages++ {
		got, err := report.ListJobs(ctx, db, cur)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, ids(got.Jobs)...)
		if got.NextBefore == 0 {
			if pages != 2 {
				t.Errorf("%d pages, want 3", pages+1)
			}
			break
		}
		cur.Before = got.NextBefore
	}
	if !slices.Equal(paged, want) {
		t.Errorf("paged: %v, want %v", paged, want)
	}

	if _, err := report.ListJobs(ctx, db, report.Filter{Status: []string{"done"}}); err == nil {
		t.Error("unknown status accepted")
	}
}

func TestGetJob(t *testing.T) {
	t.Parallel()
	f, db := seeded(t)
	ctx := context.Background()

	j, err := report.GetJob(ctx, db, f.Jobs["succeeded"])
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != "succeeded" || j.Submitter != f.Alice || len(j.Packages) != 2 || len(j.Tasks) != 2 || j.ValidatedAt == nil {
		t.Fatalf("job: %+v", j)
	}
	p := j.Packages[0]
	if p.FileName != "hello-1.0-1.src.rpm" || p.Format != "srpm" || *p.Name != "hello" || *p.Version != "1.0" || *p.Release != "1" ||
		len(p.SHA256) != 64 || p.Size != int64(len("source of hello-1.0-1.src.rpm")) {
		t.Errorf("package: %+v", p)
	}
	el9 := j.Tasks[1]
	if el9.Platform != farmtest.EL9 || el9.Status != "succeeded" || el9.Attempt != 2 || el9.LostCount != 1 || el9.Builder == nil || *el9.Builder != "b1" ||
		el9.DurationSeconds == nil || el9.WaitSeconds == nil {
		t.Fatalf("el9 task: %+v", el9)
	}
	if len(el9.Attempts) != 2 || el9.Attempts[0].Status != "lost" || el9.Attempts[0].Builder != "b2" ||
		el9.Attempts[1].Status != "succeeded" || el9.Attempts[1].Builder != "b1" || el9.Attempts[1].LogBytes == 0 {
		t.Errorf("attempts: %+v", el9.Attempts)
	}
	if len(el9.Artifacts) != 2 || el9.Artifacts[0].Kind != "log" || el9.Artifacts[0].FileName != "build.log" ||
		el9.Artifacts[1].FileName != "hello-1.0-1.x86_64.rpm" || el9.Artifacts[1].SHA256 == nil || len(*el9.Artifacts[1].SHA256) != 64 ||
		el9.Artifacts[1].Platform != farmtest.EL9 || el9.Artifacts[1].Attempt != 2 {
		t.Errorf("artifacts: %+v", el9.Artifacts)
	}

	c, err := report.GetJob(ctx, db, f.Jobs["cancelled"])
	if err != nil {
		t.Fatal(err)
	}
	if c.CancelledBy == nil || *c.CancelledBy != f.Alice || c.Tasks[0].Status != "cancelled" || c.Tasks[0].Attempts[0].Status != "cancelled" {
		t.Errorf("cancelled job: %+v", c)
	}

	if _, err := report.GetJob(ctx, db, 999999); !errors.Is(err, report.ErrNotFound) {
		t.Errorf("missing job: %v", err)
	}
}

func TestGetTaskAndLogs(t *testing.T) {
	t.Parallel()
	f, db := seeded(t)
	ctx := context.Background()

	id := f.Tasks["building/el9-x86_64"]
	task, err := report.GetTask(ctx, db, id)
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != "building" || task.Builder == nil || *task.Builder != "b1" || task.JobID != f.Jobs["building"] || task.Submitter != f.Alice {
		t.Fatalf("task: %+v", task)
	}
	chunks, err := report.LogAfter(ctx, db, id, task.Attempt, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 2 || chunks[1].Data != "compiling hello.c\n" || chunks[1].Seq != 1 {
		t.Fatalf("log: %+v", chunks)
	}
	if rest, _ := report.LogAfter(ctx, db, id, task.Attempt, 1); len(rest) != 0 {
		t.Errorf("log after 1: %+v", rest)
	}

	failed := f.Tasks["failed/el9-x86_64"]
	for n, want := range map[int][]string{
		0: {},
		2: {"make: *** [all] Error 1", "error: Bad exit status from /var/tmp/rpm-tmp (%build)"},
		4: {"checking for gcc... gcc", "tools.c:3:1: error: expected ';'", "make: *** [all] Error 1", "error: Bad exit status from /var/tmp/rpm-tmp (%build)"},
		9: {"+ rpmbuild --rebuild tools-1.9-1.src.rpm", "checking for gcc... gcc", "tools.c:3:1: error: expected ';'", "make: *** [all] Error 1", "error: Bad exit status from /var/tmp/rpm-tmp (%build)"},
	} {
		got, err := report.LogTail(ctx, db, failed, 1, n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("tail %d: %q, want %q", n, got, want)
		}
	}
	if _, err := report.GetTask(ctx, db, 999999); !errors.Is(err, report.ErrNotFound) {
		t.Errorf("missing task: %v", err)
	}
}

func TestBuildersPlatformsQueueHealth(t *testing.T) {
	t.Parallel()
	f, db := seeded(t)
	ctx := context.Background()

	bs, err := report.ListBuilders(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs[0].Name != "b1" || bs[0].State != "online" || bs[0].Busy != 1 ||
		!slices.Equal(bs[0].Tasks, []int64{f.Tasks["building/el9-x86_64"]}) || !slices.Equal(bs[0].Platforms, []string{"bookworm-amd64", "el9-x86_64"}) ||
		bs[1].Name != "b2" || bs[1].State != "offline" || bs[1].HeartbeatAgeSeconds == nil {
		t.Fatalf("builders: %+v", bs)
	}

	ps, err := report.ListPlatforms(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 || ps[0].Name != "bookworm-amd64" || ps[0].Pending != 1 || ps[1].Name != "el8-aarch64" || ps[1].Active ||
		ps[2].Name != "el9-x86_64" || ps[2].Pending != 1 || ps[2].Building != 1 || ps[2].BuildersOnline != 1 || ps[2].TimeoutSeconds != 7200 ||
		ps[2].OldestWaitSeconds == nil {
		t.Fatalf("platforms: %+v", ps)
	}

	q, err := report.GetQueue(ctx, db, report.QueueFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if q.Validating != 1 || q.OldestValidatingSeconds == nil || len(q.Platforms) != 3 || len(q.Tasks) != 3 {
		t.Fatalf("queue: %+v", q)
	}
	byName := map[string]report.QueuePlatform{}
	for _, p := range q.Platforms {
		byName[p.Platform] = p
	}
	if p := byName["el8-aarch64"]; !slices.Equal(p.Blocked, []string{report.BlockedPlatformInactive, report.BlockedNoBuilder}) {
		t.Errorf("el8: %+v", p)
	}
	if p := byName["el9-x86_64"]; len(p.Blocked) != 0 || p.BuildersTotal != 2 || p.BuildersOnline != 1 || p.SlotsUsable != 2 || p.SlotsBusy != 1 {
		t.Errorf("el9: %+v", p)
	}

	mine, err := report.GetQueue(ctx, db, report.QueueFilter{Mine: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(mine.Tasks) != 1 || mine.Tasks[0].TaskID != f.Tasks["building/bookworm-amd64"] || mine.Tasks[0].Ahead != 0 {
		t.Errorf("alice's pending tasks: %+v", mine.Tasks)
	}

	// b1 fills up: el9 and bookworm are blocked on full builders, and a
	// second pending el9 task of higher priority goes ahead of bob's.
	farmtest.Take(t, f.DB.Pool, f.Tasks["building/bookworm-amd64"], "b1")
	job := farmtest.Submit(t, f.DB.Pool, f.Alice, "devel", []string{farmtest.EL9}, farmtest.File{Name: "urgent-1-1.src.rpm", Data: []byte("x")})
	if _, err := f.DB.Pool.Exec(ctx, "UPDATE kiln.job SET priority = 1 WHERE id = $1", job); err != nil {
		t.Fatal(err)
	}
	farmtest.Split(t, f.DB.Pool, job, farmtest.EL9)
	q, err = report.GetQueue(ctx, db, report.QueueFilter{Submitter: f.Bob, Platform: farmtest.EL9})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Tasks) != 1 || q.Tasks[0].Ahead != 1 || !slices.Equal(q.Tasks[0].Blocked, []string{report.BlockedBuildersFull}) {
		t.Errorf("bob's el9 task: %+v", q.Tasks)
	}
	// b1 disabled: the only online builder is disabled.
	if _, err := f.DB.Pool.Exec(ctx, "UPDATE kiln.builder SET enabled = false WHERE name = 'b1'"); err != nil {
		t.Fatal(err)
	}
	q, _ = report.GetQueue(ctx, db, report.QueueFilter{})
	for _, p := range q.Platforms {
		if p.Platform == farmtest.EL9 && !slices.Equal(p.Blocked, []string{report.BlockedBuildersDisabled}) {
			t.Errorf("el9 with b1 disabled: %+v", p)
		}
	}

	h, err := report.GetHealth(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if h.Pending != 3 || h.OldestPendingSeconds == nil || h.Validating != 1 || h.BuildersTotal != 2 || h.BuildersOnline != 1 ||
		h.BuildersOffline != 1 || h.JanitorLastRun != nil {
		t.Errorf("health: %+v", h)
	}
	if _, err := f.DB.Pool.Exec(ctx, "INSERT INTO kiln.event (kind, detail) VALUES ('janitor.round', '{}')"); err != nil {
		t.Fatal(err)
	}
	if h, _ = report.GetHealth(ctx, db); h.JanitorLastRun == nil || h.JanitorAgeSeconds == nil {
		t.Errorf("janitor round not seen: %+v", h)
	}
}

// TestHealthReadsTheJanitorRoundByItsIndex checks that kiln check finds the
// janitor's last round through event_kind_idx, which since migration 0048
// leaves out the status events a farm writes most: among 60,000 of them,
// with the round far back, the query must not read the events backwards
// from the newest (event_pkey) or all of them.
func TestHealthReadsTheJanitorRoundByItsIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO kiln.event (kind, detail) VALUES ('janitor.round', '{}');
		INSERT INTO kiln.event (kind, new_status, detail) SELECT (ARRAY['task.status', 'attempt.status', 'job.status'])[1 + g % 3], 'succeeded', '{}'
		FROM generate_series(1, 60000) g;
		ANALYZE kiln.event`); err != nil {
		t.Fatal(err)
	}
	plan := pgtest.Plan(t, db.Pool, report.HealthQuery)
	if !strings.Contains(plan, "event_kind_idx") || strings.Contains(plan, "event_pkey") || strings.Contains(plan, "Seq Scan on event") {
		t.Errorf("kiln check reads the janitor's round without event_kind_idx:\n%s", plan)
	}
	h, err := report.GetHealth(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if h.JanitorLastRun == nil {
		t.Errorf("janitor round not seen: %+v", h)
	}
}
