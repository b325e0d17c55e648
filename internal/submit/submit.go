// Package submit is the client side of submitting a job: it finds the files
// (a .dsc's companions next to it), streams them into blobs, and inserts the
// job, its packages and the River job that asks the splitter to validate it,
// all in one transaction, so a job is either wholly there or not at all.
//
// A submission key makes a retried submit return the job the first try
// created instead of a second one. Who submits is the database session's
// role (a trigger sets kiln.job.submitter from session_user).
package submit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/names"
	"github.com/kiln-build/kiln/internal/notify"
	"github.com/kiln-build/kiln/internal/srcpkg"
	"github.com/kiln-build/kiln/riverjob"
)

// Request is one submission.
type Request struct {
	Bucket string
	// Platforms is the selection as given: platform names, "all", and
	// "!name" to remove one, each value possibly a comma list. Empty means
	// every active platform.
	Platforms []string
	// Priority is 1 (most urgent) to 4; 0 means the default, 2.
	Priority int
	Note     string
	// Report are addresses told when the job ends, besides the submitter
	// (kiln submit --report; docs/reports.md).
	Report []string
	// Key is the submission key; empty generates one.
	Key string
	// Files are the paths of the .src.rpm and .dsc files, in build order.
	Files []string
	// Progress, if set, is told how reading each file advances.
	Progress func(Progress)
	// Check runs Precheck before anything is uploaded, refusing at once
	// what the splitter would refuse after the upload (kiln submit sets
	// it). Without it the splitter alone judges, as tests of the
	// splitter need.
	Check bool
}

// Progress reports how far the upload of one file has got. Every file is
// read twice: once to hash it, then (unless the blob is already stored) to
// copy it in.
type Progress struct {
	File  string
	Phase string // "hashing" or "uploading"
	Done  int64
	Total int64
}

// Result is a submitted job.
type Result struct {
	JobID int64
	Key   string
	// Existing is true when a job with this key was already there: nothing
	// was uploaded and the earlier job is returned.
	Existing bool
}

// Package is one package of a submission as found on disk.
type Package struct {
	Path   string
	Name   string // base name, stored as kiln.package.file_name
	Format string // srpm or dsc
	// Files are a .dsc's companions, found next to it.
	Files []File
}

// File is a companion file of a .dsc.
type File struct {
	Path, Name string
}

// Client submits jobs.
type Client struct {
	db    *pgxpool.Pool
	river *river.Client[pgx.Tx]
}

// New returns a Client submitting through db.
func New(db *pgxpool.Pool) (*Client, error) {
	rc, err := riverjob.NewInserter(db, nil)
	if err != nil {
		return nil, err
	}
	return &Client{db: db, river: rc}, nil
}

var keyPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,100}$`)

// CheckKey checks a submission key's form.
func CheckKey(key string) error {
	if !keyPattern.MatchString(key) {
		return fmt.Errorf("submission key %q: use 1 to 100 letters, digits, '_', '.', ':' or '-'", key)
	}
	return nil
}

// NewKey returns a fresh random submission key.
func NewKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Submit uploads the files and creates the job. It returns the job the key
// names when that already exists, without uploading. When ctx ends first,
// nothing is left behind and the error wraps ctx's.
func (c *Client) Submit(ctx context.Context, req Request) (Result, error) {
	res, err := c.submit(ctx, req)
	if err != nil && ctx.Err() != nil {
		// pgx reports an interrupted upload as a closed connection.
		return res, fmt.Errorf("submit interrupted, nothing was submitted: %w", ctx.Err())
	}
	return res, err
}

func (c *Client) submit(ctx context.Context, req Request) (Result, error) {
	res := Result{Key: req.Key}
	if res.Key == "" {
		res.Key = NewKey()
	}
	if err := CheckKey(res.Key); err != nil {
		return res, err
	}
	if err := names.CheckName("bucket", req.Bucket); err != nil {
		return res, err
	}
	platforms, err := ParsePlatforms(req.Platforms)
	if err != nil {
		return res, err
	}
	priority := req.Priority
	if priority == 0 {
		priority = 2
	}
	if priority < 1 || priority > 4 {
		return res, fmt.Errorf("priority %d: use 1 (most urgent) to 4", priority)
	}
	for _, a := range req.Report {
		if err := notify.CheckAddress(a); err != nil {
			return res, fmt.Errorf("--report: %w", err)
		}
	}
	pkgs, err := Find(req.Files)
	if err != nil {
		return res, err
	}

	tx, err := c.db.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("starting the submit transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck

	if id, ok, err := existing(ctx, tx, res.Key); err != nil {
		return res, err
	} else if ok {
		res.JobID, res.Existing = id, ok
		return res, sameFiles(ctx, tx, id, res.Key, pkgs)
	}
	if req.Check {
		if err := Precheck(ctx, tx, req.Bucket, platforms, pkgs); err != nil {
			return res, err
		}
	}

	type stored struct {
		info  blob.Info
		files []blob.Info
	}
	// The files are hashed ahead, one after the other, while the ones
	// before them upload: a file is read once more, to store it, and
	// hashing overlaps the upload.
	var names, paths []string
	for _, p := range pkgs {
		names, paths = append(names, p.Name), append(paths, p.Path)
		for _, f := range p.Files {
			names, paths = append(names, f.Name), append(paths, f.Path)
		}
	}
	progress := req.Progress
	if progress != nil {
		var mu sync.Mutex
		progress = func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			req.Progress(p)
		}
	}
	hctx, stopHashing := context.WithCancel(ctx)
	defer stopHashing()
	hashes := hashAhead(hctx, paths, names, progress)
	put := func(i int) (blob.Info, error) {
		h := <-hashes[i]
		if h.err != nil {
			return blob.Info{}, fmt.Errorf("uploading %s: %w", paths[i], h.err)
		}
		return upload(ctx, tx, paths[i], names[i], h, progress)
	}
	var blobs []stored
	next := 0
	for _, p := range pkgs {
		var s stored
		if s.info, err = put(next); err != nil {
			return res, err
		}
		next++
		for range p.Files {
			info, err := put(next)
			if err != nil {
				return res, err
			}
			next++
			s.files = append(s.files, info)
		}
		blobs = append(blobs, s)
	}

	err = tx.QueryRow(ctx, `INSERT INTO kiln.job (bucket, platforms, priority, note, submission_key)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (submitter, submission_key) DO NOTHING RETURNING id`,
		req.Bucket, platforms, priority, req.Note, res.Key).Scan(&res.JobID)
	if errors.Is(err, pgx.ErrNoRows) {
		// Another submit with this key committed while we uploaded.
		_ = tx.Rollback(ctx)
		id, _, err := existing(ctx, c.db, res.Key)
		res.JobID, res.Existing = id, true
		return res, err
	}
	if err != nil {
		return res, fmt.Errorf("creating the job: %w", err)
	}
	for seq, p := range pkgs {
		_, err := tx.Exec(ctx, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size)
			VALUES ($1, $2, $3, $4, $5, $6)`, res.JobID, seq, p.Name, p.Format, blobs[seq].info.Sum[:], blobs[seq].info.Size)
		if err != nil {
			return res, fmt.Errorf("recording package %s: %w", p.Name, err)
		}
		for i, f := range p.Files {
			info := blobs[seq].files[i]
			_, err := tx.Exec(ctx, `INSERT INTO kiln.package_file (job_id, seq, file_name, blob_sha256, size)
				VALUES ($1, $2, $3, $4, $5)`, res.JobID, seq, f.Name, info.Sum[:], info.Size)
			if err != nil {
				return res, fmt.Errorf("recording file %s of %s: %w", f.Name, p.Name, err)
			}
		}
	}
	for _, a := range req.Report {
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.job_report_address (job_id, email) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			res.JobID, a); err != nil {
			return res, fmt.Errorf("recording report address %s: %w", a, err)
		}
	}
	if _, err := c.river.InsertTx(ctx, tx, riverjob.ValidateArgs{JobID: res.JobID}, nil); err != nil {
		return res, fmt.Errorf("enqueueing validation: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("committing the submission (whether it was recorded is unknown: submit again with --key %s to find out): %w", res.Key, err)
	}
	return res, nil
}

type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// existing finds this session's job with submission key key.
func existing(ctx context.Context, db queryer, key string) (int64, bool, error) {
	var id int64
	err := db.QueryRow(ctx, `SELECT id FROM kiln.job WHERE submitter = session_user AND submission_key = $1`, key).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("looking up submission key %s: %w", key, err)
	}
	return id, true, nil
}

// hashed is a file's SHA-256 and size, computed ahead of its upload.
type hashed struct {
	sum  blob.Sum
	size int64
	err  error
}

// hashAhead hashes the files at paths one after the other, in a goroutine
// of its own, and returns where each one's result arrives. It stops when
// ctx ends.
func hashAhead(ctx context.Context, paths, names []string, progress func(Progress)) []chan hashed {
	out := make([]chan hashed, len(paths))
	for i := range out {
		out[i] = make(chan hashed, 1)
	}
	go func() {
		for i, path := range paths {
			if err := ctx.Err(); err != nil {
				out[i] <- hashed{err: err}
				continue
			}
			out[i] <- hashForUpload(path, names[i], progress)
		}
	}()
	return out
}

func hashForUpload(path, name string, progress func(Progress)) hashed {
	f, err := os.Open(path)
	if err != nil {
		return hashed{err: err}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return hashed{err: err}
	}
	var r io.Reader = f
	if progress != nil {
		r = &progressReader{r: f, p: Progress{File: name, Phase: "hashing", Total: st.Size()}, report: progress}
	}
	var h hashed
	h.sum, h.size, h.err = blob.Hash(r)
	return h
}

// upload streams one file, hashed before, into a blob.
func upload(ctx context.Context, tx pgx.Tx, path, name string, h hashed, progress func(Progress)) (blob.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return blob.Info{}, err
	}
	defer f.Close()
	var r io.Reader = f
	if progress != nil {
		r = &progressReader{r: f, p: Progress{File: name, Phase: "uploading", Total: h.size}, report: progress}
	}
	info, err := blob.PutHashed(ctx, tx, r, h.sum, h.size, false)
	if err != nil {
		return blob.Info{}, fmt.Errorf("uploading %s: %w", path, err)
	}
	return info, nil
}

// progressReader reports reads of a file to a Progress callback.
type progressReader struct {
	r      io.Reader
	p      Progress
	report func(Progress)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.p.Done += int64(n)
	if n > 0 {
		p.report(p.p)
	}
	return n, err
}

// ParsePlatforms normalises a platform selection: comma lists split, blanks
// dropped, names lower-cased and checked, duplicates removed. An empty
// selection is ["all"].
func ParsePlatforms(values []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, v := range values {
		for _, term := range strings.Split(v, ",") {
			term = strings.ToLower(strings.TrimSpace(term))
			if term == "" || seen[term] {
				continue
			}
			name := strings.TrimPrefix(term, "!")
			if name != "all" {
				if err := names.CheckName("platform", name); err != nil {
					return nil, err
				}
			} else if term == "!all" {
				return nil, fmt.Errorf("!all would remove every platform")
			}
			seen[term] = true
			out = append(out, term)
		}
	}
	if len(out) == 0 {
		out = []string{"all"}
	}
	return out, nil
}

// Find checks the files of a submission and finds each .dsc's companions
// next to it. Names must be safe to store (names.CheckFileName), including
// those a .dsc lists: a name with a path separator would read files from
// elsewhere on this machine.
func Find(paths []string) ([]Package, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("no files to submit")
	}
	var pkgs []Package
	seen := map[string]string{}
	for _, path := range paths {
		p := Package{Path: path, Name: filepath.Base(path)}
		if err := names.CheckFileName(p.Name); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if other, dup := seen[p.Name]; dup {
			return nil, fmt.Errorf("%s and %s have the same name; a job's files need different names", other, path)
		}
		seen[p.Name] = path
		if err := regularFile(path); err != nil {
			return nil, err
		}
		switch {
		case strings.HasSuffix(p.Name, ".src.rpm"):
			p.Format = "srpm"
		case strings.HasSuffix(p.Name, ".dsc"):
			p.Format = "dsc"
			files, err := companions(path)
			if err != nil {
				return nil, err
			}
			p.Files = files
		default:
			return nil, fmt.Errorf("%s: not a source RPM (.src.rpm) or a Debian source package (.dsc)", path)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// companions reads a .dsc and returns the files it lists, next to it.
func companions(path string) ([]File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, srcpkg.MaxDSCSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	dsc, err := srcpkg.ParseDSC(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []File
	for _, listed := range dsc.Files {
		if err := names.CheckFileName(listed.Name); err != nil {
			return nil, fmt.Errorf("%s lists an unsafe file: %w", path, err)
		}
		fp := filepath.Join(filepath.Dir(path), listed.Name)
		if err := regularFile(fp); err != nil {
			return nil, fmt.Errorf("%s lists %s, which is not next to it: %w", path, listed.Name, err)
		}
		out = append(out, File{Path: fp, Name: listed.Name})
	}
	return out, nil
}

func regularFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}

// Resubmit submits job old again as the session's person, with the same
// packages (nothing is uploaded again), for platforms instead of the old
// job's selection when not empty (kiln.resubmit), together with the River
// job that asks the splitter to validate it, in one transaction. It returns
// the new job. A job the person may not read is answered as a missing one
// (SQLSTATE P0002, unwrapped for the caller to explain).
func (c *Client) Resubmit(ctx context.Context, old int64, platforms []string) (int64, error) {
	if len(platforms) == 0 {
		platforms = nil
	}
	return c.resubmit(ctx, "SELECT kiln.resubmit($1, $2, $3)", old, platforms, fmt.Sprintf("resubmit.%d.%s", old, NewKey()))
}

// ResubmitFor is Resubmit made by kiln-web for person, whom it
// authenticated (kiln.web_resubmit, kiln_web only), with the old job's
// platforms.
func (c *Client) ResubmitFor(ctx context.Context, person string, old int64) (int64, error) {
	return c.resubmit(ctx, "SELECT kiln.web_resubmit($1, $2, $3)", person, old, fmt.Sprintf("web.resubmit.%d.%s", old, NewKey()))
}

// resubmit runs one of the resubmit functions and queues the new job's
// validation in the same transaction.
func (c *Client) resubmit(ctx context.Context, sql string, args ...any) (int64, error) {
	var id int64
	err := pgx.BeginFunc(ctx, c.db, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, sql, args...).Scan(&id); err != nil {
			return err
		}
		if _, err := c.river.InsertTx(ctx, tx, riverjob.ValidateArgs{JobID: id}, nil); err != nil {
			return fmt.Errorf("queueing job %d for validation: %w", id, err)
		}
		return nil
	})
	return id, err
}
