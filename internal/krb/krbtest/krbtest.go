// Package krbtest gives tests Kerberos principals, keytabs and tickets in the
// private KDC that .ci/kdc starts (make test does this: KILN_WITH_KDC=1
// .ci/with-cluster), and login roles the private PostgreSQL cluster
// authenticates with gss (members of kiln_test_gss, mapped by
// roles/pg_ident.conf.example).
package krbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// KDC is the private test realm.
type KDC struct {
	Dir   string // KILN_KDC_DIR: krb5.conf, kdc.conf, the database
	Realm string // KILN_KDC_REALM, KILN.TEST
	// Host is the database server's host name for Kerberos logins (the
	// service principal is postgres/<Host>); it resolves to 127.0.0.1.
	Host string
}

// Require returns the private KDC. Without one, the test fails when run by
// make test (KILN_WITH_KDC=1) and is skipped otherwise, with a message
// saying how to run it.
func Require(t testing.TB) *KDC {
	t.Helper()
	k := &KDC{Dir: os.Getenv("KILN_KDC_DIR"), Realm: os.Getenv("KILN_KDC_REALM"), Host: os.Getenv("KILN_TEST_GSS_HOST")}
	if k.Dir != "" && k.Realm != "" && k.Host != "" {
		return k
	}
	msg := "no private Kerberos KDC (KILN_KDC_DIR, KILN_KDC_REALM and KILN_TEST_GSS_HOST unset): run 'make test' or 'KILN_WITH_KDC=1 .ci/with-cluster go test ./...'"
	if os.Getenv("KILN_WITH_KDC") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return nil
}

// Unique returns prefix followed by random hex digits, for principals and
// roles that must not clash between tests (roles are cluster-wide).
func Unique(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// kadmin runs one kadmin.local query against the test realm.
func (k *KDC) kadmin(t testing.TB, query string) {
	t.Helper()
	cmd := exec.Command("kadmin.local", "-q", query)
	cmd.Env = k.env()
	out, err := cmd.CombinedOutput()
	// kadmin.local exits 0 when a query fails; MIT's messages end in
	// "while <doing what>".
	if err != nil || strings.Contains(string(out), " while ") {
		t.Fatalf("kadmin.local -q %q: %v\n%s", query, err, out)
	}
}

func (k *KDC) env() []string {
	return append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin",
		"KRB5_CONFIG="+filepath.Join(k.Dir, "krb5.conf"), "KRB5_KDC_PROFILE="+filepath.Join(k.Dir, "kdc.conf"))
}

// Principal qualifies name with the realm.
func (k *KDC) Principal(name string) string { return name + "@" + k.Realm }

// Keytab creates principal name (such as kiln-builder/b1) with a random key
// and writes its keytab into a temporary directory of the test.
func (k *KDC) Keytab(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), strings.ReplaceAll(name, "/", "_")+".keytab")
	k.kadmin(t, "addprinc -randkey "+k.Principal(name))
	k.kadmin(t, fmt.Sprintf("ktadd -k %s %s", path, k.Principal(name)))
	return path
}

// User creates principal name with a password.
func (k *KDC) User(t testing.TB, name, password string) {
	t.Helper()
	k.kadmin(t, fmt.Sprintf("addprinc -pw %s %s", password, k.Principal(name)))
}

// Kinit gets a ticket for name with kinit into a new ticket cache of the
// test and returns its path; lifetime 0 means the realm's default.
func (k *KDC) Kinit(t testing.TB, name, password string, lifetime time.Duration) string {
	t.Helper()
	cache := filepath.Join(t.TempDir(), "ccache")
	args := []string{"-c", "FILE:" + cache}
	if lifetime > 0 {
		args = append(args, "-l", fmt.Sprintf("%ds", int(lifetime.Seconds())))
	}
	cmd := exec.Command("kinit", append(args, k.Principal(name))...)
	cmd.Env = k.env()
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kinit %s: %v\n%s", name, err, out)
	}
	return cache
}

// Config returns the path of the test realm's krb5.conf.
func (k *KDC) Config() string { return filepath.Join(k.Dir, "krb5.conf") }

// LoginRole creates login role name, a member of groups and of
// kiln_test_gss (so the private cluster authenticates it with Kerberos), and
// drops it when the test ends. admin is a superuser URL of the cluster.
func LoginRole(t testing.TB, admin, name string, groups ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connecting as superuser: %v", err)
	}
	defer conn.Close(ctx)
	in := append([]string{"kiln_test_gss"}, groups...)
	for i, g := range in {
		in[i] = pgx.Identifier{g}.Sanitize()
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE %s", pgx.Identifier{name}.Sanitize(), strings.Join(in, ", "))); err != nil {
		t.Fatalf("creating login role %s: %v", name, err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{name}.Sanitize())
	})
}

// URL returns dbURL changed to log in as role through the Kerberos host name
// (so the server asks for GSSAPI and the service principal is postgres/<Host>).
func (k *KDC) URL(t testing.TB, dbURL, role string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("parsing %s: %v", dbURL, err)
	}
	u.User = url.User(role)
	u.Host = k.Host + ":" + u.Port()
	return u.String()
}
