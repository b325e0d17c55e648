package testpkg

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSRPMAndDSC(t *testing.T) {
	t.Parallel()
	p := SRPM(t, Spec{Name: "hello", ExclusiveArch: []string{"x86_64"}})
	if !strings.HasSuffix(p, "hello-1.0-1.src.rpm") {
		t.Fatalf("SRPM path %s", p)
	}
	d := DSC(t, Deb{Name: "greet", Version: "2.0"})
	body, err := os.ReadFile(d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "greet_2.0.tar.xz") {
		t.Fatalf(".dsc does not list its tarball:\n%s", body)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(d), "greet_2.0.tar.xz")); err != nil {
		t.Fatal(err)
	}
}
