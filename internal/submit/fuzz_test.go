package submit

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/names"
)

// A platform selection from the command line is either refused or made of
// valid names, "all" and "!name" terms, without duplicates, never empty.
func FuzzParsePlatforms(f *testing.F) {
	for _, s := range []string{"el9-x86_64", "all,!el8-aarch64", " EL9-X86_64 , el9-x86_64", "!all", "", ",,", "a,,b", "!", "all,!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParsePlatforms(strings.Split(s, ";"))
		if err != nil {
			return
		}
		if len(got) == 0 {
			t.Fatalf("ParsePlatforms(%q) returned nothing", s)
		}
		seen := map[string]bool{}
		for _, term := range got {
			if seen[term] {
				t.Fatalf("ParsePlatforms(%q) = %q repeats %q", s, got, term)
			}
			seen[term] = true
			if term == "all" {
				continue
			}
			if err := names.CheckName("platform", strings.TrimPrefix(term, "!")); err != nil {
				t.Fatalf("ParsePlatforms(%q) = %q holds %q: %v", s, got, term, err)
			}
		}
	})
}
