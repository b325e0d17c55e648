package backend

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// dose3's own report, made by dose-debcheck with the arguments sbuild
// gives it (--bd-uninstallable-explainer=dose3) for sbuild's dummy package
// of the build dependencies, says what cannot be installed and why: a
// build dependency nothing provides, a dependency of a package the build
// dependencies pull in (named), or a conflict.
func TestDose3Explains(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("dose-debcheck"); err != nil {
		t.Fatal("dose-debcheck is not installed (package dose-distcheck; run .ci/setup-debian as root)")
	}
	pkgs := func(dummy string) string {
		return "Package: sbuild-build-depends-main-dummy\nVersion: 0.invalid.0\nArchitecture: amd64\n" + dummy + "\n\n" +
			"Package: kiln-mid\nVersion: 2.0\nArchitecture: all\nDepends: kiln-gone (>= 3)\n\n" +
			"Package: kiln-clash\nVersion: 1.0\nArchitecture: all\nConflicts: kiln-other\n\n" +
			"Package: kiln-other\nVersion: 1.0\nArchitecture: all\n\n" +
			"Package: kiln-base\nVersion: 1.1\nArchitecture: all\n"
	}
	for _, tc := range []struct {
		name, dummy, want string
	}{
		{"missing", "Depends: kiln-base:amd64 (>= 1.2)", "kiln-base:amd64 (>= 1.2)"},
		{"pulled in", "Depends: kiln-mid", "kiln-gone:amd64 (>= 3) needed by kiln-mid 2.0"},
		{"build conflict", "Depends: kiln-other\nConflicts: kiln-other", "conflict kiln-other:amd64"},
		{"conflict", "Depends: kiln-clash, kiln-other", "kiln-clash 1.0 conflicts with kiln-other:amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command("dose-debcheck", "--checkonly", "sbuild-build-depends-main-dummy:amd64", "--verbose",
				"--failures", "--successes", "--explain", "--deb-native-arch", "amd64")
			cmd.Stdin = strings.NewReader(pkgs(tc.dummy))
			var report bytes.Buffer
			cmd.Stdout = &report
			// dose-debcheck exits 1 when the package is broken.
			if err := cmd.Run(); err != nil && cmd.ProcessState.ExitCode() != 1 {
				t.Fatalf("dose-debcheck: %v\n%s", err, report.String())
			}
			var sum sbuildSummary
			sum.Write(report.Bytes())
			sum.Write([]byte("\nStatus: failed\nFail-Stage: explain-bd-uninstallable\n"))
			sum.flush()
			exit := errors.New("exit status 3")
			se := sum.stageError(exit)
			if se.Stage != StageBuildDeps || !se.Unsatisfiable || se.Detail != tc.want || !errors.Is(se, exit) {
				t.Fatalf("%+v; want unsatisfiable build dependencies %q\n%s", se, tc.want, report.String())
			}
		})
	}
}
