package blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

func TestPutAndReadBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	for _, size := range []int{0, 1, blob.ChunkSize - 1, blob.ChunkSize, blob.ChunkSize + 1, 3*blob.ChunkSize + 17, 20*blob.ChunkSize + 5} {
		data := make([]byte, size)
		rand.New(rand.NewSource(int64(size))).Read(data)
		info, err := blob.Put(ctx, db.Pool, bytes.NewReader(data), false)
		if err != nil {
			t.Fatalf("Put(%d bytes): %v", size, err)
		}
		if info.Sum != sha256.Sum256(data) || info.Size != int64(size) || !info.New {
			t.Fatalf("Put(%d bytes) = %+v", size, info)
		}
		var out bytes.Buffer
		if _, err := blob.WriteTo(ctx, db.Pool, info.Sum, &out); err != nil {
			t.Fatalf("WriteTo: %v", err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("read back %d bytes differ", size)
		}
		again, err := blob.Put(ctx, db.Pool, bytes.NewReader(data), false)
		if err != nil || again.New {
			t.Fatalf("second Put: %+v, %v; want deduplicated", again, err)
		}
		var chunks int
		if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM kiln.blob_chunk WHERE sha256 = $1", info.Sum[:]).Scan(&chunks); err != nil {
			t.Fatal(err)
		}
		if want := (size + blob.ChunkSize - 1) / blob.ChunkSize; chunks != want {
			t.Fatalf("%d bytes stored as %d chunks, want %d", size, chunks, want)
		}
	}
}

func TestCorruptBlobIsDetected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	data := bytes.Repeat([]byte("kiln"), blob.ChunkSize)
	info, err := blob.Put(ctx, db.Pool, bytes.NewReader(data), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := blob.Verify(ctx, db.Pool, info.Sum); err != nil {
		t.Fatalf("Verify of intact blob: %v", err)
	}
	if _, err := db.Pool.Exec(ctx, "UPDATE kiln.blob_chunk SET data = 'evil' WHERE sha256 = $1 AND seq = 1", info.Sum[:]); err != nil {
		t.Fatal(err)
	}
	if err := blob.Verify(ctx, db.Pool, info.Sum); !errors.Is(err, blob.ErrCorrupt) {
		t.Fatalf("Verify of tampered blob: %v, want ErrCorrupt", err)
	}
	path := filepath.Join(t.TempDir(), "out")
	if err := blob.WriteFile(ctx, db.Pool, info.Sum, path); !errors.Is(err, blob.ErrCorrupt) {
		t.Fatalf("WriteFile of tampered blob: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("WriteFile left a corrupt file behind: %v", err)
	}
}

// growingReader returns different content on its second pass, like a file
// being written while it is submitted.
type growingReader struct {
	*bytes.Reader
	passes int
}

func (g *growingReader) Seek(off int64, whence int) (int64, error) {
	g.passes++
	g.Reader = bytes.NewReader([]byte("different content entirely"))
	return 0, nil
}

func TestPutDetectsChangeBetweenPasses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	_, err = blob.Put(ctx, tx, &growingReader{Reader: bytes.NewReader([]byte("original"))}, false)
	if !errors.Is(err, blob.ErrChanged) {
		t.Fatalf("Put of a changing file: %v, want ErrChanged", err)
	}
}

// failingReader fails its second pass (storing) after limit bytes, like a
// disk going bad under a file being submitted.
type failingReader struct {
	*bytes.Reader
	data    []byte
	limit   int
	storing bool
}

var errDisk = errors.New("input/output error")

func (f *failingReader) Seek(off int64, whence int) (int64, error) {
	f.storing = true
	f.Reader = bytes.NewReader(f.data[:f.limit])
	return 0, nil
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.Reader.Read(p)
	if f.storing && err == io.EOF {
		err = errDisk
	}
	return n, err
}

// putFailsMidway checks that a Put that fails while its chunks are under
// way says why, stores nothing, and leaves the caller's transaction and
// connection usable: a later Put in it stores its blob.
func putFailsMidway(t *testing.T, pool *pgxpool.Pool, r io.ReadSeeker, check func(error)) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	_, err = blob.Put(ctx, tx, r, false)
	check(err)
	var blobs, chunks int
	if err := tx.QueryRow(ctx, "SELECT (SELECT count(*) FROM kiln.blob), (SELECT count(*) FROM kiln.blob_chunk)").Scan(&blobs, &chunks); err != nil {
		t.Fatalf("the transaction is unusable after the failed Put: %v", err)
	}
	if blobs+chunks != 0 {
		t.Fatalf("the failed Put left %d blobs and %d chunks", blobs, chunks)
	}
	data := []byte("after the failure")
	info, err := blob.Put(ctx, tx, bytes.NewReader(data), false)
	if err != nil {
		t.Fatalf("Put after the failed one: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := blob.WriteTo(ctx, pool, info.Sum, &out); err != nil || out.String() != string(data) {
		t.Fatalf("read back %q, %v", out.String(), err)
	}
}

// TestPutChunkRefusedMidway: the server refusing a chunk while later ones
// are already sent (pipelined) fails the Put with the server's error.
func TestPutChunkRefusedMidway(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	if _, err := db.Pool.Exec(ctx, `CREATE FUNCTION public.refuse_chunk() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.seq = 9 THEN RAISE EXCEPTION 'chunk 9 refused'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_chunk BEFORE INSERT ON kiln.blob_chunk FOR EACH ROW EXECUTE FUNCTION public.refuse_chunk()`); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 16*blob.ChunkSize)
	rand.New(rand.NewSource(9)).Read(data)
	putFailsMidway(t, db.Pool, bytes.NewReader(data), func(err error) {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Message != "chunk 9 refused" {
			t.Fatalf("Put with chunk 9 refused: %v, want the trigger's error", err)
		}
	})
}

// TestPutReadFailsMidway: a file that cannot be read to its end while its
// chunks are being stored fails the Put with the read error.
func TestPutReadFailsMidway(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	data := make([]byte, 16*blob.ChunkSize)
	rand.New(rand.NewSource(10)).Read(data)
	r := &failingReader{Reader: bytes.NewReader(data), data: data, limit: 11*blob.ChunkSize + 100}
	putFailsMidway(t, db.Pool, r, func(err error) {
		if !errors.Is(err, errDisk) || !strings.Contains(err.Error(), "reading") {
			t.Fatalf("Put of a file failing midway: %v, want the read error", err)
		}
	})
}
