package split

import (
	"reflect"
	"testing"

	"github.com/kiln-build/kiln/internal/platform"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	platforms := []platform.Platform{
		{Name: "bookworm-amd64", Arch: "amd64", PackageFormat: "deb", Active: true},
		{Name: "bookworm-arm64", Arch: "arm64", PackageFormat: "deb", Active: true},
		{Name: "el8-x86_64", Arch: "x86_64", PackageFormat: "rpm", Active: false},
		{Name: "el9-aarch64", Arch: "aarch64", PackageFormat: "rpm", Active: true},
		{Name: "el9-ppc64le", Arch: "ppc64le", PackageFormat: "rpm", Active: true},
		{Name: "el9-x86_64", Arch: "x86_64", PackageFormat: "rpm", Active: true},
	}
	x86only := []ArchRule{{Package: "a.src.rpm", Field: "ExclusiveArch", Exclusive: []string{"x86_64"}}}
	noPPC := []ArchRule{{Package: "b.src.rpm", Field: "ExclusiveArch", Exclude: []string{"ppc64le"}}}
	pending := func(names ...string) []Task {
		var out []Task
		for _, n := range names {
			out = append(out, Task{Platform: n})
		}
		return out
	}
	cases := []struct {
		name      string
		selection []string
		format    string
		rules     []ArchRule
		platforms []platform.Platform // nil: all of the above
		want      []Task
		err       string
	}{
		{name: "nothing means all active of the format", format: "srpm",
			want: pending("el9-aarch64", "el9-ppc64le", "el9-x86_64")},
		{name: "all", selection: []string{"all"}, format: "srpm",
			want: pending("el9-aarch64", "el9-ppc64le", "el9-x86_64")},
		{name: "all for dsc", selection: []string{"all"}, format: "dsc",
			want: pending("bookworm-amd64", "bookworm-arm64")},
		{name: "one name", selection: []string{"el9-x86_64"}, format: "srpm", want: pending("el9-x86_64")},
		{name: "case-insensitive", selection: []string{"EL9-X86_64", " El9-AArch64 "}, format: "srpm",
			want: pending("el9-aarch64", "el9-x86_64")},
		{name: "all minus one", selection: []string{"all", "!el9-ppc64le"}, format: "srpm",
			want: pending("el9-aarch64", "el9-x86_64")},
		{name: "negation only starts from all", selection: []string{"!EL9-PPC64LE"}, format: "srpm",
			want: pending("el9-aarch64", "el9-x86_64")},
		{name: "negation wins regardless of order", selection: []string{"!el9-x86_64", "el9-x86_64", "el9-aarch64"}, format: "srpm",
			want: pending("el9-aarch64")},
		{name: "negating an inactive platform is harmless", selection: []string{"!el8-x86_64"}, format: "srpm",
			want: pending("el9-aarch64", "el9-ppc64le", "el9-x86_64")},
		{name: "duplicates collapse", selection: []string{"el9-x86_64", "all", "el9-x86_64"}, format: "srpm",
			want: pending("el9-aarch64", "el9-ppc64le", "el9-x86_64")},
		{name: "inactive named", selection: []string{"el8-x86_64"}, format: "srpm", err: "platform el8-x86_64 is inactive"},
		{name: "inactive not in all", selection: []string{"all"}, format: "srpm", rules: x86only,
			want: []Task{
				{Platform: "el9-aarch64", SkipReason: "a.src.rpm: ExclusiveArch x86_64 excludes aarch64"},
				{Platform: "el9-ppc64le", SkipReason: "a.src.rpm: ExclusiveArch x86_64 excludes ppc64le"},
				{Platform: "el9-x86_64"},
			}},
		{name: "unknown", selection: []string{"el7-x86_64"}, format: "srpm", err: "unknown platform el7-x86_64"},
		{name: "unknown negated", selection: []string{"all", "!el7"}, format: "srpm", err: "unknown platform el7"},
		{name: "bad name", selection: []string{"el9 x86"}, format: "srpm", err: `platform name "el9 x86" is not valid: use lower-case letters and digits separated by single - or _`},
		{name: "not all", selection: []string{"!all"}, format: "srpm", err: `"!all" would remove every platform`},
		{name: "nothing left", selection: []string{"el9-x86_64", "!el9-x86_64"}, format: "srpm",
			err: "no platforms left after removing el9-x86_64"},
		{name: "all negated away", selection: []string{"!bookworm-amd64", "!bookworm-arm64"}, format: "dsc",
			err: "no platforms left after removing bookworm-amd64, bookworm-arm64"},
		{name: "wrong format named", selection: []string{"bookworm-amd64"}, format: "srpm",
			err: "platform bookworm-amd64 builds deb packages, not SRPMs"},
		{name: "no platform of the format", selection: []string{"all"}, format: "dsc", platforms: platforms[2:],
			err: "no active platform builds Debian source packages"},
		{name: "exclude arch", selection: []string{"all"}, format: "srpm", rules: noPPC,
			want: []Task{
				{Platform: "el9-aarch64"},
				{Platform: "el9-ppc64le", SkipReason: "b.src.rpm: ExcludeArch ppc64le excludes ppc64le"},
				{Platform: "el9-x86_64"},
			}},
		{name: "any package rules a platform out", selection: []string{"all"}, format: "srpm", rules: append(append([]ArchRule{}, noPPC...), x86only...),
			want: []Task{
				{Platform: "el9-aarch64", SkipReason: "a.src.rpm: ExclusiveArch x86_64 excludes aarch64"},
				{Platform: "el9-ppc64le", SkipReason: "b.src.rpm: ExcludeArch ppc64le excludes ppc64le"},
				{Platform: "el9-x86_64"},
			}},
		{name: "debian architecture list", selection: nil, format: "dsc",
			rules: []ArchRule{{Package: "g.dsc", Field: "Architecture", Exclusive: []string{"arm64"}}},
			want: []Task{
				{Platform: "bookworm-amd64", SkipReason: "g.dsc: Architecture arm64 excludes amd64"},
				{Platform: "bookworm-arm64"},
			}},
		{name: "everything ruled out", selection: []string{"el9-aarch64", "el9-ppc64le"}, format: "srpm", rules: x86only,
			err: "the packages' architectures rule out every selected platform (el9-aarch64: a.src.rpm: ExclusiveArch x86_64 excludes aarch64; el9-ppc64le: a.src.rpm: ExclusiveArch x86_64 excludes ppc64le)"},
	}
	for _, c := range cases {
		ps := c.platforms
		if ps == nil {
			ps = platforms
		}
		got, err := Resolve(c.selection, ps, c.format, c.rules)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("%s: Resolve = %v, %v; want error %q", c.name, got, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Resolve = %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}
