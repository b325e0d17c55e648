package blob

import (
	"strings"
	"testing"
)

// A digest given on the command line or in a web address is accepted only
// as 64 hex digits, and reads back as the same digest.
func FuzzParseSum(f *testing.F) {
	for _, s := range []string{strings.Repeat("ab", 32), strings.Repeat("AB", 32), "", "xyz", strings.Repeat("0", 63), strings.Repeat("0", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sum, err := ParseSum(s)
		if err != nil {
			return
		}
		if len(s) != 64 || sum.String() != strings.ToLower(s) {
			t.Fatalf("ParseSum(%q) accepted it as %s", s, sum)
		}
	})
}
