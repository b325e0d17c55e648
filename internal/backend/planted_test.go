package backend

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kiln-build/kiln/internal/sandbox"
)

// As a build that ran as the build user before sbuild or mock starts (the
// package's directory, and the directory holding it, are that user's):
// whatever it planted where the builder writes the result directory, the
// repositories' keys or the backend's configuration, the builder refuses
// rather than follows. Nothing is written, chowned or removed outside the
// package's directory, and a package directory that is itself a symbolic
// link is refused.
func TestBackendsRefuseWhatABuildPlanted(t *testing.T) {
	t.Parallel()
	fpr := strings.Repeat("0123456789ABCDEF", 2) + "01234567"
	repos := []Repository{{URL: "http://kiln:8080/repos/devel/snapshots/3/x", Suite: "devel", Fingerprint: fpr, Key: testKey}}
	sbuildBackend, err := New(Platform{Backend: "sbuild", Arch: "amd64", Settings: map[string]any{"dist": "bookworm", "chroot_mode": "unshare", "chroot": "/srv/bookworm.tar.zst"}}, Options{Sbuild: "false"})
	if err != nil {
		t.Fatal(err)
	}
	mockBackend, err := New(Platform{Backend: "mock", Settings: map[string]any{"root": "rocky+epel-9-x86_64"}}, Options{Mock: "false", Createrepo: "true"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		backend Backend
		plant   string // the name in the package's directory that points at the victim
	}{
		{"sbuild result", sbuildBackend, "result"},
		{"sbuild key", sbuildBackend, "kiln-repository-1.asc"},
		{"sbuild configuration", sbuildBackend, "kiln-sbuild.conf"},
		{"mock keys", mockBackend, "kiln-keys"},
		{"mock configuration", mockBackend, "kiln-mock.cfg"},
		{"package directory", sbuildBackend, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			victim := filepath.Join(t.TempDir(), "victim")
			if err := os.Mkdir(victim, 0o700); err != nil {
				t.Fatal(err)
			}
			victimFile := filepath.Join(victim, "file")
			if err := os.WriteFile(victimFile, []byte("the builder's own"), 0o600); err != nil {
				t.Fatal(err)
			}
			// A build user the builder is not: so a chown would show.
			if err := os.Chown(victim, 4242, 4242); err != nil && os.Geteuid() == 0 {
				t.Fatal(err)
			}
			build := t.TempDir()
			dir := filepath.Join(build, "p0")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(dir, "x_1.0-1.dsc")
			if err := os.WriteFile(src, []byte("dsc"), 0o644); err != nil {
				t.Fatal(err)
			}
			target := victim
			if strings.HasSuffix(c.plant, ".asc") || strings.HasSuffix(c.plant, ".conf") || strings.HasSuffix(c.plant, ".cfg") {
				target = victimFile
			}
			if c.plant == "" {
				// The build swapped its package directory for a link.
				if err := os.Rename(dir, dir+".moved"); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(victim, dir); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Symlink(target, filepath.Join(dir, c.plant)); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Lstat(victim)
			_, err := c.backend.Build(context.Background(), &sandbox.Plain{Home: build},
				Request{Source: src, Dir: dir, Log: io.Discard, Repositories: repos})
			if err == nil {
				t.Fatal("the build went ahead")
			}
			t.Logf("refused: %v", err)
			entries, _ := os.ReadDir(victim)
			if len(entries) != 1 || entries[0].Name() != "file" {
				t.Fatalf("the builder wrote into the victim directory: %v", entries)
			}
			if b, _ := os.ReadFile(victimFile); string(b) != "the builder's own" {
				t.Fatalf("the victim file now holds %q", b)
			}
			after, _ := os.Lstat(victim)
			if before.Sys().(*syscall.Stat_t).Uid != after.Sys().(*syscall.Stat_t).Uid {
				t.Fatal("the victim directory was chowned")
			}
		})
	}
}
