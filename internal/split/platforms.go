package split

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kiln-build/kiln/internal/names"
	"github.com/kiln-build/kiln/internal/platform"
)

// ArchRule is one package's architecture constraints.
type ArchRule struct {
	Package string // file name, for reasons
	// Exclusive lists the only architectures the package builds on (nil:
	// any); Field names where it came from (ExclusiveArch, Architecture).
	Exclusive []string
	Field     string
	// Exclude lists architectures it must not build on (ExcludeArch).
	Exclude []string
}

// Task is one platform of a job and, when the packages rule the platform
// out, why it is skipped.
type Task struct {
	Platform   string
	SkipReason string
}

// formatOf maps a package format (srpm, dsc) to the platform package format
// that builds it, and names it for messages.
var formatOf = map[string]struct{ platform, plural string }{
	"srpm": {"rpm", "SRPMs"},
	"dsc":  {"deb", "Debian source packages"},
}

// Resolve turns a job's platform selection into its tasks, one per platform
// in name order. A selection is a list of terms, each a platform name,
// "all" (every active platform that builds the job's package format) or
// "!name" (remove that platform); names are case-insensitive, and a
// selection of negations only starts from all. A named platform must exist,
// be active and build the job's format; a negated one must exist. A task is
// skipped when any package's architecture rules exclude the platform's
// architecture; when that leaves nothing to build, the selection is an
// error too. format is the job's package format (srpm or dsc).
func Resolve(selection []string, platforms []platform.Platform, format string, rules []ArchRule) ([]Task, error) {
	want, ok := formatOf[format]
	if !ok {
		return nil, fmt.Errorf("unknown package format %q", format)
	}
	byName := make(map[string]platform.Platform, len(platforms))
	for _, p := range platforms {
		byName[p.Name] = p
	}
	chosen := map[string]bool{}
	var removed []string
	positive := false
	addAll := func() {
		for _, p := range platforms {
			if p.Active && p.PackageFormat == want.platform {
				chosen[p.Name] = true
			}
		}
	}
	for _, raw := range selection {
		term := strings.ToLower(strings.TrimSpace(raw))
		neg := strings.HasPrefix(term, "!")
		name := strings.TrimPrefix(term, "!")
		switch {
		case term == "":
			continue
		case name == "all" && neg:
			return nil, fmt.Errorf("%q would remove every platform", raw)
		case name == "all":
			positive = true
			addAll()
			continue
		}
		if err := names.CheckName("platform", name); err != nil {
			return nil, err
		}
		p, known := byName[name]
		if !known {
			return nil, fmt.Errorf("unknown platform %s", name)
		}
		if neg {
			removed = append(removed, name)
			continue
		}
		positive = true
		if !p.Active {
			return nil, fmt.Errorf("platform %s is inactive", name)
		}
		if p.PackageFormat != want.platform {
			return nil, fmt.Errorf("platform %s builds %s packages, not %s", name, p.PackageFormat, want.plural)
		}
		chosen[name] = true
	}
	if !positive {
		addAll()
	}
	for _, name := range removed {
		delete(chosen, name)
	}
	if len(chosen) == 0 {
		if len(removed) > 0 {
			return nil, fmt.Errorf("no platforms left after removing %s", strings.Join(removed, ", "))
		}
		return nil, fmt.Errorf("no active platform builds %s", want.plural)
	}

	var tasks []Task
	buildable := 0
	for _, name := range sortedKeys(chosen) {
		t := Task{Platform: name, SkipReason: skipReason(byName[name].Arch, rules)}
		if t.SkipReason == "" {
			buildable++
		}
		tasks = append(tasks, t)
	}
	if buildable == 0 {
		var why []string
		for _, t := range tasks {
			why = append(why, t.Platform+": "+t.SkipReason)
		}
		return nil, fmt.Errorf("the packages' architectures rule out every selected platform (%s)", strings.Join(why, "; "))
	}
	return tasks, nil
}

// skipReason says why a platform of architecture arch cannot build the
// packages, or "" when it can.
func skipReason(arch string, rules []ArchRule) string {
	for _, r := range rules {
		if r.Exclusive != nil && !slices.Contains(r.Exclusive, arch) {
			return fmt.Sprintf("%s: %s %s excludes %s", r.Package, r.Field, strings.Join(r.Exclusive, " "), arch)
		}
		if slices.Contains(r.Exclude, arch) {
			return fmt.Sprintf("%s: ExcludeArch %s excludes %s", r.Package, strings.Join(r.Exclude, " "), arch)
		}
	}
	return ""
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
