package report_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/report"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// etaFarm is a farm with a known history on platform p9 (one builder, two
// slots) and a known queue:
//
//	history   alice hello (devel) 10, 20, 30 min; bob tools (secret) 60 min
//	building  alice hello on b1, started 2 h ago (so it runs late: nothing left to wait for)
//	queue     bob tools (secret), alice hello, alice newpkg, in River's order;
//	          newpkg's task was created first, so created_at would put it first
type etaFarm struct {
	db                         *pgtest.DB
	alice, bob, admin, web     string
	building, tools, hello, nw int64
}

func newETAFarm(t *testing.T) *etaFarm {
	t.Helper()
	db := pgtest.New(t)
	p := db.Pool
	f := &etaFarm{db: db}
	f.alice = farmtest.Person(t, db, "alice", "kiln_submitter")
	f.bob = farmtest.Person(t, db, "bob", "kiln_submitter")
	f.admin = farmtest.Person(t, db, "ada", "kiln_admin")
	f.web = farmtest.Person(t, db, "web", "kiln_web")
	farmtest.Platform(t, p, "p9", "x86_64")
	farmtest.Bucket(t, p, "devel")
	dbExec(t, db, `INSERT INTO kiln.bucket (name, private) VALUES ('secret', true)`)
	dbExec(t, db, `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('secret', $1)`, f.bob)
	farmtest.Builder(t, p, "b1", 2, true, "p9")
	srpm := func(name string) farmtest.File {
		return farmtest.File{Name: name, Data: []byte("source of " + name + t.Name())}
	}
	built := func(person, bucket, file string, minutes int) {
		job := farmtest.Submit(t, p, person, bucket, []string{"p9"}, srpm(file))
		id := farmtest.Split(t, p, job, "p9")[0]
		a := farmtest.Take(t, p, id, "b1")
		farmtest.Finish(t, p, id, a, "succeeded", "")
		dbExec(t, db, `UPDATE kiln.attempt SET started_at = finished_at - make_interval(mins => $2) WHERE task_id = $1`, id, minutes)
	}
	built(f.alice, "devel", "hello-1.0-1.src.rpm", 10)
	built(f.alice, "devel", "hello-1.0-2.src.rpm", 20)
	built(f.alice, "devel", "hello-1.0-3.src.rpm", 30)
	built(f.bob, "secret", "tools-1.0-1.src.rpm", 60)

	job := farmtest.Submit(t, p, f.alice, "devel", []string{"p9"}, srpm("hello-1.1-1.src.rpm"))
	f.building = farmtest.Split(t, p, job, "p9")[0]
	farmtest.Take(t, p, f.building, "b1")
	dbExec(t, db, `UPDATE kiln.task SET started_at = now() - interval '2 hours' WHERE id = $1`, f.building)

	nwJob := farmtest.Submit(t, p, f.alice, "devel", []string{"p9"}, srpm("newpkg-1-1.src.rpm"))
	f.nw = farmtest.Split(t, p, nwJob, "p9")[0]
	toolsJob := farmtest.Submit(t, p, f.bob, "secret", []string{"p9"}, srpm("tools-1.1-1.src.rpm"))
	f.tools = farmtest.Split(t, p, toolsJob, "p9")[0]
	helloJob := farmtest.Submit(t, p, f.alice, "devel", []string{"p9"}, srpm("hello-1.2-1.src.rpm"))
	f.hello = farmtest.Split(t, p, helloJob, "p9")[0]
	farmtest.Enqueue(t, p, f.tools)
	farmtest.Enqueue(t, p, f.hello)
	farmtest.Enqueue(t, p, f.nw)
	return f
}

func dbExec(t *testing.T, db *pgtest.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// etaRow is a row of kiln.task_eta with its times as minutes from now.
type etaRow struct {
	status          string
	position, ahead *int64
	slots, free     int64
	minutes         *float64 // estimated_duration
	basis           *string
	startIn, endIn  *float64
}

func readETA(t *testing.T, db *pgtest.DB, role, from string) map[int64]etaRow {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.URLAs(role))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT task_id, status, queue_position, ahead, slots, free_slots,
		extract(epoch FROM estimated_duration)::float8 / 60, duration_basis,
		extract(epoch FROM estimated_start - now())::float8 / 60, extract(epoch FROM estimated_end - now())::float8 / 60
		FROM `+from)
	if err != nil {
		t.Fatalf("as %s: reading %s: %v", role, from, err)
	}
	out := map[int64]etaRow{}
	for rows.Next() {
		var id int64
		var r etaRow
		if err := rows.Scan(&id, &r.status, &r.position, &r.ahead, &r.slots, &r.free, &r.minutes, &r.basis, &r.startIn, &r.endIn); err != nil {
			t.Fatal(err)
		}
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("as %s: reading %s: %v", role, from, err)
	}
	return out
}

func f64(v *float64) string {
	if v == nil {
		return "NULL"
	}
	return strconv.FormatFloat(math.Round(*v*10)/10, 'f', -1, 64)
}

func i64(v *int64) string {
	if v == nil {
		return "NULL"
	}
	return strconv.FormatInt(*v, 10)
}

func (r etaRow) String() string {
	basis := "NULL"
	if r.basis != nil {
		basis = *r.basis
	}
	return fmt.Sprintf("%s pos=%s ahead=%s slots=%d free=%d dur=%s basis=%s start=%s end=%s",
		r.status, i64(r.position), i64(r.ahead), r.slots, r.free, f64(r.minutes), basis, f64(r.startIn), f64(r.endIn))
}

// TestTaskETA checks the place in line and the estimates of kiln.task_eta
// against the sums worked out by hand, and that they follow River's order,
// not the order the tasks were created in.
func TestTaskETA(t *testing.T) {
	f := newETAFarm(t)
	got := readETA(t, f.db, f.bob, "kiln.task_eta")
	want := map[int64]string{
		// 2 slots, b1 holds one: the first in line starts now.
		f.tools: "pending pos=1 ahead=0 slots=2 free=1 dur=60 basis=package start=0 end=60",
		// (0 left of the late build + 60 of tools) / 2 slots = 30.
		f.hello: "pending pos=2 ahead=1 slots=2 free=1 dur=20 basis=package start=30 end=50",
		// (60 + 20) / 2 = 40; no earlier newpkg: the platform's median of 10, 20, 30, 60.
		f.nw: "pending pos=3 ahead=2 slots=2 free=1 dur=25 basis=platform start=40 end=65",
		// Started 2 h ago, the median of hello is 20 min.
		f.building: "building pos=NULL ahead=NULL slots=2 free=1 dur=20 basis=package start=-120 end=-100",
	}
	check(t, "bob", got, want)
	// The same rows computed for the platform alone, and none for
	// another platform or for none.
	check(t, "bob on p9", readETA(t, f.db, f.bob, "kiln.task_eta_on(ARRAY['p9'])"), want)
	for _, from := range []string{"kiln.task_eta_on(ARRAY['nowhere'])", "kiln.task_eta_on('{}')"} {
		if rows := readETA(t, f.db, f.bob, from); len(rows) != 0 {
			t.Errorf("%s has %d rows, want none", from, len(rows))
		}
	}
}

// TestTaskETAPrivate is the attack: alice (and the web, and a builder, and
// the janitor) must not learn bob's private task, nor its package's build
// times; alice still sees it counted, anonymously, ahead of hers.
func TestTaskETAPrivate(t *testing.T) {
	f := newETAFarm(t)
	alice := map[int64]string{
		f.hello:    "pending pos=2 ahead=1 slots=2 free=1 dur=20 basis=package start=30 end=50",
		f.nw:       "pending pos=3 ahead=2 slots=2 free=1 dur=25 basis=platform start=40 end=65",
		f.building: "building pos=NULL ahead=NULL slots=2 free=1 dur=20 basis=package start=-120 end=-100",
	}
	for _, from := range []string{"kiln.task_eta", "kiln.task_eta_rows()", "kiln.task_eta_on(NULL)", "kiln.task_eta_on(ARRAY['p9'])"} {
		check(t, "alice from "+from, readETA(t, f.db, f.alice, from), alice)
		check(t, "web from "+from, readETA(t, f.db, f.web, from), alice)
	}
	admin := readETA(t, f.db, f.admin, "kiln.task_eta")
	if len(admin) != 4 {
		t.Errorf("the admin reads %d tasks' estimates, want all 4", len(admin))
	}

	// A person who may read the bucket but did not submit: sees bob's task,
	// and its package's private build time.
	carol := farmtest.Person(t, f.db, "carol", "kiln_submitter")
	dbExec(t, f.db, `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('secret', $1)`, carol)
	if r, ok := readETA(t, f.db, carol, "kiln.task_eta")[f.tools]; !ok || f64(r.minutes) != "60" {
		t.Errorf("carol, granted the bucket, reads bob's task as %+v (present %v), want its 60 min", r, ok)
	}

	// Alice's own newpkg named like bob's private package: its build time
	// must not come from bob's private build of tools.
	job := farmtest.Submit(t, f.db.Pool, f.alice, "devel", []string{"p9"}, farmtest.File{Name: "tools-9-1.src.rpm", Data: []byte("alice's tools")})
	mine := farmtest.Split(t, f.db.Pool, job, "p9")[0]
	farmtest.Enqueue(t, f.db.Pool, mine)
	if r := readETA(t, f.db, f.alice, "kiln.task_eta")[mine]; f64(r.minutes) != "25" || r.basis == nil || *r.basis != "platform" {
		t.Errorf("alice's own tools is estimated at %s min (%v): bob's private build of tools shows through; want the platform's 25", f64(r.minutes), r.basis)
	}

	// Roles that are not people may not read estimates at all.
	builder := farmtest.Person(t, f.db, "bld", "kiln_builder")
	janitor := farmtest.Person(t, f.db, "jan", "kiln_janitor")
	for _, role := range []string{builder, janitor} {
		for _, from := range []string{"kiln.task_eta", "kiln.task_eta_rows()", "kiln.task_eta_on(ARRAY['p9'])"} {
			conn, err := pgx.Connect(context.Background(), f.db.URLAs(role))
			if err != nil {
				t.Fatal(err)
			}
			_, err = conn.Exec(context.Background(), "SELECT * FROM "+from)
			conn.Close(context.Background())
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("as %s: SELECT FROM %s: want permission denied, got %v", role, from, err)
			}
		}
	}
}

func check(t *testing.T, who string, got map[int64]etaRow, want map[int64]string) {
	t.Helper()
	for id, w := range want {
		r, ok := got[id]
		if !ok {
			t.Errorf("%s: task %d missing", who, id)
			continue
		}
		if s := r.String(); s != w {
			t.Errorf("%s: task %d:\n got %s\nwant %s", who, id, s, w)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("%s: reads task %d, which it must not", who, id)
		}
	}
}

// TestQueueFollowsRiver checks that kiln queue's place in line (report.GetQueue)
// is River's order, counts bob's private task ahead of alice's without
// showing it, and joins the estimate to why the task waits; and that a
// job's tasks (report.GetJob, for kiln show, kiln watch and the job page)
// carry the same.
func TestQueueFollowsRiver(t *testing.T) {
	f := newETAFarm(t)
	ctx := context.Background()
	db, err := pgxpool.New(ctx, f.db.URLAs(f.alice))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q, err := report.GetQueue(ctx, db, report.QueueFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, qt := range q.Tasks {
		got = append(got, fmt.Sprintf("%d ahead=%d: %s", qt.TaskID, qt.Ahead, qt.Why))
	}
	want := []string{
		fmt.Sprintf("%d ahead=1: 1 task is ahead of it on p9; starts in about 30m00s, done in about 50m00s", f.hello),
		fmt.Sprintf("%d ahead=2: 2 tasks are ahead of it on p9; starts in about 40m00s, done in about 1h05m", f.nw),
	}
	if !slices.Equal(got, want) {
		t.Errorf("alice's queue:\n got %q\nwant %q", got, want)
	}

	var jobID int64
	if err := f.db.Pool.QueryRow(ctx, "SELECT job_id FROM kiln.task WHERE id = $1", f.building).Scan(&jobID); err != nil {
		t.Fatal(err)
	}
	j, err := report.GetJob(ctx, db, jobID)
	if err != nil {
		t.Fatal(err)
	}
	if e := j.Tasks[0].ETA.Estimate(j.Tasks[0].Status); e != "running 1h40m past its estimate (from its last builds)" {
		t.Errorf("the building task's estimate: %q", e)
	}
}
