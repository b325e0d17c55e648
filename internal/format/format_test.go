package format

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		secs float64
		want string
	}{
		{0, "0s"}, {44.6, "45s"}, {187, "3m07s"}, {7200, "2h00m"}, {7500, "2h05m"},
		{47*3600 + 59*60, "47h59m"}, {4*86400 + 2*3600 + 59, "4d02h"},
	} {
		if got := Duration(tc.secs); got != tc.want {
			t.Errorf("Duration(%v) = %q, want %q", tc.secs, got, tc.want)
		}
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1536, "1.5 KiB"}, {20 << 20, "20 MiB"}, {3435973837, "3.2 GiB"},
		{20 << 30, "20 GiB"}, {3 << 40, "3 TiB"}, {1<<63 - 1, "8 EiB"},
	} {
		if got := Size(tc.n); got != tc.want {
			t.Errorf("Size(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestVersion(t *testing.T) {
	s := func(v string) *string { return &v }
	one := 1
	for _, tc := range []struct {
		epoch            *int
		version, release *string
		want             string
	}{
		{nil, s("1.0"), s("1"), "1.0-1"},
		{nil, s("1.0"), s(""), "1.0"},
		{nil, s("1.0"), nil, "1.0"},
		{&one, s("2.3"), s("4"), "1:2.3-4"},
		{nil, nil, nil, ""},
	} {
		if got := Version(tc.epoch, tc.version, tc.release); got != tc.want {
			t.Errorf("Version(%v, %v, %v) = %q, want %q", tc.epoch, tc.version, tc.release, got, tc.want)
		}
	}
}

func TestTime(t *testing.T) {
	at := time.Date(2026, 12, 2, 14, 5, 9, 0, time.UTC)
	cet := time.FixedZone("CET", 3600)
	for got, want := range map[string]string{
		Time(at): "2026-12-02 14:05:09 UTC", Time(at.In(cet)): "2026-12-02 15:05:09 CET",
		Minute(at): "2026-12-02 14:05 UTC", Clock(at.In(cet)): "15:05:09",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "12345": 12345, "12345B": 12345, "10K": 10 << 10, "3m": 3 << 20, "2G": 2 << 30, "2GiB": 2 << 30,
		"512MB": 512 << 20, " 3 M ": 3 << 20, "64kib": 64 << 10, "3TiB": 3 << 40, "1T": 1 << 40,
		"8388607T": 8388607 << 40,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "+1", "G", "GiB", "B", "1.5GiB", "1iB", "1P", "8388608T", "9223372036854775808", "1 2K"} {
		if n, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, accepted", in, n)
		}
	}
}

// Whatever is typed, a size read is a byte count that is not negative.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"2G", "512M", "10k", "1KiB", "0", "-1", "G", "9223372036854775807G", " 3 M "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}
