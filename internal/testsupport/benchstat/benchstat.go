// Package benchstat gives kiln's benchmarks their percentiles: one rule
// (nearest rank) and one metric name (pNN-ms) for every latency make bench
// prints.
package benchstat

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// Percentile is the p-th percentile of xs by nearest rank: the smallest
// value with at least p percent of xs at or below it. xs is not changed;
// an empty xs gives the zero value.
func Percentile[T cmp.Ordered](xs []T, p float64) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(float64(len(s))*p/100)) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Ms is d in milliseconds (to the microsecond), as the benchmarks report durations.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Report reports the percentiles ps of lat in milliseconds, each as
// PREFIXpNN-ms (p50-ms, p99-ms, ... with an empty prefix).
func Report(b *testing.B, prefix string, lat []time.Duration, ps ...float64) {
	b.Helper()
	for _, p := range ps {
		b.ReportMetric(Ms(Percentile(lat, p)), fmt.Sprintf("%sp%g-ms", prefix, p))
	}
}
