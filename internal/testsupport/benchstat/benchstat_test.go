package benchstat

import "testing"

// Nearest rank: p50 of 1..10 is 5, p99 is 10, p0 the smallest; the input
// keeps its order; nothing gives zero.
func TestPercentile(t *testing.T) {
	xs := []int{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	for _, c := range []struct {
		p    float64
		want int
	}{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {0, 1}, {1, 1}} {
		if got := Percentile(xs, c.p); got != c.want {
			t.Errorf("p%g = %d, want %d", c.p, got, c.want)
		}
	}
	if xs[0] != 10 {
		t.Error("Percentile sorted its input")
	}
	if got := Percentile([]float64(nil), 50); got != 0 {
		t.Errorf("p50 of nothing = %g", got)
	}
}
