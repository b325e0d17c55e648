// Package format writes the facts kiln shows people, durations and sizes,
// one way for the command line and the web alike.
package format

import (
	"fmt"
	"time"
)

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

// Size writes a byte count in binary units: 512 B, 1.5 KiB, 20.0 MiB, 3.2 GiB.
func Size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
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
