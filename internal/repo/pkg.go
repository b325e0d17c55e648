package repo

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// Package is a binary package as the publisher reads it, once.
type Package struct {
	Format  string // deb or rpm
	Name    string
	Version string // [epoch:]upstream[-revision], or [epoch:]version-release
	Arch    string
	Source  string
	// Stanza is a deb's control stanza without the fields the index adds
	// (Filename, Size, hashes); ends with a newline.
	Stanza string
}

var (
	validName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9+._-]{0,199}$`)
	validVersion = regexp.MustCompile(`^[A-Za-z0-9.+~:_-]{1,200}$`)
	validArch    = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)
)

func (p Package) check() error {
	switch {
	case !validName.MatchString(p.Name) || strings.Contains(p.Name, ".."):
		return fmt.Errorf("package name %q is not a valid package name", p.Name)
	case !validName.MatchString(p.Source) || strings.Contains(p.Source, ".."):
		return fmt.Errorf("source name %q is not a valid package name", p.Source)
	case !validVersion.MatchString(p.Version) || strings.Contains(p.Version, ".."):
		return fmt.Errorf("version %q of %s is not a valid version", p.Version, p.Name)
	case !validArch.MatchString(p.Arch):
		return fmt.Errorf("architecture %q of %s is not valid", p.Arch, p.Name)
	}
	return nil
}

// Path is where the package lives in its repository. It is made from the
// validated fields only, never from the file name a build gave it.
func (p Package) Path() string {
	v := p.Version
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	if p.Format == "rpm" {
		return fmt.Sprintf("Packages/%s/%s-%s.%s.rpm", strings.ToLower(p.Name[:1]), p.Name, v, p.Arch)
	}
	prefix := p.Source[:1]
	if strings.HasPrefix(p.Source, "lib") && len(p.Source) > 3 {
		prefix = p.Source[:4]
	}
	return fmt.Sprintf("pool/main/%s/%s/%s_%s_%s.deb", prefix, p.Source, p.Name, v, p.Arch)
}

// Newer reports whether p has a higher version than q (same format).
func (p Package) Newer(q Package) bool {
	if p.Format == "rpm" {
		return CompareRPM(p.Version, q.Version) > 0
	}
	return CompareDeb(p.Version, q.Version) > 0
}

// indexed are the fields an APT index computes itself.
var indexed = map[string]bool{"filename": true, "size": true, "md5sum": true, "sha1": true, "sha256": true, "sha512": true, "description-md5": true}

// ParseDebControl reads a deb's control stanza (as dpkg-deb -f prints it).
func ParseDebControl(control []byte) (Package, error) {
	p := Package{Format: "deb"}
	var b strings.Builder
	keep := false
	for _, line := range strings.Split(strings.TrimRight(string(control), "\n"), "\n") {
		if line == "" {
			return Package{}, fmt.Errorf("control data has more than one stanza")
		}
		if line[0] == ' ' || line[0] == '\t' {
			if keep {
				b.WriteString(line + "\n")
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return Package{}, fmt.Errorf("control line %q is not a field", line)
		}
		v = strings.TrimSpace(v)
		keep = !indexed[strings.ToLower(k)]
		if keep {
			b.WriteString(line + "\n")
		}
		switch strings.ToLower(k) {
		case "package":
			p.Name = v
		case "version":
			p.Version = v
		case "architecture":
			p.Arch = v
		case "source":
			// "Source: name (version)" when the versions differ.
			p.Source, _, _ = strings.Cut(v, " ")
		}
	}
	if p.Source == "" {
		p.Source = p.Name
	}
	p.Stanza = b.String()
	return p, p.check()
}

// ReadPackage reads the package file at path (a .deb or .rpm).
func ReadPackage(ctx context.Context, format, path string) (Package, error) {
	switch format {
	case "deb":
		out, err := run(ctx, "dpkg-deb", "--field", path)
		if err != nil {
			return Package{}, err
		}
		return ParseDebControl(out)
	case "rpm":
		out, err := run(ctx, "rpm", "--query", "--package", "--nosignature", "--nodigest",
			"--queryformat", `%{NAME}\t%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{SOURCERPM}`, path)
		if err != nil {
			return Package{}, err
		}
		f := strings.Split(string(out), "\t")
		if len(f) != 6 {
			return Package{}, fmt.Errorf("rpm printed %q for %s", out, path)
		}
		v := f[2] + "-" + f[3]
		if f[1] != "0" {
			v = f[1] + ":" + v
		}
		p := Package{Format: "rpm", Name: f[0], Version: v, Arch: f[4], Source: srpmName(f[5], f[0])}
		if f[5] == "(none)" {
			return Package{}, fmt.Errorf("%s is a source package, not a binary one", p.Name)
		}
		return p, p.check()
	}
	return Package{}, fmt.Errorf("unknown package format %q", format)
}

// srpmName turns name-version-release.src.rpm into name.
func srpmName(srpm, fallback string) string {
	s := strings.TrimSuffix(srpm, ".src.rpm")
	for range 2 {
		i := strings.LastIndexByte(s, '-')
		if i <= 0 {
			return fallback
		}
		s = s[:i]
	}
	return s
}

func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}
