package format

import "testing"

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
		{0, "0 B"}, {1023, "1023 B"}, {1536, "1.5 KiB"}, {20 << 20, "20.0 MiB"}, {3435973837, "3.2 GiB"},
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
