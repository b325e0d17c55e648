package names

import (
	"regexp"
	"testing"
)

// kiln.valid_name in schema/0001_farm.sql: the database's own rule.
var validName = regexp.MustCompile(`^[a-z0-9]+([_-][a-z0-9]+)*$`)

// CheckName accepts exactly what the database's kiln.valid_name accepts, so
// a name passed by the CLI is never refused by a constraint later.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"el9-x86_64", "devel", "a", "-a", "a-", "a--b", "A", "é", "x_y-z9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckName("platform", s)
		want := validName.MatchString(s) && len(s) <= MaxName
		if (err == nil) != want {
			t.Fatalf("CheckName(%q) = %v, but the database says valid=%v", s, err, want)
		}
	})
}
