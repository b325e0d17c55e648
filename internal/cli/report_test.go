package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// TestReportCommands: a person sets their report address and a webhook
// (whose secret is printed once), submits with --report; a bad address
// (CR LF included) is refused before anything is stored, and admin-only
// settings are refused to a person.
func TestReportCommands(t *testing.T) {
	t.Parallel()
	db, alice := submitterDB(t)
	ctx := context.Background()
	as := db.URLAs(alice)
	must(t, as, 0, []string{"report", "set", "--when", "failure", "alice@example.org"}, "alice@example.org, failure")
	var email, when string
	if err := db.Pool.QueryRow(ctx, `SELECT email, report_when FROM kiln.report_person WHERE person = $1`, alice).Scan(&email, &when); err != nil {
		t.Fatal(err)
	}
	if email != "alice@example.org" || when != "failure" {
		t.Errorf("stored %s %s", email, when)
	}
	out := must(t, as, 0, []string{"report", "webhook", "add", "https://ci.example.org/kiln"}, "its secret (shown only now): ")
	if secret := out[strings.LastIndex(out, " ")+1:]; len(strings.TrimSpace(secret)) != 64 {
		t.Errorf("secret in %q", out)
	}
	if out, code := kiln(t, as, "report", "set", "alice@example.org\r\nBcc: evil@example.org"); code == 0 || !strings.Contains(out, "plain address") {
		t.Errorf("an address with CR LF: exit %d\n%s", code, out)
	}
	if out, code := kiln(t, as, "admin", "report", "bucket", "devel", "team@example.org"); code != ExitPermission {
		t.Errorf("a person sets a bucket's addresses: exit %d\n%s", code, out)
	}

	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "rep"})
	if out, code := kiln(t, as, "submit", "--bucket", "devel", "--platform", "el9-x86_64", "--report", "x@example.org\nBcc: y@example.org", srpm); code == 0 || !strings.Contains(out, "--report") {
		t.Errorf("--report with LF: exit %d\n%s", code, out)
	}
	must(t, as, 0, []string{"submit", "--bucket", "devel", "--platform", "el9-x86_64", "--report", "team@example.org", "--report", "lead@example.org", srpm})
	var got string
	if err := db.Pool.QueryRow(ctx, `SELECT string_agg(email, ',' ORDER BY email) FROM kiln.job_report_address`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "lead@example.org,team@example.org" {
		t.Errorf("--report addresses stored: %s", got)
	}
	var jobs int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM kiln.job`).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if jobs != 1 {
		t.Errorf("%s jobs, want 1 (the refused submit stored nothing)", fmt.Sprint(jobs))
	}
}
