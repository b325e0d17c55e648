package backend

import (
	"encoding/json"
	"strings"
	"testing"
)

// A platform's backend settings (a JSON object an admin wrote) either make
// a backend or an error, never a panic, and what is accepted is sane.
func FuzzSettings(f *testing.F) {
	for _, s := range []string{`{}`, `{"root": "rocky+epel-9-x86_64"}`, `{"root": "-x"}`, `{"root": 5}`, `{"sleep": "500ms"}`, `{"sleep": "-1s"}`, `{"sleep": 3}`, `{"sleep": null}`,
		`{"dist": "bookworm"}`, `{"dist": "bookworm", "chroot": "-x"}`, `{"dist": "-x"}`, `{"dist": "bookworm", "extra_args": ["--jobs=2", "x"]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var settings map[string]any
		if json.Unmarshal([]byte(s), &settings) != nil {
			return
		}
		for _, name := range []string{"rpmbuild", "dpkg", "mock", "noop", "sbuild"} {
			b, err := New(Platform{Backend: name, Settings: settings}, Options{})
			if err != nil {
				continue
			}
			switch b := b.(type) {
			case mock:
				if b.root == "" || strings.HasPrefix(b.root, "-") {
					t.Fatalf("mock accepted root %q from %s", b.root, s)
				}
			case sbuild:
				if !sbuildWord.MatchString(b.dist) || strings.HasPrefix(b.chroot, "-") {
					t.Fatalf("sbuild accepted dist %q, chroot %q from %s", b.dist, b.chroot, s)
				}
				for _, a := range b.extra {
					if !strings.HasPrefix(a, "-") {
						t.Fatalf("sbuild accepted extra argument %q from %s", a, s)
					}
				}
			case noop:
				if b.sleep < 0 {
					t.Fatalf("noop accepted sleep %s from %s", b.sleep, s)
				}
			}
		}
	})
}
