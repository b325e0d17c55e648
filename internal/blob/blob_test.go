package blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/pgtest"
)

func TestPutAndReadBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	for _, size := range []int{0, 1, blob.ChunkSize - 1, blob.ChunkSize, blob.ChunkSize + 1, 3*blob.ChunkSize + 17} {
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
