// Package environment makes, stores and caches clean build environments.
//
// An environment is what a platform builds in. For Debian platforms (the
// sbuild backend) it is a tarball made by mmdebstrap from a Spec
// (distribution, architecture, mirror, components, extra packages):
//
//	mmdebstrap --variant=buildd --mode=unshare --skip=output/mknod
//	           --architectures=ARCH --components=C,... [--include=P,...] DIST OUT.tar.zst MIRROR
//
// run as the builder's unprivileged build user (unshare mode needs its
// subordinate uid and gid ranges; --skip=output/mknod leaves device nodes
// out, so the tarball unpacks in a user namespace). It is stored as a
// verified blob (internal/blob) and recorded with kiln.environment_install,
// so every builder of the platform builds in the same bytes; builders fetch
// it into a Cache by SHA-256.
package environment

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/beneath"
	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/sandbox"
)

// Spec is what an environment is made from (kiln.environment.spec).
type Spec struct {
	// Dist is the distribution (suite), such as bookworm.
	Dist string `json:"dist"`
	// Arch is the Debian architecture, such as amd64.
	Arch string `json:"arch"`
	// Mirror is the archive's URL, such as http://deb.debian.org/debian.
	Mirror string `json:"mirror"`
	// Components are the archive's components (main when empty).
	Components []string `json:"components"`
	// Packages are installed on top of the buildd variant.
	Packages []string `json:"packages"`
}

var (
	word      = regexp.MustCompile(`^[a-z0-9][a-z0-9.+~-]{0,63}$`)
	component = regexp.MustCompile(`^[a-z0-9][a-z0-9/_.-]{0,63}$`)
	mirrorURL = regexp.MustCompile(`^(https?|file)://[A-Za-z0-9.:/_~%+-]+$`)
)

// Check reports what is wrong with s, and fills in the default component.
func (s *Spec) Check() error {
	if !word.MatchString(s.Dist) {
		return fmt.Errorf("environment: distribution %q is not a suite name such as bookworm", s.Dist)
	}
	if !word.MatchString(s.Arch) {
		return fmt.Errorf("environment: architecture %q is not a Debian architecture such as amd64", s.Arch)
	}
	if !mirrorURL.MatchString(s.Mirror) {
		return fmt.Errorf("environment: mirror %q is not an http, https or file URL", s.Mirror)
	}
	if len(s.Components) == 0 {
		s.Components = []string{"main"}
	}
	for _, c := range s.Components {
		if !component.MatchString(c) {
			return fmt.Errorf("environment: component %q is not a component name such as main", c)
		}
	}
	for _, p := range s.Packages {
		if !word.MatchString(p) {
			return fmt.Errorf("environment: extra package %q is not a package name", p)
		}
	}
	return nil
}

// Key is a short digest of s, for naming files made from it.
func (s Spec) Key() string {
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%x", sum[:8])
}

// Command is the mmdebstrap command line that makes s into out (a .tar.zst).
func (s Spec) Command(out string) []string {
	args := []string{"mmdebstrap", "--variant=buildd", "--mode=unshare", "--skip=output/mknod",
		"--architectures=" + s.Arch, "--components=" + strings.Join(s.Components, ",")}
	if len(s.Packages) > 0 {
		args = append(args, "--include="+strings.Join(s.Packages, ","))
	}
	return append(args, s.Dist, out, s.Mirror)
}

// Made is an environment's tarball, made but perhaps not stored yet.
type Made struct {
	Path string
	Spec Spec
	Sum  blob.Sum
	Size int64
	// Packages are the installed packages and their versions.
	Packages map[string]string
}

// tarball is the name mmdebstrap writes the environment to, in the build
// user's directory, and Create copies it to, in the builder's.
const tarball = "environment.tar.zst"

// Create makes the environment spec describes, running mmdebstrap with r
// (as the build user, who must be able to write dir) and its output to log,
// and copies the tarball into the builder's own directory into. The copy is
// read beneath dir (internal/beneath): whatever the build user left there,
// a symbolic link or a FIFO, is refused, never followed; everything after
// (hashing, listing the packages, storing) reads the builder's copy.
func Create(ctx context.Context, r sandbox.Runner, spec Spec, dir, into string, log io.Writer) (Made, error) {
	if err := spec.Check(); err != nil {
		return Made{}, err
	}
	if err := r.Run(ctx, sandbox.Command{Dir: dir, Args: spec.Command(filepath.Join(dir, tarball)), Output: log}); err != nil {
		return Made{}, fmt.Errorf("making the %s/%s environment with mmdebstrap: %w", spec.Dist, spec.Arch, err)
	}
	made, err := beneath.OpenRoot(dir)
	if err != nil {
		return Made{}, fmt.Errorf("reading the environment: %w", err)
	}
	defer made.Close()
	own, err := beneath.OpenRoot(into)
	if err != nil {
		return Made{}, fmt.Errorf("reading the environment: %w", err)
	}
	defer own.Close()
	if _, err := made.CopyFile(tarball, own, tarball, 0o644); err != nil {
		return Made{}, fmt.Errorf("reading the environment mmdebstrap made: %w", err)
	}
	return Inspect(ctx, filepath.Join(into, tarball), spec)
}

// Inspect reads the tarball at path: its SHA-256, size and installed
// packages.
func Inspect(ctx context.Context, path string, spec Spec) (Made, error) {
	f, err := os.Open(path)
	if err != nil {
		return Made{}, fmt.Errorf("reading the environment: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Made{}, fmt.Errorf("hashing the environment %s: %w", path, err)
	}
	m := Made{Path: path, Spec: spec, Size: n}
	copy(m.Sum[:], h.Sum(nil))
	var status bytes.Buffer
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, "tar", "--zstd", "-xOf", path, "./var/lib/dpkg/status")
	cmd.Stdout, cmd.Stderr = &status, &stderr
	if err := cmd.Run(); err != nil {
		return Made{}, fmt.Errorf("reading the package list of %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	m.Packages = installed(&status)
	if len(m.Packages) == 0 {
		return Made{}, fmt.Errorf("the environment %s has no installed packages", path)
	}
	return m, nil
}

// installed reads a dpkg status file: the installed packages' versions.
func installed(r io.Reader) map[string]string {
	pkgs := map[string]string{}
	var name, version, status string
	end := func() {
		if name != "" && strings.HasSuffix(status, " installed") {
			pkgs[name] = version
		}
		name, version, status = "", "", ""
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			end()
		case strings.HasPrefix(line, "Package: "):
			name = strings.TrimPrefix(line, "Package: ")
		case strings.HasPrefix(line, "Version: "):
			version = strings.TrimPrefix(line, "Version: ")
		case strings.HasPrefix(line, "Status: "):
			status = strings.TrimPrefix(line, "Status: ")
		}
	}
	end()
	return pkgs
}

// Environment is a stored environment (a row of kiln.environment).
type Environment struct {
	ID       int64
	Platform string
	Sum      blob.Sum
	Size     int64
	Spec     Spec
	Packages map[string]string
	Created  time.Time
	Builder  string
	// Retired is when a newer one replaced it; zero while it is current.
	Retired time.Time
}

// Install stores m's tarball as a verified blob and records it, as made by
// builder (registered by the session's role), as platform's current
// environment; the one it replaces is retired. Only a builder of the
// platform may do it (kiln.environment_install checks).
func Install(ctx context.Context, db blob.DB, builder, platform string, m Made) (Environment, error) {
	info, err := blob.PutFile(ctx, db, m.Path, true)
	if err != nil {
		return Environment{}, fmt.Errorf("storing the environment for %s: %w", platform, err)
	}
	if info.Digest != m.Sum {
		return Environment{}, fmt.Errorf("storing the environment for %s: %w", platform, blob.ErrChanged)
	}
	spec, err := json.Marshal(m.Spec)
	if err != nil {
		return Environment{}, fmt.Errorf("environment spec: %w", err)
	}
	pkgs, err := json.Marshal(m.Packages)
	if err != nil {
		return Environment{}, fmt.Errorf("environment package list: %w", err)
	}
	var id int64
	if err := db.QueryRow(ctx, `SELECT kiln.environment_install($1, $2, $3, $4, $5)`,
		builder, platform, info.Sum[:], spec, pkgs).Scan(&id); err != nil {
		return Environment{}, fmt.Errorf("installing the environment for %s: %w", platform, err)
	}
	return Get(ctx, db, id)
}

const columns = `e.id, e.platform, e.blob_sha256, e.size, e.spec, e.packages, e.created_at, e.builder, e.retired_at`

// ErrNone means a platform has no environment yet.
var ErrNone = errors.New("no environment")

// Current returns platform's current environment (ErrNone when it has
// none).
func Current(ctx context.Context, db blob.DB, platform string) (Environment, error) {
	e, err := scan(db.QueryRow(ctx, `SELECT `+columns+` FROM kiln.platform_environment pe
		JOIN kiln.environment e ON e.id = pe.environment WHERE pe.platform = $1`, platform))
	if errors.Is(err, pgx.ErrNoRows) {
		return Environment{}, fmt.Errorf("platform %s: %w", platform, ErrNone)
	}
	if err != nil {
		return Environment{}, fmt.Errorf("platform %s's environment: %w", platform, err)
	}
	return e, nil
}

// Get returns environment id.
func Get(ctx context.Context, db blob.DB, id int64) (Environment, error) {
	e, err := scan(db.QueryRow(ctx, `SELECT `+columns+` FROM kiln.environment e WHERE e.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Environment{}, fmt.Errorf("environment %d: %w", id, ErrNone)
	}
	if err != nil {
		return Environment{}, fmt.Errorf("environment %d: %w", id, err)
	}
	return e, nil
}

// List returns platform's environments (every platform's when it is
// empty), newest first.
func List(ctx context.Context, db blob.DB, platform string) ([]Environment, error) {
	rows, err := db.Query(ctx, `SELECT `+columns+` FROM kiln.environment e
		WHERE $1 = '' OR e.platform = $1 ORDER BY e.platform, e.created_at DESC, e.id DESC`, platform)
	if err != nil {
		return nil, fmt.Errorf("listing environments: %w", err)
	}
	defer rows.Close()
	var out []Environment
	for rows.Next() {
		e, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("listing environments: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing environments: %w", err)
	}
	return out, nil
}

func scan(row pgx.Row) (Environment, error) {
	var (
		e             Environment
		sum           []byte
		spec, pkgs    []byte
		retired       *time.Time
		specErr, pErr error
	)
	if err := row.Scan(&e.ID, &e.Platform, &sum, &e.Size, &spec, &pkgs, &e.Created, &e.Builder, &retired); err != nil {
		return Environment{}, err
	}
	copy(e.Sum[:], sum)
	specErr = json.Unmarshal(spec, &e.Spec)
	pErr = json.Unmarshal(pkgs, &e.Packages)
	if err := errors.Join(specErr, pErr); err != nil {
		return Environment{}, fmt.Errorf("environment %d: %w", e.ID, err)
	}
	if retired != nil {
		e.Retired = *retired
	}
	return e, nil
}
