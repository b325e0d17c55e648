package backend

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/sandbox"
)

const testKey = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ...\n-----END PGP PUBLIC KEY BLOCK-----\n"

// configRecorder is a stand-in mock that records its command line and the
// configuration -r names (which the backend removes when mock ends) and
// leaves a binary RPM.
func configRecorder(t *testing.T) (prog, record string) {
	t.Helper()
	dir := t.TempDir()
	prog, record = filepath.Join(dir, "mock"), filepath.Join(dir, "record")
	script := `#!/bin/bash
echo "mock $*" >> ` + record + `
while [ $# -gt 0 ]; do
  case "$1" in -r) shift; cfg=$1;; --resultdir) shift; out=$1;; esac
  shift
done
[ -f "$cfg" ] && { echo "--- $cfg"; cat "$cfg"; ls -l "$cfg"; } >> ` + record + `
mkdir -p "$out" && echo binary > "$out/x-1-1.x86_64.rpm"
`
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return prog, record
}

// The buckets' repositories reach mock as a configuration of the build's
// own: the platform's root included, one dnf repository per bucket with
// repo_gpgcheck against that bucket's key file, a private bucket's token as
// dnf's password and in no URL or argument; the configuration is gone when
// mock ends.
func TestMockBucketRepositories(t *testing.T) {
	t.Parallel()
	prog, record := configRecorder(t)
	b, err := New(Platform{Backend: "mock", Settings: map[string]any{"root": "rocky+epel-9-x86_64"}}, Options{Mock: prog, Createrepo: "true"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "x-1-1.src.rpm")
	if err := os.WriteFile(src, []byte("srpm"), 0o644); err != nil {
		t.Fatal(err)
	}
	token := strings.Repeat("ab12", 16)
	fpr := strings.Repeat("0123456789ABCDEF", 2) + "01234567"
	req := Request{Source: src, Dir: dir, Log: io.Discard, Repositories: []Repository{
		{URL: "http://kiln-build:" + token + "@kiln:8080/repos/devel/snapshots/3/el9-x86_64", Suite: "devel", Fingerprint: fpr, Key: testKey},
		{URL: "http://kiln:8080/repos/stable/snapshots/9/el9-x86_64", Suite: "stable", Fingerprint: fpr, Key: testKey},
	}}
	if _, err := b.Build(context.Background(), &sandbox.Plain{Home: dir}, req); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "kiln-mock.cfg")
	keys := filepath.Join(dir, "kiln-keys")
	line, content, _ := strings.Cut(string(got), "\n--- "+cfg+"\n")
	if want := "mock -r " + cfg + " --rebuild " + src + " --resultdir " + dir + "/result"; line != want {
		t.Fatalf("command line\n%s\nwant\n%s", line, want)
	}
	for _, want := range []string{
		"include('rocky+epel-9-x86_64.cfg')\n",
		"config_opts['plugin_conf']['bind_mount_opts']['dirs'].append(('" + keys + "', '" + keys + "'))\n",
		"kiln_repos = \"\"\"\n",
		"\n[kiln-devel]\nname=kiln bucket devel (key " + fpr + ")\nbaseurl=http://kiln:8080/repos/devel/snapshots/3/el9-x86_64\nenabled=1\n" +
			"repo_gpgcheck=1\ngpgcheck=0\ngpgkey=file://" + keys + "/kiln-repository-1.asc\n",
		"username=kiln-build\npassword=" + token + "\n\n[kiln-stable]\n",
		"baseurl=http://kiln:8080/repos/stable/snapshots/9/el9-x86_64\n",
		"gpgkey=file://" + keys + "/kiln-repository-2.asc\n",
		"\n\"\"\"\nfor _key in ('dnf.conf', 'dnf5.conf'):\n    if _key in config_opts:\n        config_opts[_key] += kiln_repos\n-rw-------",
	} {
		if !strings.Contains(content, want) {
			t.Fatalf("configuration lacks %q:\n%s", want, content)
		}
	}
	if strings.Count(content, "password=") != 1 || strings.Count(content, token) != 1 {
		t.Fatalf("the token is in the configuration more than once, or the public bucket has one:\n%s", content)
	}
	if _, err := os.Stat(cfg); !os.IsNotExist(err) {
		t.Fatalf("the configuration with the token is still there after mock: %v", err)
	}
	// It is Python that, run as mock runs it, adds the sections to the
	// root's dnf.conf (and to dnf5.conf only where the root has one).
	py := filepath.Join(t.TempDir(), "cfg.py")
	body, _, _ := strings.Cut(content, "-rw-------")
	if err := os.WriteFile(py, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("python3", "-c", `
included = []
def include(p): included.append(p)
config_opts = {'plugin_conf': {'bind_mount_opts': {'dirs': []}}, 'dnf.conf': '[main]\n'}
exec(open(`+"'"+py+"'"+`).read())
print(included, config_opts['plugin_conf']['bind_mount_enable'], config_opts['plugin_conf']['bind_mount_opts']['dirs'], 'dnf5.conf' in config_opts)
print(config_opts['dnf.conf'])`).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	if want := "['rocky+epel-9-x86_64.cfg'] True [('" + keys + "', '" + keys + "')] False\n[main]\n\n\n[kiln-devel]\n"; !strings.HasPrefix(string(out), want) {
		t.Fatalf("the configuration as mock reads it:\n%s\nwant it to start\n%s", out, want)
	}
	if key, err := os.ReadFile(filepath.Join(keys, "kiln-repository-2.asc")); err != nil || string(key) != testKey {
		t.Fatalf("key file: %q %v", key, err)
	}
}

// What would change the meaning of the configuration (Python) or of dnf's
// repository section is refused before mock runs, and leaves no
// configuration behind.
func TestMockRepositoryInputsRefused(t *testing.T) {
	t.Parallel()
	prog, record := configRecorder(t)
	for _, root := range []string{"-r", "x'); import os; ('", "a b", "x\ny"} {
		if _, err := New(Platform{Backend: "mock", Settings: map[string]any{"root": root}}, Options{Mock: prog}); err == nil {
			t.Fatalf("root %q accepted", root)
		}
	}
	b, err := New(Platform{Backend: "mock", Settings: map[string]any{"root": "/etc/mock/site-el9.cfg"}}, Options{Mock: prog})
	if err != nil {
		t.Fatal(err)
	}
	fpr := strings.Repeat("0123456789ABCDEF", 2) + "01234567"
	good := Repository{URL: "http://kiln/repos/devel/snapshots/1/el9", Suite: "devel", Fingerprint: fpr, Key: testKey}
	for name, r := range map[string]Repository{
		"quote in URL":      {URL: `http://kiln/"""+os.system('x')`, Suite: "devel", Fingerprint: fpr, Key: testKey},
		"newline in URL":    {URL: "http://kiln/x\n[evil]\nbaseurl=http://evil", Suite: "devel", Fingerprint: fpr, Key: testKey},
		"file URL":          {URL: "file:///etc", Suite: "devel", Fingerprint: fpr, Key: testKey},
		"section in suite":  {URL: good.URL, Suite: "devel]\n[x", Fingerprint: fpr, Key: testKey},
		"short fingerprint": {URL: good.URL, Suite: "devel", Fingerprint: "ABCD", Key: testKey},
		"not a key":         {URL: good.URL, Suite: "devel", Fingerprint: fpr, Key: "ssh-rsa AAAA"},
		"odd token":         {URL: "http://kiln-build:a%0Ab@kiln/repos/devel/snapshots/1/el9", Suite: "devel", Fingerprint: fpr, Key: testKey},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "x-1-1.src.rpm")
			if err := os.WriteFile(src, []byte("srpm"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := b.Build(context.Background(), &sandbox.Plain{Home: dir}, Request{Source: src, Dir: dir, Log: io.Discard, Repositories: []Repository{r}})
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "a%0Ab") {
				t.Fatalf("the error shows the token: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "kiln-mock.cfg")); !os.IsNotExist(err) {
				t.Fatalf("a configuration was left: %v", err)
			}
		})
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatal("mock ran with a refused repository")
	}
}
