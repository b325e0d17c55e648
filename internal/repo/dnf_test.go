package repo_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// rpmPackage builds a real noarch binary RPM with rpmbuild.
func rpmPackage(t testing.TB, name, version string) []byte {
	t.Helper()
	top := t.TempDir()
	spec := filepath.Join(top, name+".spec")
	must(t, os.WriteFile(spec, []byte("Name: "+name+"\nVersion: "+version+"\nRelease: 1\nSummary: kiln test\nLicense: MIT\nBuildArch: noarch\nAutoReqProv: no\n%description\nkiln test package\n%install\nmkdir -p %{buildroot}/usr/bin\nprintf '#!/bin/sh\\necho "+name+"\\n' > %{buildroot}/usr/bin/"+name+"\nchmod 755 %{buildroot}/usr/bin/"+name+"\n%files\n/usr/bin/"+name+"\n"), 0o644))
	if out, err := exec.Command("rpmbuild", "--define", "_topdir "+top, "-bb", spec).CombinedOutput(); err != nil {
		t.Fatalf("rpmbuild: %v\n%s", err, out)
	}
	matches, _ := filepath.Glob(filepath.Join(top, "RPMS/noarch/*.rpm"))
	if len(matches) != 1 {
		t.Fatalf("rpmbuild made %v", matches)
	}
	data, err := os.ReadFile(matches[0])
	must(t, err)
	return data
}

func TestDnfReadsPublishedRepository(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.job(t, "devel", map[string][]farmtest.Artifact{
		"el9-x86_64": {{Kind: "package", Name: "hello-rpm-1.0-1.noarch.rpm", Data: rpmPackage(t, "hello-rpm", "1.0")}},
	}, nil)
	if res := f.publish(t); len(res) != 1 || res[0].Packages != 1 {
		t.Fatalf("publication: %+v", res)
	}
	root := t.TempDir()
	url := f.web.URL + "/repos/devel/el9-x86_64"
	dnf := func(args ...string) (string, error) {
		base := []string{"--installroot", root, "--releasever", "9", "--setopt=reposdir=" + t.TempDir(),
			"--setopt=cachedir=" + filepath.Join(root, "cache"), "--repofrompath=kiln," + url,
			"--setopt=kiln.repo_gpgcheck=1", "--setopt=kiln.gpgcheck=0", "--setopt=kiln.gpgkey=" + f.web.URL + "/repos/devel/key.asc",
			"--assumeyes", "--quiet"}
		out, err := exec.Command("dnf", append(base, args...)...).CombinedOutput()
		return string(out), err
	}
	out, err := dnf("repoquery", "--repo", "kiln", "hello-rpm")
	if err != nil || !strings.Contains(out, "hello-rpm-0:1.0-1.noarch") {
		t.Fatalf("dnf repoquery: %v\n%s", err, out)
	}
	dest := t.TempDir()
	out, err = dnf("install", "--downloadonly", "--downloaddir", dest, "--repo", "kiln", "hello-rpm")
	if err != nil {
		t.Fatalf("dnf install --downloadonly: %v\n%s", err, out)
	}
	got, _ := filepath.Glob(filepath.Join(dest, "hello-rpm-1.0-1.noarch.rpm"))
	if len(got) != 1 {
		t.Fatalf("dnf downloaded nothing:\n%s", out)
	}
}

// With sign_packages the RPMs themselves are signed with the bucket's key:
// rpm -K passes against key.asc.
func TestSignedPackagesPassRpmK(t *testing.T) {
	t.Parallel()
	f := setup(t)
	_, err := f.db.Pool.Exec(t.Context(), `UPDATE kiln.bucket SET sign_packages = true WHERE name = 'devel'`)
	must(t, err)
	f.job(t, "devel", map[string][]farmtest.Artifact{
		"el9-x86_64": {{Kind: "package", Name: "signed-1.0-1.noarch.rpm", Data: rpmPackage(t, "signed", "1.0")}},
	}, nil)
	f.publish(t)
	code, data := f.get(t, "/repos/devel/el9-x86_64/Packages/s/signed-1.0-1.noarch.rpm")
	if code != 200 {
		t.Fatalf("package: %d (%s)", code, outcomes(t, f))
	}
	_, key := f.get(t, "/repos/devel/key.asc")
	dir := t.TempDir()
	rpmFile, keyFile := filepath.Join(dir, "p.rpm"), filepath.Join(dir, "key.asc")
	must(t, os.WriteFile(rpmFile, data, 0o644))
	must(t, os.WriteFile(keyFile, key, 0o644))
	db := filepath.Join(dir, "rpmdb")
	if out, err := exec.Command("rpm", "--dbpath", db, "--import", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("rpm --import: %v\n%s", err, out)
	}
	out, err := exec.Command("rpm", "--dbpath", db, "-K", rpmFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "signatures OK") {
		t.Fatalf("rpm -K: %v\n%s", err, out)
	}
	// Without the key, the check fails: the signature is really there.
	out, err = exec.Command("rpm", "--dbpath", filepath.Join(dir, "empty"), "-K", rpmFile).CombinedOutput()
	if err == nil {
		t.Fatalf("rpm -K passed without the key:\n%s", out)
	}
}

func outcomes(t testing.TB, f *farm) string {
	var o string
	f.db.Pool.QueryRow(t.Context(), "SELECT string_agg(outcome, '; ') FROM kiln.publication_request").Scan(&o) //nolint:errcheck
	return o
}
