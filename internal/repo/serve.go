package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/blob"
)

// ErrNotFound means no such file is served (or the reader may not see it).
var ErrNotFound = errors.New("no such repository file")

var (
	validBucket = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	validPath   = regexp.MustCompile(`^[A-Za-z0-9_+~][A-Za-z0-9_.+~=-]*(/[A-Za-z0-9_+~][A-Za-z0-9_.+~=-]*)*$`)
)

// Address is a file's place under /repos/: BUCKET/[snapshots/SEQ/]PLATFORM/PATH.
type Address struct {
	Bucket   string
	Seq      int // 0: the served snapshot
	Platform string
	Path     string
}

// ParseAddress reads the part of a URL after /repos/. Anything that is not
// a plain relative path of safe names (no .., no empty or dot segments, no
// backslashes or encoded separators) is refused.
func ParseAddress(s string) (Address, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 3 || !validBucket.MatchString(parts[0]) {
		return Address{}, ErrNotFound
	}
	a := Address{Bucket: parts[0]}
	rest := parts[1:]
	if rest[0] == "snapshots" {
		n, err := strconv.Atoi(rest[1])
		if err != nil || n < 1 || strconv.Itoa(n) != rest[1] || len(rest) < 4 {
			return Address{}, ErrNotFound
		}
		a.Seq, rest = n, rest[2:]
	}
	a.Platform, a.Path = rest[0], strings.Join(rest[1:], "/")
	if !validBucket.MatchString(a.Platform) || !validPath.MatchString(a.Path) || strings.Contains(a.Path, "..") || len(a.Path) > 1000 {
		return Address{}, ErrNotFound
	}
	return a, nil
}

// Immutable reports whether the file at a never changes: everything in a
// numbered snapshot, and in the served one every file named by its content
// (packages, by-hash indexes, rpm-md's checksum-named repodata).
func (a Address) Immutable() bool {
	if a.Seq > 0 {
		return true
	}
	switch {
	case strings.HasPrefix(a.Path, "pool/"), strings.HasPrefix(a.Path, "Packages/"), strings.Contains(a.Path, "/by-hash/"):
		return true
	case strings.HasPrefix(a.Path, "repodata/"):
		return !strings.HasPrefix(a.Path, "repodata/repomd.xml")
	}
	return false
}

// Stored is a served file's blob.
type Stored struct {
	Sum       blob.Sum
	Size      int64
	ChunkSize int64
}

// Querier is what reading needs from a pool, connection or transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Lookup finds a file under the session's own rights (row-level security
// hides private buckets it may not read).
func Lookup(ctx context.Context, db Querier, a Address) (Stored, error) {
	var st Stored
	var sum []byte
	var err error
	if a.Seq == 0 {
		err = db.QueryRow(ctx, `SELECT f.blob_sha256, f.size, b.chunk_size
			FROM kiln.repository_file f JOIN kiln.blob b ON b.sha256 = f.blob_sha256
			WHERE f.bucket = $1 AND f.platform = $2 AND f.path = $3 AND f.until_seq IS NULL`,
			a.Bucket, a.Platform, a.Path).Scan(&sum, &st.Size, &st.ChunkSize)
	} else {
		err = db.QueryRow(ctx, `SELECT f.blob_sha256, f.size, b.chunk_size
			FROM kiln.snapshot s
			JOIN kiln.repository_file f ON f.bucket = s.bucket AND f.from_seq <= s.seq AND (f.until_seq IS NULL OR f.until_seq > s.seq)
			JOIN kiln.blob b ON b.sha256 = f.blob_sha256
			WHERE s.bucket = $1 AND s.seq = $2 AND f.platform = $3 AND f.path = $4`,
			a.Bucket, a.Seq, a.Platform, a.Path).Scan(&sum, &st.Size, &st.ChunkSize)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return st, ErrNotFound
	}
	if err != nil {
		return st, fmt.Errorf("looking up %s: %w", a.Path, err)
	}
	copy(st.Sum[:], sum)
	return st, nil
}

// ChunkFunc returns chunk n of a stored file.
type ChunkFunc func(ctx context.Context, n int64) ([]byte, error)

// readAhead is how many chunks PublicChunks fetches per query: a query
// costs about as much as streaming a chunk, so fetching several at once
// keeps a download close to what the connection can carry.
const readAhead = 8

// PublicChunks reads chunks straight from kiln.blob_chunk under the
// session's rights, readAhead at a time.
func PublicChunks(db blob.DB, sum blob.Sum) ChunkFunc {
	ahead := map[int64][]byte{}
	return func(ctx context.Context, n int64) ([]byte, error) {
		if data, ok := ahead[n]; ok {
			delete(ahead, n)
			return data, nil
		}
		clear(ahead)
		rows, err := db.Query(ctx, `SELECT seq, data FROM kiln.blob_chunk WHERE sha256 = $1 AND seq >= $2 AND seq < $3`, sum[:], n, n+readAhead)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var seq int64
			var data []byte
			if err := rows.Scan(&seq, &data); err != nil {
				return nil, err
			}
			ahead[seq] = data
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		data, ok := ahead[n]
		if !ok {
			return nil, fmt.Errorf("chunk %d of %s is missing: %w", n, sum, blob.ErrCorrupt)
		}
		delete(ahead, n)
		return data, nil
	}
}

// Reader reads a stored file with seeking, one chunk at a time, so that
// http.ServeContent can answer Range requests without reading the rest.
type Reader struct {
	ctx   context.Context
	st    Stored
	chunk ChunkFunc
	off   int64
	cur   int64 // index of buf's chunk, -1 when none
	buf   []byte
}

// NewReader reads st through chunk.
func NewReader(ctx context.Context, st Stored, chunk ChunkFunc) *Reader {
	return &Reader{ctx: ctx, st: st, chunk: chunk, cur: -1}
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.st.Size {
		return 0, io.EOF
	}
	n := r.off / r.st.ChunkSize
	if n != r.cur {
		data, err := r.chunk(r.ctx, n)
		if err != nil {
			return 0, fmt.Errorf("reading chunk %d of %s: %w", n, r.st.Sum, err)
		}
		r.buf, r.cur = data, n
	}
	start := r.off - n*r.st.ChunkSize
	if start >= int64(len(r.buf)) {
		return 0, fmt.Errorf("blob %s: chunk %d is short: %w", r.st.Sum, n, blob.ErrCorrupt)
	}
	m := copy(p, r.buf[start:])
	r.off += int64(m)
	return m, nil
}

// Seek implements io.Seeker.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.st.Size
	}
	if offset < 0 {
		return 0, errors.New("seek before the start")
	}
	r.off = offset
	return offset, nil
}

// Export writes the served snapshot of bucket (every repository) to dir, as
// any web server or mirror can serve it: DIR/PLATFORM/PATH, plus key.asc.
func Export(ctx context.Context, db blob.DB, bucket, dir string) (int, error) {
	rows, err := db.Query(ctx, `SELECT f.platform, f.path, f.blob_sha256
		FROM kiln.repository_file f WHERE f.bucket = $1 AND f.until_seq IS NULL ORDER BY 1, 2`, bucket)
	if err != nil {
		return 0, fmt.Errorf("reading bucket %s: %w", bucket, err)
	}
	type file struct {
		platform, path string
		sum            blob.Sum
	}
	files, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (file, error) {
		var f file
		var sum []byte
		err := r.Scan(&f.platform, &f.path, &sum)
		copy(f.sum[:], sum)
		return f, err
	})
	if err != nil {
		return 0, fmt.Errorf("reading bucket %s: %w", bucket, err)
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("bucket %s has no published snapshot (or you may not read it)", bucket)
	}
	for _, f := range files {
		// Paths were checked when stored; check again before writing.
		if _, err := ParseAddress(bucket + "/" + f.platform + "/" + f.path); err != nil {
			return 0, fmt.Errorf("refusing to write %s/%s", f.platform, f.path)
		}
		path := filepath.Join(dir, f.platform, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return 0, err
		}
		tmp := path + ".kiln-export"
		os.Remove(tmp)
		if err := blob.WriteFile(ctx, db, f.sum, tmp); err != nil {
			return 0, fmt.Errorf("writing %s/%s: %w", f.platform, f.path, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return 0, err
		}
	}
	var key string
	if err := db.QueryRow(ctx, `SELECT public_key FROM kiln.bucket_key WHERE bucket = $1 AND active`, bucket).Scan(&key); err == nil {
		if err := os.WriteFile(filepath.Join(dir, "key.asc"), []byte(key), 0o644); err != nil {
			return 0, err
		}
	}
	return len(files), nil
}

// PublicKey returns the bucket's armored public keys, the active one first
// (retired keys follow during a rotation).
func PublicKey(ctx context.Context, db Querier, bucket string) (string, error) {
	var key string
	err := db.QueryRow(ctx, `SELECT string_agg(public_key, E'\n' ORDER BY active DESC, created_at DESC)
		FROM kiln.bucket_key WHERE bucket = $1 AND kiln.bucket_readable(bucket)`, bucket).Scan(&key)
	if err != nil || key == "" {
		return "", ErrNotFound
	}
	return key, nil
}
