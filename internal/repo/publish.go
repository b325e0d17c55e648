// Package repo turns buckets into package repositories: the publisher makes
// immutable snapshots of a bucket's APT and rpm-md repositories from the
// packages of finished jobs and signs them; the reader side finds and
// streams a snapshot's files for kiln-web and kiln repo export. See
// docs/repositories.md.
package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	kplatform "github.com/kiln-build/kiln/internal/platform"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/blob"
)

// Publisher publishes buckets. It connects as a member of kiln_publisher.
type Publisher struct {
	DB   *pgxpool.Pool
	Keys Keyring
	// WorkDir holds the publisher's rpm-md trees (a cache createrepo_c
	// updates in place) and scratch files.
	WorkDir string
	Log     *slog.Logger
	// MaxRequests bounds how many pending requests one publication takes
	// (DefaultMaxRequests when 0).
	MaxRequests int
}

// DefaultMaxRequests is how many pending requests of a bucket one
// publication takes at most.
const DefaultMaxRequests = 1000

// Result says what one publication did.
type Result struct {
	Bucket   string
	Requests int
	Snapshot int // the new snapshot's seq; 0 when nothing changed
	Packages int // packages added or replaced
}

// PublishPending publishes every bucket with pending requests, each in one
// transaction, and returns what it did.
func (p *Publisher) PublishPending(ctx context.Context) ([]Result, error) {
	rows, err := p.DB.Query(ctx, `SELECT DISTINCT bucket FROM kiln.publication_request WHERE done_at IS NULL ORDER BY bucket`)
	if err != nil {
		return nil, fmt.Errorf("finding pending publications: %w", err)
	}
	buckets, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("finding pending publications: %w", err)
	}
	var out []Result
	var errs []error
	for _, b := range buckets {
		r, err := p.Publish(ctx, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

type request struct {
	id       int64
	kind     string
	job      *int64
	seq      *int32
	pkg      *string
	platform *string
	note     string
	added    int
}

// repoView is one repository (platform) of a bucket as it is being
// published.
type repoView struct {
	platform, format, arch string
	entries                map[string]Entry // by name/arch
	// sources are a Debian repository's source packages, by name.
	sources map[string]SourceEntry
	changed bool
}

// Publish takes the pending requests of bucket and, if they change
// anything, publishes a new snapshot and serves it, in one transaction: a
// publisher that dies before the commit leaves the previous snapshot served
// and the requests pending.
func (p *Publisher) Publish(ctx context.Context, bucket string) (Result, error) {
	res := Result{Bucket: bucket}
	tx, err := p.DB.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("publishing %s: %w", bucket, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck

	if _, err := tx.Exec(ctx, `INSERT INTO kiln.bucket_publication (bucket) VALUES ($1) ON CONFLICT DO NOTHING`, bucket); err != nil {
		return res, fmt.Errorf("publishing %s: %w", bucket, err)
	}
	var current *int64
	if err := tx.QueryRow(ctx, `SELECT current_snapshot FROM kiln.bucket_publication WHERE bucket = $1 FOR UPDATE`, bucket).Scan(&current); err != nil {
		return res, fmt.Errorf("locking bucket %s: %w", bucket, err)
	}
	var policy string
	var keep int32
	var signPackages bool
	if err := tx.QueryRow(ctx, `SELECT publish_policy, keep_snapshots, sign_packages FROM kiln.bucket WHERE name = $1`, bucket).Scan(&policy, &keep, &signPackages); err != nil {
		return res, fmt.Errorf("reading bucket %s: %w", bucket, err)
	}
	limit := p.MaxRequests
	if limit <= 0 {
		limit = DefaultMaxRequests
	}
	rows, err := tx.Query(ctx, `SELECT id, kind, job_id, snapshot_seq, package_name, platform FROM kiln.publication_request
		WHERE bucket = $1 AND done_at IS NULL ORDER BY id LIMIT $2`, bucket, limit)
	if err != nil {
		return res, fmt.Errorf("reading requests of %s: %w", bucket, err)
	}
	var reqs []*request
	for rows.Next() {
		r := &request{}
		if err := rows.Scan(&r.id, &r.kind, &r.job, &r.seq, &r.pkg, &r.platform); err != nil {
			rows.Close()
			return res, fmt.Errorf("reading requests of %s: %w", bucket, err)
		}
		reqs = append(reqs, r)
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("reading requests of %s: %w", bucket, err)
	}
	res.Requests = len(reqs)
	if len(reqs) == 0 {
		return res, nil
	}

	views := map[string]*repoView{}
	if current != nil {
		if views, err = p.loadSnapshot(ctx, tx, bucket, 0); err != nil {
			return res, err
		}
	}
	for _, r := range reqs {
		switch r.kind {
		case "rollback":
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kiln.snapshot WHERE bucket = $1 AND seq = $2)`, bucket, *r.seq).Scan(&exists); err != nil {
				return res, fmt.Errorf("rollback of %s: %w", bucket, err)
			}
			if !exists {
				r.note = fmt.Sprintf("no snapshot %d to roll back to", *r.seq)
				continue
			}
			target, err := p.loadSnapshot(ctx, tx, bucket, int(*r.seq))
			if err != nil {
				return res, err
			}
			// Repositories the target did not have become empty ones.
			for name, v := range views {
				if _, ok := target[name]; !ok {
					v.entries, v.sources = map[string]Entry{}, map[string]SourceEntry{}
					target[name] = v
				}
			}
			views = target
			for _, v := range views {
				v.changed = true
			}
			r.note = fmt.Sprintf("rolled back to snapshot %d", *r.seq)
		case "remove":
			n := 0
			for _, v := range views {
				if r.platform != nil && *r.platform != v.platform {
					continue
				}
				for k, e := range v.entries {
					if e.Name == *r.pkg {
						delete(v.entries, k)
						v.changed = true
						n++
					}
				}
				if _, ok := v.sources[*r.pkg]; ok {
					delete(v.sources, *r.pkg)
					v.changed = true
					n++
				}
			}
			r.note = fmt.Sprintf("removed %d packages named %s", n, *r.pkg)
		case "rebuild":
			for _, v := range views {
				v.changed = true
			}
			r.note = "metadata rebuilt"
		case "job", "promote":
			var adds []Entry
			var srcs []SourceEntry
			var why string
			var srcNotes []string
			if r.kind == "job" {
				adds, why, err = p.jobPackages(ctx, tx, *r.job, policy)
				if err == nil && signPackages {
					adds, err = p.signPackages(ctx, tx, bucket, adds)
				}
				if err == nil && len(adds) > 0 {
					srcs, srcNotes, err = p.jobSources(ctx, tx, *r.job)
				}
			} else {
				adds, why, err = p.promotedPackages(ctx, tx, *r.job)
				if err == nil {
					srcs, err = p.promotedSources(ctx, tx, *r.job)
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return res, err
				}
				r.note = "refused: " + err.Error()
				continue
			}
			if len(adds) == 0 {
				r.note = "nothing to publish: " + why
				continue
			}
			for _, e := range adds {
				if _, err := p.view(ctx, tx, views, e.repoPlatform); err != nil {
					return res, err
				}
			}
			r.added, r.note = apply(views, adds)
			n, kept := applySources(views, adds, srcs)
			if n > 0 {
				r.note += fmt.Sprintf(", %d source packages", n)
			}
			if notes := append(kept, srcNotes...); len(notes) > 0 {
				r.note += "; " + strings.Join(notes, "; ")
			}
			res.Packages += r.added
		}
	}

	if err := recordSources(ctx, tx, views); err != nil {
		return res, err
	}
	if signPackages {
		if err := p.signChanges(ctx, tx, bucket, views); err != nil {
			return res, err
		}
	}
	changed := false
	for _, v := range views {
		changed = changed || v.changed
	}
	var snapID *int64
	if changed {
		id, seq, err := p.writeSnapshot(ctx, tx, bucket, views, reqs)
		if err != nil {
			return res, err
		}
		snapID, res.Snapshot = &id, seq
		if _, err := tx.Exec(ctx, `UPDATE kiln.bucket_publication SET current_snapshot = $2, published_at = now() WHERE bucket = $1`, bucket, id); err != nil {
			return res, fmt.Errorf("serving snapshot %d of %s: %w", seq, bucket, err)
		}
		if err := prune(ctx, tx, bucket, seq, keep); err != nil {
			return res, err
		}
	}
	for _, r := range reqs {
		if r.note == "" {
			r.note = "published"
		}
		if _, err := tx.Exec(ctx, `UPDATE kiln.publication_request SET done_at = now(), snapshot_id = $2, outcome = $3 WHERE id = $1`,
			r.id, snapID, r.note); err != nil {
			return res, fmt.Errorf("recording request %d: %w", r.id, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("publishing %s: %w", bucket, err)
	}
	if p.Log != nil {
		p.Log.Info("published", "bucket", bucket, "requests", res.Requests, "snapshot", res.Snapshot, "packages", res.Packages)
	}
	return res, nil
}

// apply adds packages to the views: a newer version replaces an older one of
// the same name and architecture; an older one, or a different file of the
// same version, is kept out. It returns how many went in and a note.
func apply(views map[string]*repoView, adds []Entry) (int, string) {
	n := 0
	var kept []string
	for _, e := range adds {
		v := views[e.repoPlatform]
		key := e.Name + "/" + e.Arch
		if old, ok := v.entries[key]; ok {
			if old.Sum == e.Sum {
				continue
			}
			if !e.Newer(old.Package) {
				kept = append(kept, fmt.Sprintf("%s %s kept (%s is not newer)", e.Name, old.Version, e.Version))
				continue
			}
		}
		v.entries[key] = e
		v.changed = true
		n++
	}
	note := fmt.Sprintf("published %d packages", n)
	if len(kept) > 0 {
		note += "; " + strings.Join(kept, "; ")
	}
	return n, note
}

func (p *Publisher) view(ctx context.Context, tx pgx.Tx, views map[string]*repoView, platform string) (*repoView, error) {
	if v, ok := views[platform]; ok {
		return v, nil
	}
	v := &repoView{platform: platform, entries: map[string]Entry{}, sources: map[string]SourceEntry{}}
	pl, err := kplatform.Get(ctx, tx, platform, false)
	if err != nil {
		return nil, err
	}
	v.format, v.arch = pl.PackageFormat, pl.Arch
	views[platform] = v
	return v, nil
}

// loadSnapshot reads the repositories of snapshot seq of bucket (0: the
// served one, the newest).
func (p *Publisher) loadSnapshot(ctx context.Context, tx pgx.Tx, bucket string, seq int) (map[string]*repoView, error) {
	views := map[string]*repoView{}
	alive, args := `f.until_seq IS NULL`, []any{bucket}
	if seq > 0 {
		alive, args = `f.from_seq <= $2 AND (f.until_seq IS NULL OR f.until_seq > $2)`, []any{bucket, seq}
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT f.platform FROM kiln.repository_file f WHERE f.bucket = $1 AND `+alive, args...)
	if err != nil {
		return nil, fmt.Errorf("reading snapshot %d of %s: %w", seq, bucket, err)
	}
	platforms, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading snapshot %d of %s: %w", seq, bucket, err)
	}
	for _, pl := range platforms {
		if _, err := p.view(ctx, tx, views, pl); err != nil {
			return nil, err
		}
	}
	rows, err = tx.Query(ctx, `SELECT f.platform, f.blob_sha256, f.size, coalesce(f.job_id, 0), bp.format, bp.name, bp.version, bp.arch, bp.source, bp.stanza
		FROM kiln.repository_file f JOIN kiln.binary_package bp ON bp.sha256 = f.package
		WHERE f.bucket = $1 AND `+alive, args...)
	if err != nil {
		return nil, fmt.Errorf("reading snapshot %d of %s: %w", seq, bucket, err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		var sum []byte
		if err := rows.Scan(&e.repoPlatform, &sum, &e.Size, &e.JobID, &e.Format, &e.Name, &e.Version, &e.Arch, &e.Source, &e.Stanza); err != nil {
			return nil, fmt.Errorf("reading snapshot %d of %s: %w", seq, bucket, err)
		}
		copy(e.Sum[:], sum)
		views[e.repoPlatform].entries[e.Name+"/"+e.Arch] = e
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading snapshot %d of %s: %w", seq, bucket, err)
	}
	srcs, err := readSources(ctx, tx, `f.bucket = $1 AND `+alive, args...)
	if err != nil {
		return nil, fmt.Errorf("reading snapshot %d of %s: %w", seq, bucket, err)
	}
	for pl, ss := range srcs {
		for _, s := range ss {
			views[pl].sources[s.Name] = s
		}
	}
	return views, nil
}

// jobPackages are the packages a finished job contributes under policy,
// or none and why.
func (p *Publisher) jobPackages(ctx context.Context, tx pgx.Tx, jobID int64, policy string) ([]Entry, string, error) {
	var status string
	if err := tx.QueryRow(ctx, `SELECT status FROM kiln.job WHERE id = $1`, jobID).Scan(&status); err != nil {
		return nil, "", fmt.Errorf("job %d: %w", jobID, err)
	}
	if policy == "whole_job" && status != "succeeded" {
		return nil, fmt.Sprintf("job %d ended %s and bucket policy whole_job publishes only jobs whose every task succeeded", jobID, status), nil
	}
	rows, err := tx.Query(ctx, `SELECT t.platform, pl.package_format, a.blob_sha256
		FROM kiln.task t
		JOIN kiln.platform pl ON pl.name = t.platform
		JOIN kiln.artifact a ON a.task_id = t.id AND a.attempt = t.attempt
		WHERE t.job_id = $1 AND t.status = 'succeeded' AND a.kind = 'package' AND a.blob_sha256 IS NOT NULL
		  AND ((pl.package_format = 'deb' AND a.file_name LIKE '%.deb')
		    OR (pl.package_format = 'rpm' AND a.file_name LIKE '%.rpm' AND a.file_name NOT LIKE '%.src.rpm'))
		ORDER BY t.platform, a.id`, jobID)
	if err != nil {
		return nil, "", fmt.Errorf("job %d: %w", jobID, err)
	}
	type art struct {
		platform, format string
		sum              []byte
	}
	arts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (art, error) {
		var a art
		return a, r.Scan(&a.platform, &a.format, &a.sum)
	})
	if err != nil {
		return nil, "", fmt.Errorf("job %d: %w", jobID, err)
	}
	var out []Entry
	for _, a := range arts {
		var sum blob.Sum
		copy(sum[:], a.sum)
		pkg, size, err := p.binaryPackage(ctx, tx, sum, a.format)
		if err != nil {
			return nil, "", fmt.Errorf("job %d, platform %s: %w", jobID, a.platform, err)
		}
		out = append(out, Entry{Package: pkg, Sum: sum, Size: size, JobID: jobID, repoPlatform: a.platform})
	}
	if len(out) == 0 {
		return nil, fmt.Sprintf("job %d (%s) has no binary packages from succeeded tasks", jobID, status), nil
	}
	return out, "", nil
}

// promotedPackages are the packages of a job as its own bucket serves them.
func (p *Publisher) promotedPackages(ctx context.Context, tx pgx.Tx, jobID int64) ([]Entry, string, error) {
	rows, err := tx.Query(ctx, `SELECT f.platform, f.blob_sha256, f.size, bp.format, bp.name, bp.version, bp.arch, bp.source, bp.stanza
		FROM kiln.job j
		JOIN kiln.repository_file f ON f.bucket = j.bucket AND f.job_id = j.id AND f.until_seq IS NULL
		JOIN kiln.binary_package bp ON bp.sha256 = f.package
		WHERE j.id = $1`, jobID)
	if err != nil {
		return nil, "", fmt.Errorf("job %d: %w", jobID, err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		e := Entry{JobID: jobID}
		var sum []byte
		if err := rows.Scan(&e.repoPlatform, &sum, &e.Size, &e.Format, &e.Name, &e.Version, &e.Arch, &e.Source, &e.Stanza); err != nil {
			return nil, "", fmt.Errorf("job %d: %w", jobID, err)
		}
		copy(e.Sum[:], sum)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("job %d: %w", jobID, err)
	}
	return out, fmt.Sprintf("job %d has no packages published in its own bucket", jobID), nil
}

// binaryPackage returns the parsed package of a blob, reading the file the
// first time it is published.
func (p *Publisher) binaryPackage(ctx context.Context, tx pgx.Tx, sum blob.Sum, format string) (Package, int64, error) {
	pkg := Package{}
	var size int64
	err := tx.QueryRow(ctx, `SELECT bp.format, bp.name, bp.version, bp.arch, bp.source, bp.stanza, b.size
		FROM kiln.binary_package bp JOIN kiln.blob b ON b.sha256 = bp.sha256 WHERE bp.sha256 = $1`, sum[:]).
		Scan(&pkg.Format, &pkg.Name, &pkg.Version, &pkg.Arch, &pkg.Source, &pkg.Stanza, &size)
	if err == nil {
		return pkg, size, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return pkg, 0, fmt.Errorf("package %s: %w", sum, err)
	}
	dir, err := os.MkdirTemp(p.WorkDir, "read-")
	if err != nil {
		return pkg, 0, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "package."+format)
	if err := blob.WriteFile(ctx, tx, sum, path); err != nil {
		return pkg, 0, fmt.Errorf("package %s: %w", sum, err)
	}
	if pkg, err = ReadPackage(ctx, format, path); err != nil {
		return pkg, 0, fmt.Errorf("package %s: %w", sum, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return pkg, 0, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO kiln.binary_package (sha256, format, name, version, arch, source, stanza)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, sum[:], pkg.Format, pkg.Name, pkg.Version, pkg.Arch, pkg.Source, pkg.Stanza); err != nil {
		return pkg, 0, fmt.Errorf("recording package %s: %w", sum, err)
	}
	return pkg, st.Size(), nil
}

// signPackages signs the RPMs among adds with the bucket's key (rpmsign):
// the signed file is a new blob, published in place of the unsigned one, so
// a promotion later copies the signed bytes. Debian packages are left as
// they are (APT trusts them through the signed Release).
func (p *Publisher) signPackages(ctx context.Context, tx pgx.Tx, bucket string, adds []Entry) ([]Entry, error) {
	fpr, err := p.signingKey(ctx, tx, bucket)
	if err != nil {
		return nil, err
	}
	for i, e := range adds {
		if e.Format != "rpm" {
			continue
		}
		info, err := p.signRPM(ctx, tx, e, fpr)
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.binary_package (sha256, format, name, version, arch, source, stanza)
			VALUES ($1, $2, $3, $4, $5, $6, '') ON CONFLICT (sha256) DO NOTHING`, info.Sum[:], e.Format, e.Name, e.Version, e.Arch, e.Source); err != nil {
			return nil, fmt.Errorf("recording signed %s: %w", e.Name, err)
		}
		adds[i].Sum, adds[i].Size = info.Sum, info.Size
	}
	return adds, nil
}

// signRPM stores a copy of e signed with rpmsign.
func (p *Publisher) signRPM(ctx context.Context, tx pgx.Tx, e Entry, fpr string) (blob.Info, error) {
	dir, err := os.MkdirTemp(p.WorkDir, "sign-")
	if err != nil {
		return blob.Info{}, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "package.rpm")
	if err := blob.WriteFile(ctx, tx, e.Sum, path); err != nil {
		return blob.Info{}, fmt.Errorf("signing %s: %w", e.Name, err)
	}
	// rpm runs gpg by absolute path (Debian's rpm names gpg2, which
	// Debian does not ship).
	gpg, err := exec.LookPath("gpg")
	if err != nil {
		return blob.Info{}, fmt.Errorf("signing %s: %w", e.Name, err)
	}
	if _, err := run(ctx, "rpmsign", "--define", "_gpg_name "+fpr, "--define", "_gpg_path "+p.Keys.Home,
		"--define", "__gpg "+gpg, "--addsign", path); err != nil {
		return blob.Info{}, fmt.Errorf("signing %s: %w", e.Name, err)
	}
	info, err := blob.PutFile(ctx, tx, path, true)
	if err != nil {
		return blob.Info{}, fmt.Errorf("storing signed %s: %w", e.Name, err)
	}
	return info, nil
}

// signingKey returns the fingerprint of the bucket's active key, making
// the bucket's first key when it has none.
func (p *Publisher) signingKey(ctx context.Context, tx pgx.Tx, bucket string) (string, error) {
	var fpr string
	err := tx.QueryRow(ctx, `SELECT fingerprint FROM kiln.bucket_key WHERE bucket = $1 AND active`, bucket).Scan(&fpr)
	switch {
	case err == nil:
		if !p.Keys.HasSecret(ctx, fpr) {
			return "", fmt.Errorf("bucket %s is signed with key %s, whose secret key is not in %s", bucket, fpr, p.Keys.Home)
		}
		return fpr, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("key of bucket %s: %w", bucket, err)
	}
	fpr, pub, err := p.Keys.Generate(ctx, bucket)
	if err != nil {
		return "", fmt.Errorf("making the key of bucket %s: %w", bucket, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO kiln.bucket_key (bucket, fingerprint, public_key) VALUES ($1, $2, $3)`, bucket, fpr, pub); err != nil {
		return "", fmt.Errorf("recording the key of bucket %s: %w", bucket, err)
	}
	return fpr, nil
}

// writeSnapshot stores the next snapshot of bucket. Only what changed is
// written: in each changed repository the files that are new or have new
// content start living at the new snapshot, and those that went or changed
// stop; unchanged repositories and files are left alone, so the cost does
// not grow with the size of the bucket's manifest.
func (p *Publisher) writeSnapshot(ctx context.Context, tx pgx.Tx, bucket string, views map[string]*repoView, reqs []*request) (int64, int, error) {
	fpr, err := p.signingKey(ctx, tx, bucket)
	if err != nil {
		return 0, 0, err
	}
	var notes []string
	for _, r := range reqs {
		if r.job != nil {
			notes = append(notes, fmt.Sprintf("%s %d", r.kind, *r.job))
		} else {
			notes = append(notes, r.kind)
		}
	}
	note := strings.Join(notes, ", ")
	if len(note) > 1000 {
		note = note[:1000] + "..."
	}
	var id int64
	var seq int
	if err := tx.QueryRow(ctx, `INSERT INTO kiln.snapshot (bucket, seq, note)
		VALUES ($1, (SELECT coalesce(max(seq), 0) + 1 FROM kiln.snapshot WHERE bucket = $1), $2) RETURNING id, seq`, bucket, note).Scan(&id, &seq); err != nil {
		return 0, 0, fmt.Errorf("new snapshot of %s: %w", bucket, err)
	}
	names := make([]string, 0, len(views))
	for n := range views {
		names = append(names, n)
	}
	sort.Strings(names)
	now := time.Now()
	for _, name := range names {
		v := views[name]
		if !v.changed {
			continue
		}
		entries := make([]Entry, 0, len(v.entries))
		for _, e := range v.entries {
			entries = append(entries, e)
		}
		sortEntries(entries)
		var meta []File
		srcs := make([]SourceEntry, 0, len(v.sources))
		for _, s := range v.sources {
			srcs = append(srcs, s)
		}
		if v.format == "deb" {
			meta, err = APTMetadata(ctx, p.Keys, fpr, bucket, v.arch, entries, srcs, now)
		} else {
			meta, err = p.rpmMetadata(ctx, tx, bucket, name, fpr, entries)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("metadata of %s/%s: %w", bucket, name, err)
		}
		if err := writeFiles(ctx, tx, bucket, name, seq, entries, srcs, meta); err != nil {
			return 0, 0, fmt.Errorf("snapshot %d of %s, %s: %w", seq, bucket, name, err)
		}
	}
	return id, seq, nil
}

// stored is a file as the manifest has it.
type stored struct {
	sum  [32]byte
	size int64
	pkg  bool
	job  int64
	// src is the .dsc's blob for a file of a source package.
	src *[32]byte
}

// sameSource reports whether two files belong to the same source package
// (or both to none).
func sameSource(a, b *[32]byte) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// writeFiles brings the newest manifest of one repository to entries, the
// files of srcs, plus meta, as of snapshot seq.
func writeFiles(ctx context.Context, tx pgx.Tx, bucket, platform string, seq int, entries []Entry, srcs []SourceEntry, meta []File) error {
	want := make(map[string]stored, len(entries)+len(meta))
	for _, e := range entries {
		want[e.Path()] = stored{sum: e.Sum, size: e.Size, pkg: true, job: e.JobID}
	}
	for _, s := range srcs {
		dsc := [32]byte(s.DSC)
		files := s.Files
		if s.Changes != nil {
			files = append(files[:len(files):len(files)], *s.Changes)
		}
		for _, f := range files {
			want[s.Dir()+"/"+f.Name] = stored{sum: f.Sum, size: f.Size, job: s.JobID, src: &dsc}
		}
	}
	for _, f := range meta {
		info, err := blob.Put(ctx, tx, bytes.NewReader(f.Data), true)
		if err != nil {
			return fmt.Errorf("storing %s: %w", f.Path, err)
		}
		want[f.Path] = stored{sum: info.Sum, size: info.Size}
	}
	rows, err := tx.Query(ctx, `SELECT path, blob_sha256, source_package FROM kiln.repository_file
		WHERE bucket = $1 AND platform = $2 AND until_seq IS NULL`, bucket, platform)
	if err != nil {
		return err
	}
	have := map[string]stored{}
	for rows.Next() {
		var path string
		var sum, src []byte
		if err := rows.Scan(&path, &sum, &src); err != nil {
			rows.Close()
			return err
		}
		h := stored{sum: [32]byte(sum)}
		if src != nil {
			s := [32]byte(src)
			h.src = &s
		}
		have[path] = h
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var gone []string
	for path, h := range have {
		if w, ok := want[path]; !ok || w.sum != h.sum || !sameSource(w.src, h.src) {
			gone = append(gone, path)
		}
	}
	var paths []string
	var sums, pkgs, srcPkgs [][]byte
	var sizes, jobs []int64
	for path, w := range want {
		if h, ok := have[path]; ok && h.sum == w.sum && sameSource(w.src, h.src) {
			continue
		}
		paths = append(paths, path)
		sums = append(sums, w.sum[:])
		sizes = append(sizes, w.size)
		jobs = append(jobs, w.job)
		if w.pkg {
			pkgs = append(pkgs, w.sum[:])
		} else {
			pkgs = append(pkgs, nil)
		}
		if w.src != nil {
			srcPkgs = append(srcPkgs, w.src[:])
		} else {
			srcPkgs = append(srcPkgs, nil)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE kiln.repository_file SET until_seq = $3
		WHERE bucket = $1 AND platform = $2 AND until_seq IS NULL AND path = ANY($4)`, bucket, platform, seq, gone); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO kiln.repository_file (bucket, platform, path, from_seq, blob_sha256, size, package, job_id, source_package)
		SELECT $1, $2, t.path, $3, t.sum, t.size, t.pkg, nullif(t.job, 0), t.src
		FROM unnest($4::text[], $5::bytea[], $6::bigint[], $7::bytea[], $8::bigint[], $9::bytea[]) AS t(path, sum, size, pkg, job, src)`,
		bucket, platform, seq, paths, sums, sizes, pkgs, jobs, srcPkgs)
	return err
}

// prune removes the bucket's snapshots beyond the keep newest, the files
// only they had, and the parsed packages nothing refers to any more; the
// janitor removes the blobs nothing refers to.
func prune(ctx context.Context, tx pgx.Tx, bucket string, newest int, keep int32) error {
	oldest := newest - int(keep) + 1
	if oldest <= 1 {
		return nil
	}
	var pkgs, srcs [][]byte
	if err := tx.QueryRow(ctx, `WITH gone AS (
			DELETE FROM kiln.repository_file WHERE bucket = $1 AND until_seq <= $2 RETURNING package, source_package)
		SELECT coalesce(array_agg(DISTINCT package) FILTER (WHERE package IS NOT NULL), '{}'),
		       coalesce(array_agg(DISTINCT source_package) FILTER (WHERE source_package IS NOT NULL), '{}') FROM gone`, bucket, oldest).Scan(&pkgs, &srcs); err != nil {
		return fmt.Errorf("pruning %s: %w", bucket, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM kiln.snapshot WHERE bucket = $1 AND seq < $2`, bucket, oldest); err != nil {
		return fmt.Errorf("pruning %s: %w", bucket, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM kiln.binary_package bp WHERE bp.sha256 = ANY($1)
		AND NOT EXISTS (SELECT 1 FROM kiln.repository_file f WHERE f.blob_sha256 = bp.sha256)`, pkgs); err != nil {
		return fmt.Errorf("pruning %s: %w", bucket, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM kiln.source_package sp WHERE sp.sha256 = ANY($1)
		AND NOT EXISTS (SELECT 1 FROM kiln.repository_file f WHERE f.source_package = sp.sha256)`, srcs); err != nil {
		return fmt.Errorf("pruning %s: %w", bucket, err)
	}
	return nil
}
