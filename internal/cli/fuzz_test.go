package cli

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
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

// --since given as a duration reaches back from now, never forward; dates
// and times are taken as given.
func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"36h", "7d", "2w", "1.5d", "2025-05-01", "2025-05-01T10:00:00Z", "-1h", "NaNd", "Infw", "1e300d", "d", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseSince(s, now)
		if err != nil {
			return
		}
		if _, e := time.Parse(time.RFC3339, s); e == nil {
			return
		}
		if _, e := time.ParseInLocation("2006-01-02", s, time.Local); e == nil {
			return
		}
		// Sub saturates at the largest duration: a nonsense input wrapped.
		if got.After(now) || now.Sub(got) == math.MaxInt64 {
			t.Fatalf("parseSince(%q) = %s, after now (%s)", s, got, now)
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
