package submit_test

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// BenchmarkUploadVsCopy submits 200 MB of packages (four 50 MB files) and,
// in the same run and database, COPYs the same bytes into a plain bytea
// table in 256 KiB rows (blob.ChunkSize), and reports both throughputs and
// their ratio. Submit reads every file twice (to hash it, then to copy it)
// and commits a job; the COPY is the floor it is measured against. Run with
// -benchtime=Nx (an iteration moves 400 MB; make bench runs 4, the two
// sides taking turns to go first).
func BenchmarkUploadVsCopy(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	alice := "alice_" + db.Name
	if _, err := db.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN IN ROLE kiln_submitter;
		INSERT INTO kiln.bucket (name, open) VALUES ('devel', true);
		CREATE TABLE public.bench_copy (seq int, data bytea);
		ALTER TABLE public.bench_copy ALTER COLUMN data SET STORAGE EXTERNAL;
		GRANT INSERT ON public.bench_copy TO %s`, alice, alice)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Pool.Exec(context.Background(), "DROP TABLE public.bench_copy; DROP ROLE "+alice) })
	pool, err := pgxpool.New(ctx, db.URLAs(alice))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	c, _ := submit.New(pool)

	dir := b.TempDir()
	var files []string
	const size = 50 << 20
	var total int64
	for i := 0; i < 4; i++ {
		p := filepath.Join(dir, fmt.Sprintf("big%d-1.0-1.src.rpm", i))
		data := make([]byte, size)
		rand.New(rand.NewSource(int64(i))).Read(data)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		files = append(files, p)
		total += size
	}
	iter := 0
	// upload submits the files once, with new content (or deduplication
	// skips the upload); plain COPYs the same bytes.
	upload := func() time.Duration {
		for _, p := range files {
			f, _ := os.OpenFile(p, os.O_WRONLY, 0)
			fmt.Fprintf(f, "iteration %d", iter)
			f.Close()
		}
		iter++
		start := time.Now()
		if _, err := c.Submit(ctx, submit.Request{Bucket: "devel", Files: files}); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	plain := func() time.Duration {
		start := time.Now()
		tx, _ := pool.Begin(ctx)
		for _, p := range files {
			if err := copyFile(ctx, tx, p); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	// Each side starts from a checkpoint, so that neither pays for one
	// the other's WAL started, and they take turns going first: the
	// first writes of a run (new WAL segments, the tables' first pages)
	// fall on both alike. A round of both first warms the cluster.
	checkpoint := func() {
		if _, err := db.Pool.Exec(ctx, "CHECKPOINT"); err != nil {
			b.Fatal(err)
		}
	}
	checkpoint()
	upload()
	plain()
	sides := [2]func() time.Duration{upload, plain}
	var took [2]time.Duration // the upload's, the COPY's
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range sides {
			side := (i + k) % 2
			checkpoint()
			took[side] += sides[side]()
		}
	}
	submitTime, copyTime := took[0], took[1]
	b.StopTimer()
	mb := float64(total) * float64(b.N) / (1 << 20)
	b.ReportMetric(mb/submitTime.Seconds(), "submit-MB/s")
	b.ReportMetric(mb/copyTime.Seconds(), "copy-MB/s")
	b.ReportMetric(submitTime.Seconds()/copyTime.Seconds(), "submit/copy-time")
}

// copyFile COPYs a file into bench_copy in blob-sized rows.
func copyFile(ctx context.Context, tx pgx.Tx, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, blob.ChunkSize)
	seq := 0
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"public", "bench_copy"}, []string{"seq", "data"}, pgx.CopyFromFunc(func() ([]any, error) {
		n, err := io.ReadFull(f, buf)
		if n == 0 {
			if err == io.EOF {
				return nil, nil
			}
			return nil, err
		}
		seq++
		return []any{seq, buf[:n]}, nil
	}))
	return err
}
