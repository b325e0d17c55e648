package cli

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// Job and task ids from the command line are positive and read back as
// what was typed.
func FuzzParseIDs(f *testing.F) {
	for _, s := range []string{"42", "t17", "0", "-3", "t", "tt1", "9223372036854775808", " 1", "1e3"} {
		f.Add(s)
	}
	// The digits typed, without a sign or leading zeros.
	digits := func(s string) string { return strings.TrimLeft(strings.TrimPrefix(s, "+"), "0") }
	f.Fuzz(func(t *testing.T, s string) {
		if id, err := parseJobID(s); err == nil && (id <= 0 || strconv.FormatInt(id, 10) != digits(s)) {
			t.Fatalf("parseJobID(%q) = %d", s, id)
		}
		if id, err := parseTaskID(s); err == nil && (id <= 0 || strconv.FormatInt(id, 10) != digits(strings.TrimPrefix(s, "t"))) {
			t.Fatalf("parseTaskID(%q) = %d", s, id)
		}
	})
}

// --settings of kiln admin platform is accepted only as a JSON object.
func FuzzParseSettings(f *testing.F) {
	for _, s := range []string{`{"root": "rocky+epel-9-x86_64"}`, `{}`, `null`, `[]`, `"x"`, `{"sleep": "500ms"}`, `{`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseSettings(s)
		if err != nil {
			return
		}
		var obj map[string]any
		if m == nil || json.Unmarshal([]byte(s), &obj) != nil || obj == nil {
			t.Fatalf("parseSettings(%q) accepted a non-object", s)
		}
	})
}
