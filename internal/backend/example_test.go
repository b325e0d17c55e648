package backend_test

import (
	"fmt"

	"github.com/kiln-build/kiln/internal/backend"
)

// A platform names its backend and gives it settings (kiln.platform.backend
// and backend_settings). New checks the settings when the builder loads the
// platform, so a mistake shows when the builder starts, not in a build.
func ExampleNew() {
	platforms := []struct {
		backend  string
		settings map[string]any
	}{
		{"dpkg", nil},
		{"sbuild", map[string]any{"dist": "bookworm", "chroot_mode": "unshare", "extra_args": []any{"--jobs=4"}}},
		{"mock", map[string]any{"root": "rocky+epel-9-x86_64"}},
		{"sbuild", map[string]any{"distribution": "bookworm"}},
		{"sbuild", map[string]any{}},
		{"mock", map[string]any{}},
		{"docker", nil},
	}
	for _, p := range platforms {
		b, err := backend.New(backend.Platform{Backend: p.backend, Settings: p.settings}, backend.Options{})
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Printf("%s, isolates builds itself: %v\n", b.Name(), b.SelfIsolating())
	}
	// Output:
	// dpkg, isolates builds itself: false
	// sbuild, isolates builds itself: true
	// mock, isolates builds itself: true
	// error: backend sbuild: unknown setting "distribution" (known: dist, arch, chroot, chroot_mode, extra_args)
	// error: backend sbuild needs a distribution: set the platform's backend settings to {"dist": "bookworm"}
	// error: backend mock needs a build root: set the platform's backend settings to {"root": "<mock config>"}
	// error: unknown backend "docker"
}
