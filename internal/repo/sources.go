package repo

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/srcpkg"
)

// Source is a Debian source package as the publisher reads and checks it,
// once: what a Sources index is made of.
type Source struct {
	Name    string
	Version string // [epoch:]upstream[-revision]
	// Stanza is the Sources stanza without Directory; ends with a newline.
	Stanza string
	// DSC is the .dsc's blob.
	DSC blob.Sum
}

// SourceFile is one file of a source package in a repository.
type SourceFile struct {
	Name string // base name in the pool directory
	Sum  blob.Sum
	Size int64
}

// SourceEntry is a source package in a repository's view: its files (the
// .dsc first) and, with the bucket's sign_packages, the signed .changes
// the publisher made for it.
type SourceEntry struct {
	Source
	Files   []SourceFile
	JobID   int64
	Changes *SourceFile
	// added is set on entries a request of the running publication added.
	added bool
	// repoPlatform is, for a promoted source, the repository it came from.
	repoPlatform string
}

// poolDir is the pool directory of a source package and of its binaries.
func poolDir(source string) string {
	prefix := source[:1]
	if strings.HasPrefix(source, "lib") && len(source) > 3 {
		prefix = source[:4]
	}
	return "pool/main/" + prefix + "/" + source
}

// noEpoch is a Debian version as file names carry it.
func noEpoch(v string) string {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		return v[i+1:]
	}
	return v
}

// DSCName is the name the .dsc has in the pool, made from its validated
// fields, never from the name it was submitted with.
func (s Source) DSCName() string { return s.Name + "_" + noEpoch(s.Version) + ".dsc" }

// Dir is the source package's pool directory.
func (s Source) Dir() string { return poolDir(s.Name) }

// sourceName is a Debian source package name (Debian policy 5.6.1).
var sourceName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]{1,199}$`)

// companion is what the file names a .dsc lists may look like: the shapes
// dpkg-source makes, all starting with the source name. None ends in .deb,
// .dsc or .changes, so a source package's files never take the path of a
// binary package or of a file the publisher makes.
func companion(source string) *regexp.Regexp {
	comp := `(gz|bz2|lzma|xz|zst)`
	return regexp.MustCompile(`^` + regexp.QuoteMeta(source) + `_[A-Za-z0-9.+~-]+\.(orig(-[A-Za-z0-9][A-Za-z0-9-]*)?\.tar(\.` + comp + `)?(\.asc)?|debian\.tar\.` + comp + `|tar\.` + comp + `|diff\.gz)$`)
}

// dscBody is the text of a .dsc without its clear-signature (srcpkg.ParseDSC
// has checked the armor already).
func dscBody(data []byte) string {
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	if !strings.HasPrefix(strings.TrimLeft(text, "\n"), "-----BEGIN PGP SIGNED MESSAGE-----") {
		return text
	}
	lines := strings.Split(strings.TrimLeft(text, "\n"), "\n")
	i := 1
	for i < len(lines) && lines[i] != "" {
		i++
	}
	var b strings.Builder
	for _, l := range lines[i+1:] {
		if strings.HasPrefix(l, "-----BEGIN PGP SIGNATURE-----") {
			break
		}
		b.WriteString(strings.TrimPrefix(l, "- ") + "\n")
	}
	return b.String()
}

// hashed are the .dsc fields the Sources stanza computes itself (or, for
// Source, renames).
var hashed = map[string]bool{"source": true, "package": true, "directory": true, "files": true,
	"checksums-sha1": true, "checksums-sha256": true, "checksums-sha512": true}

// ParseSource reads a .dsc and makes its Sources stanza. files are the
// .dsc's own size, MD5 and SHA-256 (its name is made here: Source.DSCName)
// followed by those of every file it names, in the .dsc's order, as the
// caller computed them from the stored bytes.
func ParseSource(dsc []byte, files []FileSums) (Source, error) {
	d, err := srcpkg.ParseDSC(dsc)
	if err != nil {
		return Source{}, err
	}
	s := Source{Name: d.Source}
	if !sourceName.MatchString(s.Name) {
		return Source{}, fmt.Errorf("source name %q is not a Debian source package name", s.Name)
	}
	var b strings.Builder
	b.WriteString("Package: " + s.Name + "\n")
	keep := false
	for _, line := range strings.Split(strings.TrimRight(dscBody(dsc), "\n"), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
			// The one paragraph's ends (ParseDSC refused a second one).
			continue
		case line[0] == ' ' || line[0] == '\t':
			if keep {
				b.WriteString(line + "\n")
			}
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		keep = !hashed[strings.ToLower(k)]
		if strings.EqualFold(k, "version") {
			s.Version = strings.TrimSpace(v)
		}
		if keep {
			b.WriteString(line + "\n")
		}
	}
	if !validVersion.MatchString(s.Version) || strings.Contains(s.Version, "..") || strings.Contains(s.Version, "_") {
		return Source{}, fmt.Errorf("version %q of %s is not a valid version", s.Version, s.Name)
	}
	if len(files) != len(d.Files)+1 {
		return Source{}, fmt.Errorf("%s: %d files given for a .dsc naming %d", s.Name, len(files)-1, len(d.Files))
	}
	files = append([]FileSums(nil), files...)
	files[0].Name = s.DSCName()
	b.WriteString("Files:\n")
	for _, f := range files {
		fmt.Fprintf(&b, " %x %d %s\n", f.MD5, f.Size, f.Name)
	}
	b.WriteString("Checksums-Sha256:\n")
	for _, f := range files {
		fmt.Fprintf(&b, " %x %d %s\n", f.SHA256, f.Size, f.Name)
	}
	s.Stanza = b.String()
	return s, nil
}

// FileSums are a file's name, size and hashes, computed from its bytes.
type FileSums struct {
	Name   string
	Size   int64
	MD5    [16]byte
	SHA256 [32]byte
}

// SourcesIndex is the APT Sources file of ss: the stored stanzas with
// Directory appended, in name order. Deterministic, like PackagesIndex.
func SourcesIndex(ss []SourceEntry) []byte {
	sort.Slice(ss, func(i, j int) bool { return ss[i].Name < ss[j].Name })
	var b bytes.Buffer
	for i, s := range ss {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(s.Stanza)
		fmt.Fprintf(&b, "Directory: %s\n", s.Dir())
	}
	return b.Bytes()
}

// sumBlob streams a blob and returns its MD5 and SHA-256 (blob.WriteTo
// checks the SHA-256 against the one it was stored with).
func sumBlob(ctx context.Context, tx pgx.Tx, sum blob.Sum) (m [16]byte, s [32]byte, size int64, err error) {
	hm, hs := md5.New(), sha256.New()
	size, err = blob.WriteTo(ctx, tx, sum, io.MultiWriter(hm, hs))
	if err != nil {
		return m, s, 0, err
	}
	copy(m[:], hm.Sum(nil))
	copy(s[:], hs.Sum(nil))
	return m, s, size, nil
}

// errSource is a source package the publisher will not publish; its
// binaries still go in.
var errSource = errors.New("source package not published")

// jobSources are the Debian source packages of a job (kiln.publisher_job_sources),
// each checked against its .dsc and read once into kiln.source_package. A
// source package that does not pass is left out, and notes say why.
func (p *Publisher) jobSources(ctx context.Context, tx pgx.Tx, jobID int64) ([]SourceEntry, []string, error) {
	rows, err := tx.Query(ctx, `SELECT seq, file_name, blob_sha256, size, is_dsc FROM kiln.publisher_job_sources($1)`, jobID)
	if err != nil {
		return nil, nil, fmt.Errorf("source packages of job %d: %w", jobID, err)
	}
	type file struct {
		seq  int32
		name string
		sum  []byte
		size int64
		dsc  bool
	}
	files, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (file, error) {
		var f file
		return f, r.Scan(&f.seq, &f.name, &f.sum, &f.size, &f.dsc)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("source packages of job %d: %w", jobID, err)
	}
	var out []SourceEntry
	var notes []string
	for i := 0; i < len(files); {
		j := i + 1
		for j < len(files) && files[j].seq == files[i].seq {
			j++
		}
		dsc := files[i]
		others := map[string]SourceFile{}
		for _, f := range files[i+1 : j] {
			others[f.name] = SourceFile{Name: f.name, Sum: blob.Sum(f.sum), Size: f.size}
		}
		i = j
		e, err := p.sourcePackage(ctx, tx, blob.Sum(dsc.sum), others)
		if errors.Is(err, errSource) {
			notes = append(notes, fmt.Sprintf("source %s not published: %v", dsc.name, err))
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("job %d, %s: %w", jobID, dsc.name, err)
		}
		e.JobID = jobID
		out = append(out, e)
	}
	return out, notes, nil
}

// sourcePackage returns the source package whose .dsc is the blob dscSum,
// with others the files submitted with it (by name), reading and checking
// it until it is published (recordSources).
func (p *Publisher) sourcePackage(ctx context.Context, tx pgx.Tx, dscSum blob.Sum, others map[string]SourceFile) (SourceEntry, error) {
	var data bytes.Buffer
	size, _, err := blob.Stat(ctx, tx, dscSum)
	if err != nil {
		return SourceEntry{}, err
	}
	if size > srcpkg.MaxDSCSize {
		return SourceEntry{}, fmt.Errorf("%w: the .dsc is %d bytes", errSource, size)
	}
	if _, err := blob.WriteTo(ctx, tx, dscSum, &data); err != nil {
		return SourceEntry{}, err
	}
	d, err := srcpkg.ParseDSC(data.Bytes())
	if err != nil {
		return SourceEntry{}, fmt.Errorf("%w: %v", errSource, err)
	}
	if !sourceName.MatchString(d.Source) {
		return SourceEntry{}, fmt.Errorf("%w: source name %q is not a Debian source package name", errSource, d.Source)
	}
	shape := companion(d.Source)
	e := SourceEntry{}
	for _, f := range d.Files {
		if !shape.MatchString(f.Name) {
			return SourceEntry{}, fmt.Errorf("%w: the .dsc names %q, which is not a file name dpkg-source makes for %s", errSource, f.Name, d.Source)
		}
		o, ok := others[f.Name]
		if !ok {
			return SourceEntry{}, fmt.Errorf("%w: %s, which the .dsc names, was not submitted", errSource, f.Name)
		}
		if o.Size != f.Size {
			return SourceEntry{}, fmt.Errorf("%w: %s is %d bytes, the .dsc says %d", errSource, f.Name, o.Size, f.Size)
		}
		// The content's SHA-256 as stored (a staged blob's key is random;
		// blob.WriteTo checks the bytes against it when they are read).
		var digest []byte
		if err := tx.QueryRow(ctx, `SELECT coalesce(content_sha256, sha256) FROM kiln.blob WHERE sha256 = $1`, o.Sum[:]).Scan(&digest); err != nil {
			return SourceEntry{}, fmt.Errorf("%s: %w", f.Name, err)
		}
		if blob.Sum(digest) != f.SHA256 {
			return SourceEntry{}, fmt.Errorf("%w: %s has SHA-256 %x, the .dsc says %x", errSource, f.Name, digest, f.SHA256)
		}
		e.Files = append(e.Files, o)
	}
	err = tx.QueryRow(ctx, `SELECT name, version, stanza FROM kiln.source_package WHERE sha256 = $1`, dscSum[:]).
		Scan(&e.Name, &e.Version, &e.Stanza)
	switch {
	case err == nil:
	case errors.Is(err, pgx.ErrNoRows):
		dm, ds, n, err := sumBlob(ctx, tx, dscSum)
		if err != nil {
			return SourceEntry{}, err
		}
		sums := []FileSums{{Size: n, MD5: dm, SHA256: ds}}
		for i, f := range e.Files {
			m, s, n, err := sumBlob(ctx, tx, f.Sum)
			if err != nil {
				return SourceEntry{}, fmt.Errorf("%s: %w", f.Name, err)
			}
			if s != d.Files[i].SHA256 {
				return SourceEntry{}, fmt.Errorf("%w: %s has SHA-256 %x, the .dsc says %x", errSource, f.Name, s, d.Files[i].SHA256)
			}
			sums = append(sums, FileSums{Name: f.Name, Size: n, MD5: m, SHA256: s})
		}
		src, err := ParseSource(data.Bytes(), sums)
		if err != nil {
			return SourceEntry{}, fmt.Errorf("%w: %v", errSource, err)
		}
		e.Name, e.Version, e.Stanza = src.Name, src.Version, src.Stanza
	default:
		return SourceEntry{}, fmt.Errorf("source package %s: %w", dscSum, err)
	}
	e.DSC = dscSum
	e.Files = append([]SourceFile{{Name: e.DSCName(), Sum: dscSum, Size: size}}, e.Files...)
	return e, nil
}

// readSources reads the source packages of the repository files that where
// selects (on kiln.repository_file f), by platform.
func readSources(ctx context.Context, tx pgx.Tx, where string, args ...any) (map[string][]SourceEntry, error) {
	rows, err := tx.Query(ctx, `SELECT f.platform, f.path, f.blob_sha256, f.size, coalesce(f.job_id, 0), f.source_package, sp.name, sp.version, sp.stanza
		FROM kiln.repository_file f JOIN kiln.source_package sp ON sp.sha256 = f.source_package
		WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type key struct {
		platform string
		dsc      blob.Sum
	}
	byKey := map[key]*SourceEntry{}
	var order []key
	for rows.Next() {
		var platform, path string
		var sum, dsc []byte
		var f SourceFile
		var s Source
		var job int64
		if err := rows.Scan(&platform, &path, &sum, &f.Size, &job, &dsc, &s.Name, &s.Version, &s.Stanza); err != nil {
			return nil, err
		}
		f.Sum, s.DSC = blob.Sum(sum), blob.Sum(dsc)
		f.Name = path[strings.LastIndexByte(path, '/')+1:]
		k := key{platform, s.DSC}
		e := byKey[k]
		if e == nil {
			e = &SourceEntry{Source: s, JobID: job}
			byKey[k] = e
			order = append(order, k)
		}
		switch {
		case strings.HasSuffix(f.Name, ".changes"):
			e.Changes = &f
		default:
			e.Files = append(e.Files, f)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := map[string][]SourceEntry{}
	for _, k := range order {
		e := byKey[k]
		// The .dsc first, then the files it names, by name.
		sort.Slice(e.Files, func(i, j int) bool {
			a, b := e.Files[i], e.Files[j]
			if (a.Sum == e.DSC) != (b.Sum == e.DSC) {
				return a.Sum == e.DSC
			}
			return a.Name < b.Name
		})
		out[k.platform] = append(out[k.platform], *e)
	}
	return out, nil
}

// promotedSources are the source packages of a job as its own bucket
// serves them, without their .changes (signed for that bucket: the target
// signs its own).
func (p *Publisher) promotedSources(ctx context.Context, tx pgx.Tx, jobID int64) ([]SourceEntry, error) {
	byPlatform, err := readSources(ctx, tx, `f.job_id = $1 AND f.until_seq IS NULL
		AND f.bucket = (SELECT j.bucket FROM kiln.job j WHERE j.id = $1)`, jobID)
	if err != nil {
		return nil, fmt.Errorf("source packages of job %d: %w", jobID, err)
	}
	var out []SourceEntry
	for platform, ss := range byPlatform {
		for _, s := range ss {
			s.Changes = nil
			s.repoPlatform = platform
			out = append(out, s)
		}
	}
	return out, nil
}

// applySources adds source packages to the Debian repositories: a job's
// (repoPlatform empty) to every Debian repository its binaries in adds go
// to, a promoted one to its own platform's. A newer version replaces an
// older one of the same name; an older one is kept out. It returns how many
// went in and notes on those kept out.
func applySources(views map[string]*repoView, adds []Entry, srcs []SourceEntry) (int, []string) {
	platforms := map[string]bool{}
	for _, e := range adds {
		if e.Format == "deb" {
			platforms[e.repoPlatform] = true
		}
	}
	n := 0
	var kept []string
	for _, s := range srcs {
		for pl := range platforms {
			if s.repoPlatform != "" && s.repoPlatform != pl {
				continue
			}
			v := views[pl]
			if old, ok := v.sources[s.Name]; ok {
				if old.DSC == s.DSC {
					continue
				}
				if CompareDeb(s.Version, old.Version) <= 0 {
					kept = append(kept, fmt.Sprintf("source %s %s kept (%s is not newer)", s.Name, old.Version, s.Version))
					continue
				}
			}
			s.added = true
			v.sources[s.Name] = s
			v.changed = true
			n++
		}
	}
	return n, kept
}

// recordSources stores the source packages the running publication added
// (once each), so that they are read from kiln.source_package from now on.
// Those kept out are not recorded: nothing would ever forget them.
func recordSources(ctx context.Context, tx pgx.Tx, views map[string]*repoView) error {
	for _, v := range views {
		for _, s := range v.sources {
			if !s.added {
				continue
			}
			if _, err := tx.Exec(ctx, `INSERT INTO kiln.source_package (sha256, name, version, stanza) VALUES ($1, $2, $3, $4)
				ON CONFLICT (sha256) DO NOTHING`, s.DSC[:], s.Name, s.Version, s.Stanza); err != nil {
				return fmt.Errorf("recording source %s: %w", s.Name, err)
			}
		}
	}
	return nil
}
