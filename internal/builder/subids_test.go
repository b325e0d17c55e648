package builder

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// systemd's NoNewPrivileges=yes (which a unit with User= also gets from
// LockPersonality= and the like) keeps sbuild and mmdebstrap from mapping
// subordinate ids: a builder of an sbuild platform in unshare mode refuses
// to start under it, saying so, rather than failing every build; one in
// schroot mode, which maps none, starts. The builder is made in a
// child with no_new_privs set (setpriv), since the bit cannot be unset.
func TestSbuildBuilderRefusesNoNewPrivileges(t *testing.T) {
	if os.Getenv("KILN_TEST_NNP_CHILD") != "" {
		f := newFarm(t)
		f.platform(t, "bookworm-amd64", "amd64", "deb", "sbuild", time.Hour, `{"dist": "bookworm"}`)
		_, pool := f.builderPool(t, 1)
		_, err := New(context.Background(), pool, testConfig(t, "bookworm-amd64"))
		fmt.Printf("New: %v\n", err)
		// schroot mode maps no subordinate ids: no refusal.
		f.platform(t, "bookworm-schroot", "amd64", "deb", "sbuild", time.Hour, `{"dist": "bookworm", "chroot": "bookworm-amd64-sbuild", "chroot_mode": "schroot"}`)
		_, pool = f.builderPool(t, 1)
		_, err = New(context.Background(), pool, testConfig(t, "bookworm-schroot"))
		fmt.Printf("New in schroot mode: %v\n", err)
		return
	}
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root, as the build user's builds do")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv")
	}
	cmd := exec.Command(setpriv, "--no-new-privs", os.Args[0], "-test.run=^TestSbuildBuilderRefusesNoNewPrivileges$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "KILN_TEST_NNP_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "New: platform bookworm-amd64: sbuild and mmdebstrap cannot map the subordinate ids of kiln-build") ||
		!strings.Contains(string(out), "NoNewPrivileges=yes") || !strings.Contains(string(out), "New in schroot mode: <nil>") {
		t.Fatalf("a builder of an sbuild platform under no_new_privs: %v\n%s", err, out)
	}
}
