package cli

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestInterspersedOptions: options may follow the arguments (koji, copr-cli,
// git and osc habits), and global options may follow the command name.
func TestInterspersedOptions(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"kiln submit x.src.rpm --bucket devel", "kiln submit --bucket devel x.src.rpm"},
		{"kiln submit x.src.rpm --bucket=devel -p el9-x86_64 y.dsc", "kiln submit --bucket=devel -p el9-x86_64 x.src.rpm y.dsc"},
		{"kiln show 1 --json", "kiln show --json 1"},
		{"kiln show 1 --db postgres://h/kiln", "kiln --db postgres://h/kiln show 1"},
		{"kiln --db x show --json 1", "kiln --db x show --json 1"},
		{"kiln download 7 -o out", "kiln download -o out 7"},
		{"kiln admin platform add el9 --arch x86_64 --backend rpmbuild", "kiln admin platform add --arch x86_64 --backend rpmbuild el9"},
		{"kiln log t3 -f", "kiln log -f t3"},
		{"kiln show -- --json", "kiln show -- --json"},
		{"kiln help submit", "kiln help submit"},
		{"kiln show 1 --no-such-option", "kiln show --no-such-option 1"},
		{"kiln jobs --generate-bash-completion", "kiln jobs --generate-bash-completion"},
	} {
		got, err := Interspersed(App(), strings.Fields(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if !slices.Equal(got, strings.Fields(tc.want)) {
			t.Errorf("%s:\n got %s\nwant %s", tc.in, strings.Join(got, " "), tc.want)
		}
	}
}

// TestUnknownCommand: a typo is a usage error (exit 2) that names the
// nearest command, at the top level and below admin.
func TestUnknownCommand(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"kiln sumbit x.src.rpm", `"sumbit" is not a command of kiln; did you mean "submit"?`},
		{"kiln admin platfrom list", `"platfrom" is not a command of kiln admin; did you mean "platform"?`},
		{"kiln frobnicate", `"frobnicate" is not a command of kiln (kiln help lists them)`},
	} {
		err := Run(context.Background(), strings.Fields(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || ExitCode(err) != ExitUsage {
			t.Errorf("%s: got %v (exit %d), want %q and exit %d", tc.in, err, ExitCode(err), tc.want, ExitUsage)
		}
	}
}

// TestOptionsAfterArgumentsReachTheCommand runs a real command with its
// options last: the database option after the command is used (the
// connection fails, exit 5), not refused as a usage error.
func TestOptionsAfterArgumentsReachTheCommand(t *testing.T) {
	err := Run(context.Background(), []string{"kiln", "--config", "/dev/null", "show", "1", "--json", "--db", "host=/nonexistent-kiln-socket-dir"})
	if ExitCode(err) != ExitConnect {
		t.Fatalf("got %v (exit %d), want a connection failure (exit %d)", err, ExitCode(err), ExitConnect)
	}
}
