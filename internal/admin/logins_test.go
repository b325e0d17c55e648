package admin

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// readRepo reads a file of the repository (this package is internal/admin).
func readRepo(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// What a site installs must agree with the login roles kiln admin
// daemon-host add makes (issue 17): for every process, pg_ident.conf.example
// maps kiln-P/HOST@REALM to exactly DaemonRole(P, HOST) and refuses the
// prefix P_ for people, pg_hba.conf.example admits kiln_P, the systemd unit
// names the keytab /etc/kiln/kiln-P.keytab, a PGUSER of the form P_<host>,
// the installed binary and a doc that make install installs, make install
// installs the binary, and docs/kerberos.md's table has the row.
func TestDaemonLoginsAgree(t *testing.T) {
	t.Parallel()
	ident := readRepo(t, "roles/pg_ident.conf.example")
	hba := readRepo(t, "roles/pg_hba.conf.example")
	makefile := readRepo(t, "Makefile")
	kerberos := readRepo(t, "docs/kerberos.md")
	groups := readRepo(t, "roles/00-groups.sql")
	for _, g := range GroupRoles() {
		if !strings.Contains(groups, "'"+g+"'") && !strings.Contains(groups, "CREATE ROLE "+g+" ") {
			t.Errorf("roles/00-groups.sql does not create %s (admin.GroupRoles)", g)
		}
	}
	maps := map[string]*regexp.Regexp{} // role template -> principal pattern
	var personLine string
	for _, line := range strings.Split(ident, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "kiln" {
			continue
		}
		if strings.Contains(f[1], "(?!") { // Go's regexp has no lookahead: checked below
			personLine = f[1]
			continue
		}
		re, err := regexp.Compile(strings.TrimPrefix(f[1], "/"))
		if err != nil {
			t.Fatalf("pg_ident.conf.example: %q: %v", line, err)
		}
		maps[f[2]] = re
	}
	if personLine == "" {
		t.Fatal("pg_ident.conf.example has no line for people")
	}
	installed := regexp.MustCompile(`(?m)^INSTALL_BINS := (.*)$`).FindStringSubmatch(makefile)
	if installed == nil {
		t.Fatal("Makefile: no INSTALL_BINS")
	}
	for _, p := range Processes {
		const host = "farm1.example.org"
		want, err := DaemonRole(p, host)
		if err != nil {
			t.Fatal(err)
		}
		principal := "kiln-" + p + "/" + host + "@EXAMPLE.ORG"
		mapped := 0
		for tmpl, re := range maps {
			if m := re.FindStringSubmatchIndex(principal); m != nil {
				mapped++
				if got := string(re.ExpandString(nil, strings.ReplaceAll(tmpl, `\1`, "${1}"), principal, m)); got != want {
					t.Errorf("pg_ident.conf.example maps %s to %s; kiln admin daemon-host add %s %s makes %s", principal, got, p, host, want)
				}
			}
		}
		if mapped != 1 {
			t.Errorf("pg_ident.conf.example: %d lines map %s; want 1", mapped, principal)
		}
		if !strings.Contains(personLine, "|"+p+"_|") && !strings.Contains(personLine, "(?!"+p+"_|") {
			t.Errorf("pg_ident.conf.example's person line lets %s_... in as a person: %s", p, personLine)
		}
		if !regexp.MustCompile(`(?m)^hostssl\s+kiln\s+\+kiln_` + p + `\s.*\bgss\b.*\bmap=kiln\b`).MatchString(hba) {
			t.Errorf("pg_hba.conf.example has no gss line for +kiln_%s", p)
		}
		if !strings.Contains(" "+installed[1]+" ", " kiln-"+p+" ") {
			t.Errorf("make install does not install kiln-%s (INSTALL_BINS := %s)", p, installed[1])
		}
		row := "| kiln-" + p + " | `kiln-" + p + "/HOST@REALM` | `/etc/kiln/kiln-" + p + ".keytab` | `" + p + "_<host>` (`kiln_" + p + "`) |"
		if !strings.Contains(kerberos, row) {
			t.Errorf("docs/kerberos.md lacks the row %s", row)
		}

		unitName := "kiln-" + p + ".service"
		if p == "builder" {
			unitName = "kiln-builder@.service"
		}
		unit := readRepo(t, "docs/systemd/"+unitName)
		for _, want := range []string{
			"KRB5_CLIENT_KTNAME=/etc/kiln/kiln-" + p + ".keytab",
			"ExecStart=/usr/local/bin/kiln-" + p,
		} {
			if !strings.Contains(unit, want) {
				t.Errorf("%s lacks %s", unitName, want)
			}
		}
		if !regexp.MustCompile(`PGUSER=` + p + `_[a-zA-Z0-9]+`).MatchString(unit) {
			t.Errorf("%s sets no PGUSER=%s_<host>", unitName, p)
		}
		if strings.Contains(strings.ToLower(unit), "gssencmode") {
			t.Errorf("%s sets gssencmode, which kiln refuses (docs/kerberos.md)", unitName)
		}
		doc := regexp.MustCompile(`(?m)^Documentation=file:///usr/local/share/doc/kiln/(\S+\.md) man:kiln\(1\)$`).FindStringSubmatch(unit)
		if doc == nil {
			t.Errorf("%s: no Documentation=file:///usr/local/share/doc/kiln/X.md man:kiln(1)", unitName)
		} else if _, err := os.Stat(filepath.Join("..", "..", "docs", doc[1])); err != nil {
			t.Errorf("%s names %s, which make install does not install (docs/*.md): %v", unitName, doc[1], err)
		}
	}
}

// kiln admin migrate refuses to start without the group roles (issue 17:
// a failed first migrate left schemas that kiln_owner could not use):
// MissingRoles names exactly the roles the cluster lacks.
func TestMissingRoles(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t) // the group roles exist in every test cluster
	nosuch := "kiln_nosuch_" + strings.TrimPrefix(db.Name, "kiln_test_")
	got, err := MissingRoles(t.Context(), db.Pool, append(GroupRoles(), nosuch, "kiln_owner"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != nosuch {
		t.Fatalf("MissingRoles: %q; want [%s]", got, nosuch)
	}
}
