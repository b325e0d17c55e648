package names

import (
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	t.Parallel()
	good := []string{"el9-x86_64", "bookworm-amd64", "devel", "a", "x1_y2-z3", strings.Repeat("a", 50)}
	for _, s := range good {
		if err := CheckName("platform", s); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", s, err)
		}
	}
	bad := map[string]string{
		"":                      "empty",
		"El9":                   "not valid",
		"el9--x86":              "not valid",
		"-el9":                  "not valid",
		"el9-":                  "may not end",
		"el9.x86":               "not valid",
		"el 9":                  "not valid",
		strings.Repeat("a", 51): "longer than 50",
		"caf\u00e9":             "not valid",
		"a/b":                   "not valid",
	}
	for s, want := range bad {
		err := CheckName("platform", s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckName(%q) = %v, want error containing %q", s, err, want)
		}
	}
}

func TestCheckFileName(t *testing.T) {
	t.Parallel()
	good := []string{"hello-1.0-1.src.rpm", "hello_1.0-1.dsc", "a", "x.tar.gz", "with space.rpm", "ünïcode.rpm"}
	for _, s := range good {
		if err := CheckFileName(s); err != nil {
			t.Errorf("CheckFileName(%q) = %v, want nil", s, err)
		}
	}
	bad := map[string]string{
		"":                       "empty",
		"a/b.rpm":                "path separator",
		`a\b.rpm`:                "path separator",
		"..":                     "'..'",
		"a..b":                   "'..'",
		".":                      "not a file",
		"-rf.rpm":                "starts with '-'",
		"a\nb.rpm":               "control character",
		"a\x00b":                 "control character",
		"a\x7fb":                 "control character",
		strings.Repeat("a", 256): "longer than 255",
	}
	for s, want := range bad {
		err := CheckFileName(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFileName(%q) = %v, want error containing %q", s, err, want)
		}
	}
}

func FuzzCheckFileName(f *testing.F) {
	for _, s := range []string{"hello-1.0-1.src.rpm", "../x", "-x", "a\x00", "ok.dsc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckFileName(s) != nil {
			return
		}
		// An accepted name never escapes a directory or reads as an option.
		if strings.ContainsAny(s, "/\\\x00") || strings.Contains(s, "..") || strings.HasPrefix(s, "-") || s == "" || len(s) > 255 {
			t.Fatalf("CheckFileName accepted unsafe name %q", s)
		}
	})
}
