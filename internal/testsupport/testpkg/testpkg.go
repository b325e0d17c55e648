// Package testpkg makes real source packages for tests: SRPMs with
// `rpmbuild -bs` and Debian source packages with `dpkg-source -b`.
package testpkg

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Spec describes a tiny RPM package.
type Spec struct {
	Name, Version, Release string
	ExclusiveArch          []string
	ExcludeArch            []string
	BuildRequires          []string
	// Build is shell run in %build (default: writes a file).
	Build string
	// Noarch makes it BuildArch: noarch.
	Noarch bool
}

// SRPM builds a source RPM for s in a temporary directory and returns its path.
func SRPM(t testing.TB, s Spec) string {
	t.Helper()
	if s.Version == "" {
		s.Version = "1.0"
	}
	if s.Release == "" {
		s.Release = "1"
	}
	if s.Build == "" {
		s.Build = "echo built " + s.Name + " > " + s.Name + ".txt"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Name: %s\nVersion: %s\nRelease: %s\nSummary: kiln test package %s\nLicense: MIT\n", s.Name, s.Version, s.Release, s.Name)
	if s.Noarch {
		b.WriteString("BuildArch: noarch\n")
	}
	if len(s.ExclusiveArch) > 0 {
		fmt.Fprintf(&b, "ExclusiveArch: %s\n", strings.Join(s.ExclusiveArch, " "))
	}
	if len(s.ExcludeArch) > 0 {
		fmt.Fprintf(&b, "ExcludeArch: %s\n", strings.Join(s.ExcludeArch, " "))
	}
	for _, r := range s.BuildRequires {
		fmt.Fprintf(&b, "BuildRequires: %s\n", r)
	}
	fmt.Fprintf(&b, `
%%description
A package made by kiln's tests.

%%prep

%%build
%s

%%install
mkdir -p %%{buildroot}/usr/share/%s
cp %s.txt %%{buildroot}/usr/share/%s/ 2>/dev/null || echo %s > %%{buildroot}/usr/share/%s/%s.txt

%%files
/usr/share/%s

%%changelog
* Mon Jan 01 2024 kiln tests <kiln@example.org> - %s-%s
- test
`, s.Build, s.Name, s.Name, s.Name, s.Name, s.Name, s.Name, s.Name, s.Version, s.Release)

	top := t.TempDir()
	for _, d := range []string{"SPECS", "SOURCES", "SRPMS", "BUILD", "RPMS"} {
		if err := os.MkdirAll(filepath.Join(top, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spec := filepath.Join(top, "SPECS", s.Name+".spec")
	if err := os.WriteFile(spec, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("rpmbuild", "-bs", "--define", "_topdir "+top, spec)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rpmbuild -bs: %v\n%s", err, out)
	}
	matches, _ := filepath.Glob(filepath.Join(top, "SRPMS", "*.src.rpm"))
	if len(matches) != 1 {
		t.Fatalf("rpmbuild -bs made %d SRPMs", len(matches))
	}
	return matches[0]
}

// Deb describes a tiny Debian source package (format 3.0 (native)) built
// with debhelper (`dh $@`, debhelper-compat 13), as nearly all of Debian is.
type Deb struct {
	Name, Version string
	// Architecture of the binary package: "all" (default), "any", or a list.
	Architecture string
	// Build is shell run by debian/rules build, in override_dh_auto_build
	// (default: nothing).
	Build string
	// BuildDepends are added to debhelper-compat's Build-Depends.
	BuildDepends string
}

// DSC builds a Debian source package for d in a temporary directory and
// returns the path of its .dsc (its tarball lies next to it).
func DSC(t testing.TB, d Deb) string {
	t.Helper()
	if d.Version == "" {
		d.Version = "1.0"
	}
	if d.Architecture == "" {
		d.Architecture = "all"
	}
	if d.Build == "" {
		d.Build = "true"
	}
	bd := "debhelper-compat (= 13)"
	if d.BuildDepends != "" {
		bd += ", " + d.BuildDepends
	}
	top := t.TempDir()
	src := filepath.Join(top, d.Name+"-"+d.Version)
	files := map[string]string{
		"debian/source/format": "3.0 (native)\n",
		"debian/changelog": fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n  * Test package.\n\n -- kiln tests <kiln@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n",
			d.Name, d.Version),
		"debian/control": fmt.Sprintf("Source: %s\nSection: misc\nPriority: optional\nMaintainer: kiln tests <kiln@example.org>\nBuild-Depends: %s\nStandards-Version: 4.6.2\nRules-Requires-Root: binary-targets\n\nPackage: %s\nArchitecture: %s\nDescription: kiln test package\n A package made by kiln's tests.\n",
			d.Name, bd, d.Name, d.Architecture),
		// Rules-Requires-Root: binary-targets makes dh_fixperms chown to
		// root under fakeroot, the step that failed in the sandbox before
		// builds were root in a user namespace of their own.
		"debian/rules": fmt.Sprintf(`#!/usr/bin/make -f
%%:
	dh $@

override_dh_auto_build:
	%s

override_dh_auto_install:
	install -d debian/%s/usr/share/%s
	echo built %s > debian/%s/usr/share/%s/hello.txt
`, d.Build, d.Name, d.Name, d.Name, d.Name, d.Name),
		"README": "kiln test package\n",
	}
	for name, body := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if name == "debian/rules" {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("dpkg-source", "-b", filepath.Base(src))
	cmd.Dir = top
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-source -b: %v\n%s", err, out)
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	dsc := filepath.Join(top, fmt.Sprintf("%s_%s.dsc", d.Name, d.Version))
	if _, err := os.Stat(dsc); err != nil {
		t.Fatalf("dpkg-source made no %s: %v", dsc, err)
	}
	return dsc
}
