package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/admin"
)

// TestDaemonsShareFlags runs every daemon's binary (admin.Processes) with
// --version and --help: each prints its name and version, and takes the
// shared daemon flags with the same environment variables (--db KILN_DB,
// --log-level KILN_LOG_LEVEL, the Kerberos flags) and its health address
// as --health-addr, KILN_<ROLE>_HEALTH_ADDR; kiln-web serves /healthz on
// its --listen address instead.
func TestDaemonsShareFlags(t *testing.T) {
	t.Parallel()
	if len(admin.Processes) != 6 {
		t.Fatalf("admin.Processes is %v: a new daemon belongs in this test", admin.Processes)
	}
	for _, p := range admin.Processes {
		name := "kiln-" + p
		bin := binary(t, name)
		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), name+" version ") {
			t.Errorf("%s --version: %v\n%s", name, err, out)
		}
		out, err = exec.Command(bin, "--help").CombinedOutput()
		if err != nil {
			t.Errorf("%s --help: %v\n%s", name, err, out)
			continue
		}
		want := []string{"--db value", "$KILN_DB", "--log-level value", "$KILN_LOG_LEVEL", "--version", "--krb-keytab value", "$KILN_KRB_KEYTAB", "--krb5-config value"}
		if p == "web" {
			want = append(want, "--listen value", "$KILN_WEB_LISTEN")
		} else {
			want = append(want, "--health-addr value", "$KILN_"+strings.ToUpper(p)+"_HEALTH_ADDR", "$KILN_HEALTH_ADDR")
		}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s --help does not show %q:\n%s", name, w, out)
			}
		}
	}
}
