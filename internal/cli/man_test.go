package cli

import (
	"os"
	"strings"
	"testing"
)

// The committed manual page is what the command definitions make, whatever
// the environment of the run that made it.
func TestManPageIsCurrent(t *testing.T) {
	committed, err := os.ReadFile("../../docs/kiln.1")
	if err != nil {
		t.Fatal(err)
	}
	// Flags read these; none of them may show in the page.
	t.Setenv("KRB5CCNAME", "FILE:/tmp/krb5cc_test_only")
	t.Setenv("KILN_BUCKET", "test-only-bucket")
	out, code := kiln(t, "postgres://unused", "man")
	if code != 0 {
		t.Fatalf("kiln man: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "test_only") || strings.Contains(out, "test-only") {
		t.Errorf("kiln man shows this run's environment")
	}
	if out != string(committed) {
		got, want := strings.Split(string(committed), "\n"), strings.Split(out, "\n")
		line := 0
		for line < min(len(got), len(want)) && got[line] == want[line] {
			line++
		}
		t.Fatalf("docs/kiln.1 is stale: it differs from what the command definitions generate from line %d on; "+
			"run make man and commit docs/kiln.1", line+1)
	}
}
