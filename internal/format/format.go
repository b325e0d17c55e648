// Package format writes the facts kiln shows people, times, durations and
// sizes, one way for the command line and the web alike, and reads the
// sizes people give.
package format

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Time writes a moment to the second with its zone, in t's location: the
// web passes UTC, the command line local time. 2026-12-02 14:05:09 UTC.
func Time(t time.Time) string { return t.Format("2006-01-02 15:04:05 MST") }

// Minute writes a moment to the minute with its zone, in t's location, for
// what is only known to the minute (an estimate, a quota window's end).
// 2026-12-02 14:05 UTC.
func Minute(t time.Time) string { return t.Format("2006-01-02 15:04 MST") }

// Clock writes the time of day to the second, in t's location, for lines
// that follow each other live (kiln watch). 14:05:09.
func Clock(t time.Time) string { return t.Format("15:04:05") }

// Duration writes seconds the way people read them: 45s, 3m07s, 2h05m,
// 4d02h. It rounds to the second.
func Duration(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second)).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// units are the binary units of Size and ParseSize, each 1024 times the
// one before.
var units = []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// Size writes a byte count in the largest binary unit it reaches, with one
// decimal unless it is whole: 512 B, 1.5 KiB, 20 MiB, 3.2 GiB.
func Size(n int64) string {
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " " + units[i]
}

// ParseSize reads a whole number of bytes as people write it: 12345, 64K,
// 64KiB, 64KB, 2g, 3 TiB (K, M, G and T are binary, in any case, with or
// without B or iB). It refuses a negative number, a fraction and a size
// beyond int64.
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	binary := strings.HasSuffix(t, "IB")
	if binary {
		t = strings.TrimSuffix(t, "IB")
	} else {
		t = strings.TrimSuffix(t, "B")
	}
	mult := int64(1)
	for i, u := range units[1:5] {
		if p := u[:1]; strings.HasSuffix(t, p) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, p)), 1<<(10*(i+1))
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	switch {
	case err != nil || n < 0 || t == "" || t[0] == '+' || (binary && mult == 1):
		return 0, fmt.Errorf("size %q: give a whole number of bytes, optionally with K, M, G or T (KiB, MiB, GiB, TiB)", s)
	case n > math.MaxInt64/mult:
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// Version writes a package's version as its format does,
// [epoch:]version[-release], leaving out a zero or missing epoch and a
// missing or empty release (a Debian native package has none); "" when the
// version is unknown.
func Version(epoch *int, version, release *string) string {
	if version == nil {
		return ""
	}
	v := *version
	if release != nil && *release != "" {
		v += "-" + *release
	}
	if epoch != nil && *epoch != 0 {
		v = fmt.Sprintf("%d:%s", *epoch, v)
	}
	return v
}
