package report_test

import (
	"math"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/report"
)

// A since given as a duration reaches back from now, never forward, and
// reads back as the same time when written as a Go duration; dates are
// midnight in now's location; RFC 3339 times are taken as given.
func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"36h", "90m", "7d", "2w", "1.5d", "0d", "2025-05-01", "2025-05-01T10:00:00Z",
		"2025-05-01T10:00:00+02:00", "-1h", "-1d", "NaNd", "Infw", "1e300d", "d", "", "7 d", "2025-13-01"} {
		f.Add(s)
	}
	zone := time.FixedZone("UTC-5", -5*3600)
	now := time.Date(2026, 1, 1, 12, 30, 0, 0, zone)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := report.ParseSince(s, now)
		if err != nil {
			return
		}
		if want, e := time.Parse(time.RFC3339, s); e == nil {
			if !got.Equal(want) {
				t.Fatalf("ParseSince(%q) = %s, want the time as given", s, got)
			}
			return
		}
		if _, e := time.Parse(time.DateOnly, s); e == nil {
			if got.Location() != zone || got.Format(time.DateOnly) != s || got.Hour()+got.Minute()+got.Second()+got.Nanosecond() != 0 {
				t.Fatalf("ParseSince(%q) = %s, want midnight of that day in %s", s, got, zone)
			}
			return
		}
		// Sub saturates at the largest duration: a nonsense input wrapped.
		d := now.Sub(got)
		if got.After(now) || d == math.MaxInt64 {
			t.Fatalf("ParseSince(%q) = %s, not back from now (%s)", s, got, now)
		}
		if again, err := report.ParseSince(d.String(), now); err != nil || !again.Equal(got) {
			t.Fatalf("ParseSince(%q) = %s, but ParseSince(%q) = %s, %v", s, got, d, again, err)
		}
	})
}

func TestParseSince(t *testing.T) {
	t.Parallel()
	zone := time.FixedZone("UTC+2", 2*3600)
	now := time.Date(2026, 3, 10, 15, 0, 0, 0, zone)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"36h", now.Add(-36 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"7d", now.Add(-7 * 24 * time.Hour)},
		{"1.5d", now.Add(-36 * time.Hour)},
		{"2w", now.Add(-14 * 24 * time.Hour)},
		{"0d", now},
		{"2025-05-01", time.Date(2025, 5, 1, 0, 0, 0, 0, zone)},
		{"2025-05-01T10:00:00Z", time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)},
	} {
		got, err := report.ParseSince(c.in, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("ParseSince(%q) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	if got, _ := report.ParseSince("2025-05-01", now.UTC()); !got.Equal(time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("a date with now in UTC = %s, want midnight UTC", got)
	}
	for _, bad := range []string{"", "-1h", "-1d", "d", "7 d", "NaNd", "Infw", "1e300d", "2025-13-01", "yesterday"} {
		if got, err := report.ParseSince(bad, now); err == nil {
			t.Errorf("ParseSince(%q) = %s, want an error", bad, got)
		}
	}
}
