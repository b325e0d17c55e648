package admin

import "testing"

func TestParseQuotaValue(t *testing.T) {
	t.Parallel()
	jobs, bytes := Quotas[0], Quotas[1]
	for _, c := range []struct {
		q    Quota
		in   string
		want int64 // -1: default (nil); -2: refused
	}{
		{jobs, "500", 500}, {jobs, "0", 0}, {jobs, "default", -1},
		{jobs, "-1", -2}, {jobs, "5K", -2}, {jobs, "", -2}, {jobs, "2147483648", -2},
		{bytes, "20GiB", 20 << 30}, {bytes, "20G", 20 << 30}, {bytes, "64KiB", 64 << 10}, {bytes, "3TiB", 3 << 40},
		{bytes, "12345", 12345}, {bytes, "1.5GiB", -2}, {bytes, "GiB", -2}, {bytes, "9000000000TiB", -2},
	} {
		got, err := ParseQuotaValue(c.q, c.in)
		switch {
		case c.want == -2 && err == nil:
			t.Errorf("--%s %q: accepted as %v", c.q.Flag(), c.in, *got)
		case c.want == -1 && (err != nil || got != nil):
			t.Errorf("--%s %q: %v, %v; want default", c.q.Flag(), c.in, got, err)
		case c.want >= 0 && (err != nil || got == nil || *got != c.want):
			t.Errorf("--%s %q: %v, %v; want %d", c.q.Flag(), c.in, got, err, c.want)
		}
	}
}
