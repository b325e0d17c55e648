package split_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/internal/testsupport/benchstat"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// BenchmarkSubmitToQueued measures the latency from submit's commit to the
// job's tasks being queued, with the splitter running as kiln-splitter runs
// it (River's default polling; the commit's NOTIFY wakes it). Run with
// -benchtime=1x: every iteration is 200 submissions, one after the other,
// and the p50 and p99 are reported.
func BenchmarkSubmitToQueued(b *testing.B) {
	bb := setup(b)
	ctx := context.Background()
	srpm := testpkg.SRPM(b, testpkg.Spec{Name: "hello"})
	rc := bb.startSplitter(b)
	defer rc.Stop(ctx)
	conn, err := bb.db.Pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN kiln_job"); err != nil {
		b.Fatal(err)
	}
	const n = 200
	var all []time.Duration
	b.ResetTimer()
	for iter := 0; iter < b.N; iter++ {
		for i := 0; i < n; i++ {
			res, err := bb.submitter.Submit(ctx, submit.Request{Bucket: "devel", Platforms: []string{"el9-x86_64"}, Files: []string{srpm}, Key: fmt.Sprintf("bench-%d-%d", iter, i)})
			if err != nil {
				b.Fatal(err)
			}
			committed := time.Now()
			for {
				wctx, cancel := context.WithTimeout(ctx, time.Minute)
				note, err := conn.Conn().WaitForNotification(wctx)
				cancel()
				if err != nil {
					b.Fatalf("waiting for job %d: %v", res.JobID, err)
				}
				// The payload names the job only (docs/security.md): read
				// its status.
				var msg struct {
					Job int64 `json:"job"`
				}
				json.Unmarshal([]byte(note.Payload), &msg)
				if msg.Job != res.JobID {
					continue
				}
				var status string
				if err := bb.db.Pool.QueryRow(ctx, "SELECT status FROM kiln.job WHERE id = $1", msg.Job).Scan(&status); err != nil {
					b.Fatal(err)
				}
				if status != "submitted" {
					if status != "queued" {
						b.Fatalf("job %d became %s", res.JobID, status)
					}
					break
				}
			}
			all = append(all, time.Since(committed))
		}
	}
	b.StopTimer()
	benchstat.Report(b, "", all, 50, 99)
	b.ReportMetric(benchstat.Ms(slices.Max(all)), "max-ms")
}
