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
func rpmPackage(t *testing.T, name, version string) []byte {
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
