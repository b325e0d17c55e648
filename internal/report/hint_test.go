package report_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// forge sends NOTIFYs as a role of the attacker's own (PostgreSQL lets
// every role NOTIFY on any channel).
func forge(t *testing.T, f *farmtest.Farm, notes ...[2]string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.DB.URLAs(farmtest.Person(t, f.DB, "mallory", "kiln_reader")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, n := range notes {
		if _, err := conn.Exec(ctx, "SELECT pg_notify($1, $2)", n[0], n[1]); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFollowJobTakesNotifyAsAHint: forged notifications claiming the job
// succeeded make kiln watch (FollowJob) read the job again, nothing more:
// it never sees a status the job did not have, and ends when the job
// really ends.
func TestFollowJobTakesNotifyAsAHint(t *testing.T) {
	t.Parallel()
	f := farmtest.Seed(t, pgtest.New(t))
	p := f.DB.Pool
	job := f.Jobs["building"]
	fl := follow(t, f, job, 0)
	fl.next(t, "building")
	forge(t, f,
		[2]string{"kiln_job", fmt.Sprintf(`{"job": %d, "status": "succeeded"}`, job)},
		[2]string{"kiln_task", fmt.Sprintf(`{"job": %d, "task": 1, "status": "succeeded"}`, job)},
		[2]string{"kiln_job", `{"job": "not a number"}`},
		[2]string{"kiln_job", `garbage`})
	fl.next(t, "building") // read again after the forged ones, still building
	farmtest.Cancel(t, p, f.Alice, job)
	if err := <-fl.done; err != nil || fl.last.Status != "cancelled" {
		t.Fatalf("FollowJob = %+v, %v; want the job as it really ended", fl.last, err)
	}
	for {
		select {
		case j := <-fl.seen:
			if j.Status == "succeeded" {
				t.Errorf("FollowJob saw the forged status succeeded")
			}
			continue
		default:
		}
		break
	}
}

// TestFollowLogTakesNotifyAsAHint: a forged log notification naming the
// followed task with a newer attempt and a far seq, and one naming a
// private task, make kiln log -f read again with the person's own rights:
// it prints only the log as stored, never the private one.
func TestFollowLogTakesNotifyAsAHint(t *testing.T) {
	t.Parallel()
	f := farmtest.Seed(t, pgtest.New(t))
	p := f.DB.Pool
	ctx := context.Background()
	if _, err := p.Exec(ctx, `INSERT INTO kiln.bucket (name, private) VALUES ('embargo', true)`); err != nil {
		t.Fatal(err)
	}
	private := farmtest.Submit(t, p, f.Bob, "embargo", []string{farmtest.EL9}, farmtest.File{Name: "fix-1-1.src.rpm", Data: []byte("fix")})
	ptask := farmtest.Split(t, p, private, farmtest.EL9)[0]
	pa := farmtest.Take(t, p, ptask, "b2")
	farmtest.Log(t, p, ptask, pa, 0, "embargoed\n")

	task := f.Tasks["building/"+farmtest.EL9]
	watcher := farmtest.Person(t, f.DB, "watcher", "kiln_submitter")
	pool, err := pgxpool.New(ctx, f.DB.URLAs(watcher))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	printed := make(chan string, 100)
	done := make(chan error, 1)
	go func() {
		_, err := report.FollowLog(ctx, pool, task, report.LogFollow{Chunks: func(cs []report.LogChunk) error {
			for _, c := range cs {
				printed <- c.Data
			}
			return nil
		}})
		done <- err
	}()
	first := <-printed // the batches stored before; following now
	forge(t, f,
		[2]string{"kiln_log", fmt.Sprintf(`{"task": %d, "attempt": 7, "seq": 99}`, task)},
		[2]string{"kiln_log", fmt.Sprintf(`{"task": %d, "attempt": %d, "seq": 0}`, ptask, pa)},
		[2]string{"kiln_task", fmt.Sprintf(`{"job": %d, "task": %d, "status": "succeeded"}`, f.Jobs["building"], task)})
	farmtest.Log(t, p, task, 1, 9, "the real last line\n")
	farmtest.Finish(t, p, task, 1, "failed", "exit 1")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(printed)
	all := first
	for s := range printed {
		all += s
	}
	if strings.Contains(all, "embargoed") || !strings.HasSuffix(all, "the real last line\n") {
		t.Errorf("FollowLog printed %q", all)
	}
}
