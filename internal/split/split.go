// Package split validates submitted jobs and splits them into tasks: the
// work of kiln-splitter.
//
// Validation (Check) reads everything and writes nothing but the blobs'
// verified_at: it re-hashes every stored file, parses every package, checks
// names, sizes, duplicates, the bucket and its grants, and resolves the
// platform selection. Apply then writes the verdict in the caller's
// transaction, after locking the job and finding it still submitted, so a
// job validated twice (a retried River job) gets its tasks once, and a job
// cancelled before validation is left alone.
package split

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/names"
	"github.com/kiln-build/kiln/internal/platform"
	"github.com/kiln-build/kiln/internal/srcpkg"
	"github.com/kiln-build/kiln/internal/task"
)

// DefaultMaxFileSize is the largest file (an SRPM, a .dsc or a file it
// lists) a job may contain unless configured otherwise.
const DefaultMaxFileSize = 2 << 30

// maxReason caps the job's reason; every package keeps its own.
const maxReason = 2000

// Splitter validates and splits jobs.
type Splitter struct {
	db          *pgxpool.Pool
	maxFileSize int64
}

// New returns a Splitter that reads through db and refuses files larger
// than maxFileSize bytes (0 means DefaultMaxFileSize).
func New(db *pgxpool.Pool, maxFileSize int64) *Splitter {
	if maxFileSize <= 0 {
		maxFileSize = DefaultMaxFileSize
	}
	return &Splitter{db: db, maxFileSize: maxFileSize}
}

// Verdict is the outcome of checking one job.
type Verdict struct {
	JobID int64
	// Done is true when the job was no longer waiting for validation
	// (cancelled, or validated before): there is nothing to write.
	Done     bool
	Priority int
	// Problems are job-level reasons; with any package reason they make
	// the job invalid.
	Problems []string
	Packages []Package
	// Tasks, when the job is valid.
	Tasks []Task
}

// Package is what validation learned about one package.
type Package struct {
	Seq           int
	FileName      string
	Format        string
	Name          string
	Epoch         *int32
	Version       string
	Release       string
	ExclusiveArch []string
	ExcludeArch   []string
	Reason        string // empty when the package is valid
}

// Valid reports whether the job passed validation.
func (v *Verdict) Valid() bool {
	if len(v.Problems) > 0 {
		return false
	}
	for _, p := range v.Packages {
		if p.Reason != "" {
			return false
		}
	}
	return true
}

// Reason is the job's reason when invalid: every job-level problem, then
// every package's, "; "-separated.
func (v *Verdict) Reason() string {
	all := slices.Clone(v.Problems)
	for _, p := range v.Packages {
		if p.Reason != "" {
			all = append(all, p.FileName+": "+p.Reason)
		}
	}
	r := strings.Join(all, "; ")
	if len(r) > maxReason {
		r = r[:maxReason] + " ..."
	}
	return r
}

type storedFile struct {
	name   string
	sum    blob.Sum // the blob's key
	digest blob.Sum // its content's SHA-256 (differs from sum for a staged upload)
	size   int64    // as declared by the submitter
}

type storedPackage struct {
	storedFile
	seq    int
	format string
	files  []storedFile // a .dsc's companions
}

// Check validates job id. Errors are failures to read (the database went
// away, ...) to be retried; everything wrong with the job itself is in the
// Verdict.
func (s *Splitter) Check(ctx context.Context, id int64) (*Verdict, error) {
	v := &Verdict{JobID: id}
	var (
		submitter, bucket, status string
		selection                 []string
	)
	err := s.db.QueryRow(ctx, `SELECT submitter, bucket, platforms, priority, status FROM kiln.job WHERE id = $1`, id).
		Scan(&submitter, &bucket, &selection, &v.Priority, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		v.Done = true // deleted: nothing to do
		return v, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading job %d: %w", id, err)
	}
	if status != "submitted" {
		v.Done = true
		return v, nil
	}

	if problem, err := s.checkBucket(ctx, submitter, bucket); err != nil {
		return nil, err
	} else if problem != "" {
		v.Problems = append(v.Problems, problem)
	}

	pkgs, err := s.loadPackages(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(pkgs) == 0 {
		v.Problems = append(v.Problems, "the job has no packages")
		return v, nil
	}
	formats := map[string]bool{}
	for _, p := range pkgs {
		formats[p.format] = true
	}
	if len(formats) > 1 {
		v.Problems = append(v.Problems, "the job mixes SRPMs and Debian source packages; submit them as separate jobs")
	}

	bySum := map[blob.Sum]string{}
	byName := map[string]string{}
	var rules []ArchRule
	for _, sp := range pkgs {
		p := Package{Seq: sp.seq, FileName: sp.name, Format: sp.format}
		p.Reason, err = s.checkPackage(ctx, sp, &p)
		if err != nil {
			return nil, err
		}
		if p.Reason == "" {
			if other, dup := bySum[sp.digest]; dup {
				p.Reason = "the same file as " + other
			} else if other, dup := byName[p.Name]; dup {
				p.Reason = fmt.Sprintf("package %s is already in the job as %s", p.Name, other)
			}
			bySum[sp.digest] = sp.name
			byName[p.Name] = sp.name
		}
		v.Packages = append(v.Packages, p)
		field := "ExclusiveArch"
		if p.Format == "dsc" {
			field = "Architecture"
		}
		rules = append(rules, ArchRule{Package: p.FileName, Exclusive: p.ExclusiveArch, Field: field, Exclude: p.ExcludeArch})
	}

	platforms, err := platform.List(ctx, s.db)
	if err != nil {
		return nil, err
	}
	if len(formats) == 1 {
		tasks, err := Resolve(selection, platforms, pkgs[0].format, rules)
		if err != nil {
			v.Problems = append(v.Problems, err.Error())
		}
		v.Tasks = tasks
	}
	return v, nil
}

// checkBucket says why submitter may not submit to bucket, or "" if it
// may: the bucket is open, or a grant names the submitter or a role it is
// a member of, or it is a member of kiln_admin. Roles are joined by name
// first, so a grant to a role dropped since does not make pg_has_role fail.
func (s *Splitter) checkBucket(ctx context.Context, submitter, bucket string) (string, error) {
	var exists, open, allowed bool
	err := s.db.QueryRow(ctx, `
		SELECT b.name IS NOT NULL, coalesce(b.open, false),
		       EXISTS (SELECT 1 FROM kiln.bucket_grant g
		                 JOIN pg_roles gr ON gr.rolname = g.grantee
		                 JOIN pg_roles sr ON sr.rolname = $2
		                WHERE g.bucket = $1 AND pg_has_role(sr.oid, gr.oid, 'MEMBER'))
		    OR EXISTS (SELECT 1 FROM pg_roles sr JOIN pg_roles a ON a.rolname = 'kiln_admin'
		                WHERE sr.rolname = $2 AND pg_has_role(sr.oid, a.oid, 'MEMBER'))
		  FROM (SELECT 1) AS one LEFT JOIN kiln.bucket b ON b.name = $1`, bucket, submitter).
		Scan(&exists, &open, &allowed)
	if err != nil {
		return "", fmt.Errorf("checking bucket %s: %w", bucket, err)
	}
	switch {
	case !exists:
		return fmt.Sprintf("unknown bucket %s", bucket), nil
	case !open && !allowed:
		return fmt.Sprintf("%s may not submit to bucket %s (no bucket grant)", submitter, bucket), nil
	}
	return "", nil
}

func (s *Splitter) loadPackages(ctx context.Context, id int64) ([]*storedPackage, error) {
	rows, _ := s.db.Query(ctx, `SELECT p.seq, p.file_name, p.format, p.blob_sha256, coalesce(b.content_sha256, b.sha256), p.size
		FROM kiln.package p JOIN kiln.blob b ON b.sha256 = p.blob_sha256 WHERE p.job_id = $1 ORDER BY p.seq`, id)
	pkgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*storedPackage, error) {
		p := &storedPackage{}
		var sum, digest []byte
		err := r.Scan(&p.seq, &p.name, &p.format, &sum, &digest, &p.size)
		p.sum, p.digest = blob.Sum(sum), blob.Sum(digest)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading packages of job %d: %w", id, err)
	}
	bySeq := map[int]*storedPackage{}
	for _, p := range pkgs {
		bySeq[p.seq] = p
	}
	rows, _ = s.db.Query(ctx, `SELECT f.seq, f.file_name, f.blob_sha256, coalesce(b.content_sha256, b.sha256), f.size
		FROM kiln.package_file f JOIN kiln.blob b ON b.sha256 = f.blob_sha256 WHERE f.job_id = $1 ORDER BY f.seq, f.file_name`, id)
	var seq int
	var f storedFile
	var sum, digest []byte
	_, err = pgx.ForEachRow(rows, []any{&seq, &f.name, &sum, &digest, &f.size}, func() error {
		f.sum, f.digest = blob.Sum(sum), blob.Sum(digest)
		bySeq[seq].files = append(bySeq[seq].files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading package files of job %d: %w", id, err)
	}
	return pkgs, nil
}

// checkPackage checks one package and fills in what it learns; it returns
// the first problem found ("" if none). Errors are failures to read.
func (s *Splitter) checkPackage(ctx context.Context, sp *storedPackage, p *Package) (string, error) {
	if err := names.CheckFileName(sp.name); err != nil {
		return err.Error(), nil
	}
	if reason, err := s.checkStored(ctx, sp.storedFile); reason != "" || err != nil {
		return reason, err
	}
	switch sp.format {
	case "srpm":
		return s.checkSRPM(ctx, sp, p)
	case "dsc":
		return s.checkDSC(ctx, sp, p)
	}
	return fmt.Sprintf("unknown package format %q", sp.format), nil
}

// checkStored checks a stored file's size against the limit and what the
// submitter declared, then re-hashes it (blob.Verify): chunks that do not
// add up to the file's SHA-256 mean a corrupt upload.
func (s *Splitter) checkStored(ctx context.Context, f storedFile) (string, error) {
	size, _, err := blob.Stat(ctx, s.db, f.sum)
	if err != nil {
		return "", err
	}
	if size != f.size {
		return fmt.Sprintf("corrupt upload: %s was declared as %d bytes, %d are stored", f.name, f.size, size), nil
	}
	if size > s.maxFileSize {
		return fmt.Sprintf("%s is %d bytes, over the limit of %d bytes", f.name, size, s.maxFileSize), nil
	}
	if err := blob.Verify(ctx, s.db, f.sum); errors.Is(err, blob.ErrCorrupt) {
		return fmt.Sprintf("corrupt upload: the stored bytes of %s do not match its SHA-256 %s", f.name, f.digest), nil
	} else if err != nil {
		return "", fmt.Errorf("verifying %s: %w", f.name, err)
	}
	return "", nil
}

func (s *Splitter) checkSRPM(ctx context.Context, sp *storedPackage, p *Package) (string, error) {
	if len(sp.files) > 0 {
		return fmt.Sprintf("an SRPM has no further files, but %s was submitted with it", sp.files[0].name), nil
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := blob.WriteTo(ctx, s.db, sp.sum, pw)
		pw.CloseWithError(err)
	}()
	rpm, perr := srcpkg.ParseRPM(pr)
	pr.CloseWithError(io.ErrClosedPipe) // stops the writer if parsing stopped early
	<-done
	if perr != nil {
		for _, kind := range []error{srcpkg.ErrNotRPM, srcpkg.ErrNotSource, srcpkg.ErrTruncated, srcpkg.ErrCorrupt} {
			if errors.Is(perr, kind) {
				return perr.Error(), nil
			}
		}
		return "", fmt.Errorf("reading %s: %w", sp.name, perr)
	}
	p.Name, p.Epoch, p.Version, p.Release = rpm.Name, rpm.Epoch, rpm.Version, rpm.Release
	p.ExclusiveArch, p.ExcludeArch = rpm.ExclusiveArch, rpm.ExcludeArch
	return "", nil
}

func (s *Splitter) checkDSC(ctx context.Context, sp *storedPackage, p *Package) (string, error) {
	if sp.size > srcpkg.MaxDSCSize {
		return fmt.Sprintf("a .dsc of %d bytes is larger than the %d bytes allowed", sp.size, srcpkg.MaxDSCSize), nil
	}
	var buf strings.Builder
	if _, err := blob.WriteTo(ctx, s.db, sp.sum, &buf); err != nil {
		return "", fmt.Errorf("reading %s: %w", sp.name, err)
	}
	dsc, err := srcpkg.ParseDSC([]byte(buf.String()))
	if err != nil {
		return err.Error(), nil
	}
	p.Name, p.Epoch, p.Version, p.Release = dsc.Source, dsc.Epoch, dsc.Version, dsc.Revision
	p.ExclusiveArch = dsc.ExclusiveArch()

	have := map[string]storedFile{}
	for _, f := range sp.files {
		have[f.name] = f
	}
	for _, listed := range dsc.Files {
		if err := names.CheckFileName(listed.Name); err != nil {
			return "unsafe name in the .dsc's file list: " + err.Error(), nil
		}
		f, ok := have[listed.Name]
		if !ok {
			return fmt.Sprintf("%s, listed in the .dsc, was not submitted", listed.Name), nil
		}
		delete(have, listed.Name)
		if reason, err := s.checkStored(ctx, f); reason != "" || err != nil {
			return reason, err
		}
		if f.size != listed.Size {
			return fmt.Sprintf("%s is %d bytes, the .dsc says %d", f.name, f.size, listed.Size), nil
		}
		if blob.Sum(listed.SHA256) != f.digest {
			return fmt.Sprintf("checksum mismatch: %s has SHA-256 %s, the .dsc says %s", f.name, f.digest, blob.Sum(listed.SHA256)), nil
		}
	}
	if len(have) > 0 {
		extra := slices.Sorted(maps.Keys(have))
		return fmt.Sprintf("%s was submitted with the .dsc, which does not list it", extra[0]), nil
	}
	return "", nil
}

// Pending is a task Apply created that needs a River job.
type Pending struct {
	TaskID   int64
	Platform string
}

// Apply writes v in tx: for an invalid job its status, reason and the
// packages' reasons; for a valid one what was learned of the packages and
// its tasks (skipped ones with their reason). It first locks the job and
// writes nothing unless the job is still submitted. It returns the pending
// tasks, which need a River job each (task.SetRiverJob) in the same transaction.
func Apply(ctx context.Context, tx pgx.Tx, v *Verdict) ([]Pending, error) {
	if v.Done {
		return nil, nil
	}
	var status string
	err := tx.QueryRow(ctx, `SELECT status FROM kiln.job WHERE id = $1 FOR UPDATE`, v.JobID).Scan(&status)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("locking job %d: %w", v.JobID, err)
	}
	if status != "submitted" {
		v.Done = true // gone, cancelled or validated meanwhile
		return nil, nil
	}
	for _, p := range v.Packages {
		var reason *string
		if p.Reason != "" {
			reason = &p.Reason
		}
		_, err := tx.Exec(ctx, `UPDATE kiln.package SET name = $3, epoch = $4, version = $5, release = $6,
				exclusive_arch = $7, exclude_arch = $8, reason = $9
			WHERE job_id = $1 AND seq = $2`,
			v.JobID, p.Seq, nullIfEmpty(p.Name), p.Epoch, nullIfEmpty(p.Version), nullIfEmpty(p.Release),
			p.ExclusiveArch, p.ExcludeArch, reason)
		if err != nil {
			return nil, fmt.Errorf("recording package %d of job %d: %w", p.Seq, v.JobID, err)
		}
	}
	if !v.Valid() {
		_, err := tx.Exec(ctx, `UPDATE kiln.job SET status = 'invalid', reason = $2, validated_at = now(), finished_at = now()
			WHERE id = $1`, v.JobID, v.Reason())
		if err != nil {
			return nil, fmt.Errorf("marking job %d invalid: %w", v.JobID, err)
		}
		return nil, nil
	}
	if _, err := tx.Exec(ctx, `UPDATE kiln.job SET validated_at = now() WHERE id = $1`, v.JobID); err != nil {
		return nil, fmt.Errorf("marking job %d validated: %w", v.JobID, err)
	}
	var pending []Pending
	for _, t := range v.Tasks {
		if t.SkipReason != "" {
			if _, err := task.CreateSkipped(ctx, tx, v.JobID, t.Platform, t.SkipReason); err != nil {
				return nil, err
			}
			continue
		}
		id, err := task.Create(ctx, tx, v.JobID, t.Platform)
		if err != nil {
			return nil, err
		}
		pending = append(pending, Pending{TaskID: id, Platform: t.Platform})
	}
	return pending, nil
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
