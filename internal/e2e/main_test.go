package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// binDir holds the binaries built for this test run.
var (
	binDir   string
	binOnce  sync.Once
	binError error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binary returns the path of a kiln command built from this tree (kiln,
// kiln-splitter, kiln-builder, kiln-janitor, kiln-web, kiln-reporter); the first call
// builds them all.
func binary(t testing.TB, name string) string {
	t.Helper()
	binOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", binDir+"/", "../../cmd/kiln", "../../cmd/kiln-splitter",
			"../../cmd/kiln-builder", "../../cmd/kiln-janitor", "../../cmd/kiln-web", "../../cmd/kiln-reporter", "../../cmd/kiln-publisher")
		if out, err := cmd.CombinedOutput(); err != nil {
			binError = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return filepath.Join(binDir, name)
}
