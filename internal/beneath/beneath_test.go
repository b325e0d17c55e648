package beneath

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// setup makes a root holding what a hostile build leaves, and a secret
// outside it.
func setup(t *testing.T) (*Root, string) {
	t.Helper()
	top := t.TempDir()
	root := filepath.Join(top, "work")
	secret := filepath.Join(top, "secret")
	for _, d := range []string{root, secret, filepath.Join(root, "real")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(secret, "keytab"), "SECRET")
	write(filepath.Join(root, "real", "result.rpm"), "RESULT")
	links := map[string]string{
		"result.rpm":    filepath.Join(secret, "keytab"), // the swapped result of finding 7
		"relative.rpm":  "../secret/keytab",
		"dirlink":       secret, // a directory swapped for a link (finding 8)
		"inside.rpm":    "real/result.rpm",
		"proc.rpm":      "/proc/self/root" + secret + "/keytab",
		"real/up":       "..",
		"real/self.rpm": "result.rpm",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(root, "fifo.rpm"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, secret
}

func TestOpenRefusesWhatABuildPlanted(t *testing.T) {
	t.Parallel()
	r, secret := setup(t)
	for _, name := range []string{"result.rpm", "relative.rpm", "dirlink/keytab", "inside.rpm", "proc.rpm",
		"real/self.rpm", "real/up/real/result.rpm", "../secret/keytab", filepath.Join(secret, "keytab"),
		filepath.Join(r.Path(), "dirlink", "keytab"), "fifo.rpm", "real", "/dev/null"} {
		f, err := r.Open(name)
		if err == nil {
			b, _ := io.ReadAll(f)
			f.Close()
			t.Errorf("Open(%q) succeeded and read %q", name, b)
		}
	}
	f, err := r.Open("real/result.rpm")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, _ := io.ReadAll(f); string(b) != "RESULT" {
		t.Fatalf("read %q", b)
	}
	if _, err := r.Open(filepath.Join(r.Path(), "real", "result.rpm")); err != nil {
		t.Fatalf("an absolute path below the root: %v", err)
	}
	if _, err := r.Open("fifo.rpm"); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("a FIFO: %v, want ErrNotRegular", err)
	}
	if _, err := r.Open("result.rpm"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("the refusal should say why: %v", err)
	}
}

func TestDirectoriesAndCreate(t *testing.T) {
	t.Parallel()
	r, secret := setup(t)
	if _, err := r.OpenDir("dirlink"); err == nil {
		t.Fatal("a directory swapped for a symbolic link was opened")
	}
	// Making a directory or file where the build left a link fails rather
	// than following it.
	if _, err := r.Mkdir("dirlink", 0o755); err == nil {
		t.Fatal("Mkdir over a symbolic link succeeded")
	}
	if _, err := r.Create("result.rpm", 0o644); err == nil {
		t.Fatal("Create over a symbolic link succeeded")
	}
	if _, err := r.Create("../escape", 0o644); err == nil {
		t.Fatal("Create outside the root succeeded")
	}
	d, err := r.Mkdir("fresh", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if n, err := r.CopyFile("real/result.rpm", d, "copy.rpm", 0o644); err != nil || n != 6 {
		t.Fatalf("CopyFile: %d %v", n, err)
	}
	if _, err := r.CopyFile("dirlink/keytab", d, "stolen", 0o644); err == nil {
		t.Fatal("CopyFile through a symbolic link succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(r.Path(), "fresh", "copy.rpm")); string(b) != "RESULT" {
		t.Fatalf("copy holds %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(secret, "keytab")); string(b) != "SECRET" {
		t.Fatal("the secret changed")
	}
}

func TestWalkAndUsage(t *testing.T) {
	t.Parallel()
	r, _ := setup(t)
	big := make([]byte, 1<<20)
	if err := os.WriteFile(filepath.Join(r.Path(), "real", "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	// Hard links are counted once.
	for _, n := range []string{"l1", "l2", "l3"} {
		if err := os.Link(filepath.Join(r.Path(), "real", "big"), filepath.Join(r.Path(), n)); err != nil {
			t.Fatal(err)
		}
	}
	var paths []string
	if err := r.Walk(func(e Entry) error { paths = append(paths, e.Path); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if strings.HasPrefix(p, "dirlink/") || strings.Contains(p, "keytab") {
			t.Fatalf("the walk followed a symbolic link: %v", paths)
		}
	}
	used, err := r.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if used < 1<<20 || used >= 2<<20 {
		t.Fatalf("usage %d, want a little over 1 MiB", used)
	}
}

// TestUnlock: directories a build made unreadable to itself are opened up
// so that the tree can be removed; links are not followed.
func TestUnlock(t *testing.T) {
	t.Parallel()
	r, secret := setup(t)
	os.Chmod(secret, 0o500)
	locked := filepath.Join(r.Path(), "real", "locked")
	if err := os.MkdirAll(filepath.Join(locked, "inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(locked, "inner"), 0)
	os.Chmod(locked, 0)
	if err := r.Unlock(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{locked, filepath.Join(locked, "inner")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o700 != 0o700 {
			t.Fatalf("%s still locked: %v %v", d, fi.Mode(), err)
		}
	}
	if fi, _ := os.Stat(secret); fi.Mode().Perm() != 0o500 {
		t.Fatalf("the directory behind a link changed mode: %v", fi.Mode())
	}
	if err := os.RemoveAll(r.Path()); err != nil {
		t.Fatal(err)
	}
}
