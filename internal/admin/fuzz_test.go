package admin

import (
	"strings"
	"testing"
)

// A person's name becomes a database role: accepted names are plain lower
// case identifiers that take no daemon's or system role's name.
func FuzzCheckPersonName(f *testing.F) {
	for _, s := range []string{"alice", "builder_x", "publisher_x", "reporter_x", "kiln_admin", "pg_monitor", "postgres", "Alice", "a b", "", strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckPersonName(s) != nil {
			return
		}
		if s == "" || len(s) > 63 || s == "postgres" || strings.ToLower(s) != s || strings.ContainsAny(s, " \"';-.\x00") {
			t.Fatalf("CheckPersonName accepted %q", s)
		}
		for _, p := range append(append([]string{}, Processes...), "kiln", "pg") {
			if strings.HasPrefix(s, p+"_") {
				t.Fatalf("CheckPersonName accepted %q, which starts with %s", s, p)
			}
		}
	})
}
