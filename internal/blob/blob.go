// Package blob stores and fetches content-addressed bytes in PostgreSQL.
//
// A blob is identified by the SHA-256 of its content and kept as fixed-size
// chunks in kiln.blob_chunk, so files of any size stream in and out (row by
// row) without being held in memory. Storing bytes that are already there
// and verified is free: the chunks are written once.
//
// Stored bytes never change: chunks are accepted only in the transaction
// that stored the blob row (a trigger). An upload never relies on bytes it
// cannot trust: it reuses a blob only when the blob is verified or stored by
// the same role, and otherwise stores its own copy, under the SHA-256 when
// that is free, or staged under a random key that records the SHA-256 the
// content should have (kiln.blob.content_sha256). See docs/schema.md.
package blob

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
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
	// Sum is the blob's key, what packages and artifacts refer to: the
	// content's SHA-256, or a random key when the upload was staged.
	Sum Sum
	// Digest is the content's SHA-256.
	Digest Sum
	Size   int64
	// New is true when this call stored the bytes, false when it reused a
	// stored blob.
	New bool
}

// Staged reports whether the bytes were stored under a random key because
// another, unusable blob had their SHA-256.
func (i Info) Staged() bool { return i.Sum != i.Digest }

// DB is what the store needs from a connection or transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

// ErrChanged means the content changed between hashing it and storing it.
var ErrChanged = errors.New("file changed while it was being stored")

// ErrCorrupt means stored chunks do not add up to the blob's digest or size.
var ErrCorrupt = errors.New("stored blob does not match its SHA-256")

// Put stores the content of r, reading it twice: once to hash it, once to
// store it (skipped when a usable blob holds it already). Run it in the
// transaction that also stores what refers to the blob (Info.Sum), so an
// aborted transaction leaves nothing behind; it works in a transaction (a
// savepoint) of its own, since a blob's chunks are accepted only in the
// transaction that stored the blob.
//
// verified marks the blob as checked by a trusted process (a builder storing
// what it built; only such roles may set it). A stored blob is reused when
// the session may read it and it is verified or, for an unverified upload,
// was stored by the same role. Otherwise the bytes are stored under their
// SHA-256 if no blob has it, or else staged under a random key: an
// unverified blob of someone else's (perhaps garbage planted under that
// SHA-256) is never trusted, and one the session may not read is never
// exposed to it.
func Put(ctx context.Context, db DB, r io.ReadSeeker, verified bool) (Info, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("storing a blob: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	info, err := put(ctx, tx, r, verified)
	if err != nil {
		return Info{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Info{}, fmt.Errorf("storing blob %s: %w", info.Digest, err)
	}
	return info, nil
}

// Hash reads r to its end and returns its SHA-256 and size: what PutHashed
// needs, computed ahead (while another file uploads, say).
func Hash(r io.Reader) (Sum, int64, error) {
	h := sha256.New()
	size, err := io.Copy(h, r)
	if err != nil {
		return Sum{}, 0, fmt.Errorf("hashing: %w", err)
	}
	return Sum(h.Sum(nil)), size, nil
}

// PutHashed is Put for content whose SHA-256 and size were computed
// before (Hash): r, at its start, is read once, to store it, and hashed
// again on the way (ErrChanged when it no longer matches).
func PutHashed(ctx context.Context, db DB, r io.Reader, digest Sum, size int64, verified bool) (Info, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("storing a blob: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	info, err := putHashed(ctx, tx, r, Info{Digest: digest, Size: size}, verified)
	if err != nil {
		return Info{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Info{}, fmt.Errorf("storing blob %s: %w", info.Digest, err)
	}
	return info, nil
}

func put(ctx context.Context, db pgx.Tx, r io.ReadSeeker, verified bool) (Info, error) {
	digest, size, err := Hash(r)
	if err != nil {
		return Info{}, err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return Info{}, fmt.Errorf("rewinding: %w", err)
	}
	return putHashed(ctx, db, r, Info{Digest: digest, Size: size}, verified)
}

// putHashed stores r, at its start, whose digest and size info holds,
// unless a usable blob holds it already.
func putHashed(ctx context.Context, db pgx.Tx, r io.Reader, info Info, verified bool) (Info, error) {
	size := info.Size
	var key []byte
	err := db.QueryRow(ctx, `SELECT sha256 FROM kiln.blob
		WHERE (sha256 = $1 AND content_sha256 IS NULL OR content_sha256 = $1) AND size = $2
		  AND (verified_at IS NOT NULL OR (NOT $3 AND created_by = session_user))
		ORDER BY verified_at IS NULL, created_at LIMIT 1`, info.Digest[:], size, verified).Scan(&key)
	switch {
	case err == nil:
		copy(info.Sum[:], key)
		return info, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return Info{}, fmt.Errorf("looking up blob %s: %w", info.Digest, err)
	}

	// Only trusted roles may set verified_at, so people's uploads leave the
	// column out altogether.
	verifiedCol, verifiedVal := "", ""
	if verified {
		verifiedCol, verifiedVal = ", verified_at", ", now()"
	}
	info.Sum = info.Digest
	tag, err := db.Exec(ctx, `INSERT INTO kiln.blob (sha256, size, chunk_size`+verifiedCol+`)
		VALUES ($1, $2, $3`+verifiedVal+`) ON CONFLICT (sha256) DO NOTHING`, info.Sum[:], size, ChunkSize)
	if err != nil {
		return Info{}, fmt.Errorf("storing blob %s: %w", info.Digest, err)
	}
	if tag.RowsAffected() == 0 {
		if _, err := rand.Read(info.Sum[:]); err != nil {
			return Info{}, fmt.Errorf("choosing a staging key: %w", err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO kiln.blob (sha256, size, chunk_size, content_sha256`+verifiedCol+`)
			VALUES ($1, $2, $3, $4`+verifiedVal+`)`, info.Sum[:], size, ChunkSize, info.Digest[:]); err != nil {
			return Info{}, fmt.Errorf("staging blob %s: %w", info.Digest, err)
		}
	}
	info.New = true
	if err := storeChunks(ctx, db, info, r); err != nil {
		return Info{}, err
	}
	return info, nil
}

// chunksInFlight is how many chunks are sent ahead of the server's answers
// when storing: enough to keep reading and hashing the next chunks while
// the server stores the earlier ones, few enough to bound what the
// connection buffers.
const chunksInFlight = 4

// insertChunk stores one chunk. Not COPY: PostgreSQL refuses COPY FROM into
// a table with row-level security (kiln.blob_chunk has it), so chunks are
// INSERTed, pipelined so that the upload streams much as COPY does.
const insertChunk = `INSERT INTO kiln.blob_chunk (sha256, seq, data) VALUES ($1, $2, $3)`

var (
	chunkOIDs    = []uint32{pgtype.ByteaOID, pgtype.Int4OID, pgtype.ByteaOID}
	chunkFormats = []int16{pgtype.BinaryFormatCode, pgtype.BinaryFormatCode, pgtype.BinaryFormatCode}
)

// storeChunks writes the content of r as the chunks of blob info.Sum,
// hashing it again on the way: content that no longer matches info is
// ErrChanged. It drives the connection in pipeline mode: each chunk is sent
// as soon as it is read, and its answer is awaited only chunksInFlight
// chunks later, so reading the file and storing it overlap.
func storeChunks(ctx context.Context, tx pgx.Tx, info Info, r io.Reader) error {
	pipe := tx.Conn().PgConn().StartPipeline(ctx)
	err := sendChunks(pipe, info, r)
	// Close waits for the answers still due; the first error is the one
	// that says what went wrong.
	if cerr := pipe.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("storing chunks of %s: %w", info.Digest, cerr)
	}
	return err
}

func sendChunks(pipe *pgconn.Pipeline, info Info, r io.Reader) error {
	buf := make([]byte, ChunkSize)
	var seq [4]byte
	h := sha256.New()
	var n int64
	pending := 0
	for i := uint32(0); ; i++ {
		m, err := io.ReadFull(r, buf)
		if m > 0 {
			h.Write(buf[:m])
			n += int64(m)
			binary.BigEndian.PutUint32(seq[:], i)
			// The chunk is copied into the connection's send buffer here,
			// so buf is free again once Sync returns.
			pipe.SendQueryParams(insertChunk, [][]byte{info.Sum[:], seq[:], buf[:m]}, chunkOIDs, chunkFormats, nil)
			if err := pipe.Sync(); err != nil {
				return fmt.Errorf("storing chunks of %s: %w", info.Digest, err)
			}
			pending++
			for ; pending > chunksInFlight; pending-- {
				if err := chunkStored(pipe); err != nil {
					return fmt.Errorf("storing chunks of %s: %w", info.Digest, err)
				}
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading: %w", err)
		}
	}
	for ; pending > 0; pending-- {
		if err := chunkStored(pipe); err != nil {
			return fmt.Errorf("storing chunks of %s: %w", info.Digest, err)
		}
	}
	if n != info.Size || [32]byte(h.Sum(nil)) != info.Digest {
		return ErrChanged
	}
	return nil
}

// chunkStored reads the answer to the oldest chunk sent: its INSERT's
// result, then its synchronization point.
func chunkStored(pipe *pgconn.Pipeline) error {
	res, err := pipe.GetResults()
	if err != nil {
		return err
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return fmt.Errorf("pipeline: got %T, want an INSERT's result", res)
	}
	if _, err := rr.Close(); err != nil {
		return err
	}
	if res, err = pipe.GetResults(); err != nil {
		return err
	}
	if _, ok := res.(*pgconn.PipelineSync); !ok {
		return fmt.Errorf("pipeline: got %T, want a synchronization point", res)
	}
	return nil
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

// Stat returns a stored blob's size and whether it was verified.
func Stat(ctx context.Context, db DB, sum Sum) (size int64, verified bool, err error) {
	size, verified, _, err = stat(ctx, db, sum)
	return size, verified, err
}

// stat also returns the digest the blob's content must have.
func stat(ctx context.Context, db DB, sum Sum) (size int64, verified bool, digest Sum, err error) {
	var d []byte
	err = db.QueryRow(ctx, "SELECT size, verified_at IS NOT NULL, coalesce(content_sha256, sha256) FROM kiln.blob WHERE sha256 = $1",
		sum[:]).Scan(&size, &verified, &d)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, digest, fmt.Errorf("blob %s is not stored", sum)
	}
	copy(digest[:], d)
	return size, verified, digest, err
}

// WriteTo streams a blob into w, checking its size and digest on the way. On
// ErrCorrupt the bytes already written must be discarded.
//
// The blob's row and its chunks come in one query (one round trip): each
// row carries the size and digest, and a blob without chunks is one row
// whose seq is NULL.
func WriteTo(ctx context.Context, db DB, sum Sum, w io.Writer) (int64, error) {
	rows, err := db.Query(ctx, `SELECT b.size, coalesce(b.content_sha256, b.sha256), c.seq, c.data
		FROM kiln.blob b LEFT JOIN kiln.blob_chunk c ON c.sha256 = b.sha256
		WHERE b.sha256 = $1 ORDER BY c.seq`, sum[:])
	if err != nil {
		return 0, fmt.Errorf("reading blob %s: %w", sum, err)
	}
	defer rows.Close()
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	var (
		n, size int64
		digest  []byte
		want    int32
		found   bool
	)
	for rows.Next() {
		found = true
		var seq *int32
		var data []byte
		if err := rows.Scan(&size, &digest, &seq, &data); err != nil {
			return n, fmt.Errorf("reading blob %s: %w", sum, err)
		}
		if seq == nil {
			continue // no chunks
		}
		if *seq != want {
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
	if !found {
		return 0, fmt.Errorf("blob %s is not stored", sum)
	}
	if n != size || len(digest) != len(Sum{}) || [32]byte(h.Sum(nil)) != Sum(digest) {
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

// Verify re-reads a stored blob and checks it hashes to its SHA-256 (the one
// it claims, for a staged blob); on success it records verified_at (the role
// needs UPDATE on that column: the splitter).
func Verify(ctx context.Context, db DB, sum Sum) error {
	if _, err := WriteTo(ctx, db, sum, io.Discard); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, "UPDATE kiln.blob SET verified_at = now() WHERE sha256 = $1 AND verified_at IS NULL", sum[:]); err != nil {
		return fmt.Errorf("marking blob %s verified: %w", sum, err)
	}
	return nil
}
