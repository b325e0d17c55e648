package submit

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kiln-build/kiln/internal/platform"
	"github.com/kiln-build/kiln/internal/split"
	"github.com/kiln-build/kiln/internal/srcpkg"
)

// Kinds of RefusedError: what a submission was refused for before anything
// was uploaded.
const (
	// Unknown: the submission names a bucket or platform that does not
	// exist.
	Unknown = "unknown"
	// Forbidden: the person may not submit to the bucket.
	Forbidden = "forbidden"
	// Unusable: what it names exists but cannot take the job now (an
	// inactive platform, a submission key already used for other files).
	Unusable = "unusable"
	// Malformed: the files and the selection do not make a job (mixed
	// formats, a platform of the other format).
	Malformed = "malformed"
	// Corrupt: a package's bytes are empty, truncated or damaged.
	Corrupt = "corrupt"
)

// RefusedError is a submission refused before its upload. The splitter
// stays the authority (it checks everything again); these are the checks a
// client can make at once, so that a person does not learn of a mistake
// after the whole upload.
type RefusedError struct {
	Kind string
	Msg  string
}

func (e *RefusedError) Error() string { return e.Msg }

func refused(kind, format string, args ...any) error {
	return &RefusedError{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Precheck checks a submission against the farm as this session sees it:
// the bucket exists and the session may submit to it, the packages are of
// one format and parse (an SRPM's digests cover its whole payload, so an
// empty or truncated file is found here), and the platform selection
// resolves to active platforms of that format.
func Precheck(ctx context.Context, db platform.DB, bucket string, selection []string, pkgs []Package) error {
	var exists, open, allowed bool
	err := db.QueryRow(ctx, `
		SELECT b.name IS NOT NULL, coalesce(b.open, false),
		       EXISTS (SELECT 1 FROM kiln.bucket_grant g
		                 JOIN pg_catalog.pg_roles gr ON gr.rolname = g.grantee
		                 JOIN pg_catalog.pg_roles sr ON sr.rolname = session_user
		                WHERE g.bucket = $1 AND pg_catalog.pg_has_role(sr.oid, gr.oid, 'MEMBER'))
		    OR pg_catalog.pg_has_role(session_user, 'kiln_admin', 'MEMBER')
		  FROM (SELECT 1) AS one LEFT JOIN kiln.bucket b ON b.name = $1`, bucket).Scan(&exists, &open, &allowed)
	if err != nil {
		return fmt.Errorf("checking bucket %s: %w", bucket, err)
	}
	switch {
	case !exists:
		return refused(Unknown, "bucket %s does not exist (kiln admin bucket list shows the buckets)", bucket)
	case !open && !allowed:
		return refused(Forbidden, "you may not submit to bucket %s: it is not open and you have no grant (ask a kiln admin: kiln admin bucket grant %s YOU)", bucket, bucket)
	}

	format := ""
	for _, p := range pkgs {
		if format != "" && p.Format != format {
			return refused(Malformed, "the files mix source RPMs and Debian source packages (%s is a %s); submit them as separate jobs", p.Name, describeFormat(p.Format))
		}
		format = p.Format
		if p.Format == "srpm" {
			if err := checkSRPM(p.Path); err != nil {
				return err
			}
		}
	}

	platforms, err := platform.List(ctx, db)
	if err != nil {
		return err
	}
	if _, err := split.Resolve(selection, platforms, format, nil); err != nil {
		kind := Malformed
		msg := err.Error()
		switch {
		case strings.HasPrefix(msg, "unknown platform"):
			kind = Unknown
			msg += " (kiln platforms lists them)"
		case strings.Contains(msg, "is inactive"), strings.HasPrefix(msg, "no active platform"):
			kind = Unusable
			msg += " (kiln platforms shows which are active)"
		}
		return refused(kind, "%s", msg)
	}
	return nil
}

func describeFormat(f string) string {
	if f == "dsc" {
		return "Debian source package"
	}
	return "source RPM"
}

// checkSRPM parses a source RPM through to the end of its payload.
func checkSRPM(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() == 0 {
		return refused(Corrupt, "%s is empty", path)
	}
	if _, err := srcpkg.ParseRPM(f); err != nil {
		return refused(Corrupt, "%s is not a readable source RPM (truncated or damaged?): %v", path, err)
	}
	return nil
}

// sameFiles refuses a submission key that names job id when the job's
// packages are not these files: answering with the old job would hide
// that the new files were never submitted.
func sameFiles(ctx context.Context, db queryer, id int64, key string, pkgs []Package) error {
	type file struct {
		name string
		size int64
		sum  []byte
	}
	var names []string
	var sizes []int64
	var sums [][]byte
	err := db.QueryRow(ctx, `SELECT coalesce(array_agg(f.name ORDER BY f.ord), '{}'), coalesce(array_agg(f.size ORDER BY f.ord), '{}'),
		coalesce(array_agg(f.sum ORDER BY f.ord), '{}')
		FROM (SELECT p.file_name AS name, p.size, coalesce(b.content_sha256, p.blob_sha256) AS sum, p.seq::float8 AS ord
		        FROM kiln.package p LEFT JOIN kiln.blob b ON b.sha256 = p.blob_sha256 WHERE p.job_id = $1
		      UNION ALL
		      SELECT pf.file_name, pf.size, coalesce(b.content_sha256, pf.blob_sha256), pf.seq + 0.5
		        FROM kiln.package_file pf LEFT JOIN kiln.blob b ON b.sha256 = pf.blob_sha256 WHERE pf.job_id = $1) f`, id).
		Scan(&names, &sizes, &sums)
	if err != nil {
		return fmt.Errorf("reading the files of job %d: %w", id, err)
	}
	stored := map[string]file{}
	for i := range names {
		stored[names[i]] = file{names[i], sizes[i], sums[i]}
	}
	differ := func(what string) error {
		return refused(Unusable, "submission key %s was used for job %d with other files (%s); give a new --key, or leave --key out", key, id, what)
	}
	local := 0
	check := func(path, name string) error {
		local++
		s, ok := stored[name]
		if !ok {
			return differ(name + " is not in it")
		}
		sum, size, err := hashFile(path)
		if err != nil {
			return err
		}
		if size != s.size || string(sum) != string(s.sum) {
			return differ(name + " has other content")
		}
		return nil
	}
	for _, p := range pkgs {
		if err := check(p.Path, p.Name); err != nil {
			return err
		}
		for _, f := range p.Files {
			if err := check(f.Path, f.Name); err != nil {
				return err
			}
		}
	}
	if local != len(stored) {
		return differ(fmt.Sprintf("it has %d files, not %d", len(stored), local))
	}
	return nil
}

func hashFile(path string) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", path, err)
	}
	return h.Sum(nil), n, nil
}
