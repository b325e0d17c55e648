package backend

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The RPM backends' output says where a failure was: the SRPM not
// unpacking, build dependencies (unsatisfiable or not), the build.
func TestRPMStages(t *testing.T) {
	exit := errors.New("exit status 1")
	for _, tc := range []struct {
		name, tool, output string
		stage              string
		unsat              bool
		detail             string
	}{
		{"rpmbuild bad srpm", "rpmbuild", "error: broken.src.rpm: not an rpm package\n", StageFetch, false, "installing the SRPM"},
		{"rpmbuild deps", "rpmbuild", "Installing x.src.rpm\nerror: Failed build dependencies:\n\tkiln-base >= 1.2 is needed by kiln-user-1.0-1.x86_64\n\tgcc is needed by kiln-user-1.0-1.x86_64\n",
			StageBuildDeps, true, "kiln-base >= 1.2 is needed by kiln-user-1.0-1.x86_64; gcc is needed"},
		{"rpmbuild build", "rpmbuild", "Installing x.src.rpm\nExecuting(%prep): /bin/sh -e /tmp/rpm-tmp.1\nExecuting(%build): /bin/sh -e /tmp/rpm-tmp.2\nmake: *** Error 1\n",
			StageBuild, false, ""},
		{"mock chroot", "mock", "INFO: mock.py version 5.5 starting\nStart: chroot init\nERROR: Could not find required config\n", StageEnvironment, false, "chroot init"},
		{"mock nothing", "mock", "ERROR: bad option\n", StageEnvironment, false, "before its first step"},
		{"mock srpm", "mock", "Start: chroot init\nFinish: chroot init\nStart: build phase for x.src.rpm\nStart: build setup for x.src.rpm\nerror: unpacking of archive failed on file x: cpio: Bad magic\n",
			StageFetch, false, "unpacking the SRPM"},
		{"mock unsatisfiable", "mock", "Start: build setup for x.src.rpm\nNo matching package to install: 'kiln-no-such >= 2'\nError: Unable to find a match\n",
			StageBuildDeps, true, "kiln-no-such >= 2"},
		{"mock dnf problem", "mock", "Start: build setup for x.src.rpm\n - nothing provides libfoo.so.1()(64bit) needed by x\n",
			StageBuildDeps, true, "libfoo.so.1()(64bit) needed by x"},
		{"mock mirror down", "mock", "Start: build setup for x.src.rpm\nCurl error (6): Couldn't resolve host name\n", StageBuildDeps, false, "build setup"},
		{"mock build", "mock", "Start: build setup for x.src.rpm\nFinish: build setup for x.src.rpm\nStart: rpmbuild x.src.rpm\nerror: Bad exit status from /var/tmp/rpm-tmp.x (%build)\n",
			StageBuild, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &rpmStages{}
			// Written in two uneven pieces: lines may arrive split.
			half := len(tc.output) / 3
			fmt.Fprint(d, tc.output[:half])
			fmt.Fprint(d, tc.output[half:])
			se := d.mockError(exit)
			if tc.tool == "rpmbuild" {
				se = d.rpmbuildError(exit)
			}
			if se.Stage != tc.stage || se.Unsatisfiable != tc.unsat || !strings.Contains(se.Detail, tc.detail) || !errors.Is(se, exit) {
				t.Fatalf("%+v; want stage %s, unsatisfiable %v, detail with %q", se, tc.stage, tc.unsat, tc.detail)
			}
		})
	}
}
