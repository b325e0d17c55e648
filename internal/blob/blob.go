// Package blob stores and fetches content-addressed bytes in PostgreSQL.
//
// A blob is identified by the SHA-256 of its content and kept as fixed-size
// chunks in kiln.blob_chunk, so files of any size stream in (COPY) and out
// (row by row) without being held in memory. Storing bytes that are already
// there is free: the chunks are written once.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ChunkSize is the size of every chunk but a blob's last.
const ChunkSize = 256 << 10

// Sum is a SHA-256 digest.
type Sum [32]byte

// String returns the digest in hex.
func (s Sum) String() string { return hex.EncodeToString(s[:]) }

// ParseSum reads a hex digest.
func ParseSum(s string) (Sum, error) {
	var out Sum
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(out) {
		return out, fmt.Errorf("%q is not a SHA-256 digest (64 hex digits)", s)
	}
	copy(out[:], b)
	return out, nil
}

// Info describes a stored blob.
type Info struct {
	Sum  Sum
	Size int64
	// New is true when this call stored the bytes, false when they were
	// already there.
	New bool
}

// DB is what the store needs from a connection or transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// ErrChanged means the content changed between hashing it and storing it.
var ErrChanged = errors.New("file changed while it was being stored")

// ErrCorrupt means stored chunks do not add up to the blob's digest or size.
var ErrCorrupt = errors.New("stored blob does not match its SHA-256")

// Put stores the content of r, reading it twice: once to hash it, once to
// copy it in (skipped when the blob is already stored). Run it in the
// transaction that also stores what refers to the blob, so an aborted
// transaction leaves nothing behind. verified marks the blob as checked by a
// trusted process (builders storing what they built).
func Put(ctx context.Context, db DB, r io.ReadSeeker, verified bool) (Info, error) {
	h := sha256.New()
	size, err := io.Copy(h, r)
	if err != nil {
		return Info{}, fmt.Errorf("hashing: %w", err)
	}
	var info Info
	copy(info.Sum[:], h.Sum(nil))
	info.Size = size

	// Name verified_at only when setting it: submitters may not insert it.
	insert := `INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING`
	if verified {
		insert = `INSERT INTO kiln.blob (sha256, size, chunk_size, verified_at) VALUES ($1, $2, $3, now()) ON CONFLICT (sha256) DO NOTHING`
	}
	tag, err := db.Exec(ctx, insert, info.Sum[:], size, ChunkSize)
	if err != nil {
		return Info{}, fmt.Errorf("storing blob %s: %w", info.Sum, err)
	}
	if tag.RowsAffected() == 0 {
		return info, nil // already stored
	}
	info.New = true
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return Info{}, fmt.Errorf("rewinding: %w", err)
	}
	src := &chunkSource{r: r, sum: info.Sum, h: sha256.New(), buf: make([]byte, ChunkSize)}
	if _, err := db.CopyFrom(ctx, pgx.Identifier{"kiln", "blob_chunk"}, []string{"sha256", "seq", "data"}, src); err != nil {
		if errors.Is(err, ErrChanged) || errors.Is(src.err, ErrChanged) {
			return Info{}, ErrChanged
		}
		return Info{}, fmt.Errorf("storing chunks of %s: %w", info.Sum, err)
	}
	if src.n != size || [32]byte(src.h.Sum(nil)) != info.Sum {
		return Info{}, ErrChanged
	}
	return info, nil
}

// PutFile stores the file at path.
func PutFile(ctx context.Context, db DB, path string, verified bool) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	info, err := Put(ctx, db, f, verified)
	if err != nil {
		return Info{}, fmt.Errorf("storing %s: %w", path, err)
	}
	return info, nil
}

// chunkSource feeds COPY one chunk at a time, hashing as it goes.
type chunkSource struct {
	r   io.Reader
	sum Sum
	h   hash.Hash
	buf []byte
	seq int32
	n   int64
	cur []byte
	err error
}

func (s *chunkSource) Next() bool {
	n, err := io.ReadFull(s.r, s.buf)
	if n == 0 {
		if err != nil && err != io.EOF {
			s.err = err
		}
		return false
	}
	if err != nil && err != io.ErrUnexpectedEOF {
		s.err = err
		return false
	}
	s.cur = s.buf[:n]
	s.h.Write(s.cur)
	s.n += int64(n)
	return true
}

func (s *chunkSource) Values() ([]any, error) {
	v := []any{s.sum[:], s.seq, s.cur}
	s.seq++
	return v, nil
}

func (s *chunkSource) Err() error { return s.err }

// Stat returns a stored blob's size and whether it was verified.
func Stat(ctx context.Context, db DB, sum Sum) (size int64, verified bool, err error) {
	err = db.QueryRow(ctx, "SELECT size, verified_at IS NOT NULL FROM kiln.blob WHERE sha256 = $1", sum[:]).Scan(&size, &verified)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, fmt.Errorf("blob %s is not stored", sum)
	}
	return size, verified, err
}

// WriteTo streams a blob into w, checking its size and digest on the way. On
// ErrCorrupt the bytes already written must be discarded.
func WriteTo(ctx context.Context, db DB, sum Sum, w io.Writer) (int64, error) {
	size, _, err := Stat(ctx, db, sum)
	if err != nil {
		return 0, err
	}
	rows, err := db.Query(ctx, "SELECT seq, data FROM kiln.blob_chunk WHERE sha256 = $1 ORDER BY seq", sum[:])
	if err != nil {
		return 0, fmt.Errorf("reading blob %s: %w", sum, err)
	}
	defer rows.Close()
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	var n int64
	var want int32
	for rows.Next() {
		var seq int32
		var data []byte
		if err := rows.Scan(&seq, &data); err != nil {
			return n, fmt.Errorf("reading blob %s: %w", sum, err)
		}
		if seq != want {
			return n, fmt.Errorf("blob %s: chunk %d missing: %w", sum, want, ErrCorrupt)
		}
		want++
		m, err := mw.Write(data)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("reading blob %s: %w", sum, err)
	}
	if n != size || [32]byte(h.Sum(nil)) != sum {
		return n, fmt.Errorf("blob %s: %d bytes read of %d: %w", sum, n, size, ErrCorrupt)
	}
	return n, nil
}

// WriteFile writes a blob to path (created with mode 0644, never following
// a symlink there), removing the file again if the blob is corrupt.
func WriteFile(ctx context.Context, db DB, sum Sum, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = WriteTo(ctx, db, sum, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// Verify re-reads a stored blob and checks it hashes to its name; on success
// it records verified_at (the role needs UPDATE on that column).
func Verify(ctx context.Context, db DB, sum Sum) error {
	if _, err := WriteTo(ctx, db, sum, io.Discard); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, "UPDATE kiln.blob SET verified_at = now() WHERE sha256 = $1 AND verified_at IS NULL", sum[:]); err != nil {
		return fmt.Errorf("marking blob %s verified: %w", sum, err)
	}
	return nil
}
