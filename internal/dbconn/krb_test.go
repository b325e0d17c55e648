package dbconn_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/admin"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/krb/krbtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// A Kerberos identity is process-wide (pgx has one GSS provider per
// process), so every login below runs in a child process: this test binary
// started again with KILN_DBCONN_CHILD set, configured only by its
// environment and Config, as a daemon is.
func TestMain(m *testing.M) {
	if os.Getenv("KILN_DBCONN_CHILD") == "1" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// child opens a pool with dbconn.Open, takes several connections at once
// (one Kerberos client serves them all) and prints "OK <session_user>" or
// "ERROR <message>".
func child() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := dbconn.Config{
		URL:        os.Getenv("KILN_CHILD_URL"),
		AppName:    "dbconn-krb-test",
		Keytab:     os.Getenv("KILN_CHILD_KEYTAB"),
		Principal:  os.Getenv("KILN_CHILD_PRINCIPAL"),
		SPN:        os.Getenv("KILN_CHILD_SPN"),
		Krb5Config: os.Getenv("KILN_CHILD_KRB5_CONFIG"),
	}
	pool, err := dbconn.Open(ctx, cfg)
	if err != nil {
		fmt.Println("ERROR " + err.Error())
		return 0
	}
	defer pool.Close()
	const conns = 3
	who := make([]string, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	var held sync.WaitGroup
	held.Add(conns)
	for i := range conns {
		wg.Go(func() {
			c, err := pool.Acquire(ctx)
			if err != nil {
				errs[i] = err
				held.Done()
				return
			}
			defer c.Release()
			held.Done()
			held.Wait() // all connections open at the same time
			errs[i] = c.QueryRow(ctx, "SELECT session_user").Scan(&who[i])
		})
	}
	wg.Wait()
	for i := range conns {
		if errs[i] != nil {
			fmt.Println("ERROR " + errs[i].Error())
			return 0
		}
		if who[i] != who[0] {
			fmt.Printf("ERROR connections disagree: %q and %q\n", who[0], who[i])
			return 0
		}
	}
	fmt.Println("OK " + who[0])
	return 0
}

// login runs a child with env added to the test's environment and returns
// the session_user it got, or its error message.
func login(t *testing.T, env ...string) (string, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KILN_DBCONN_CHILD=1")
	// Only what the case sets: no inherited keytab, and no ticket unless given.
	cmd.Env = append(cmd.Env, "KRB5_CLIENT_KTNAME=", "KRB5CCNAME=FILE:"+filepath.Join(t.TempDir(), "no-ccache"))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	line := strings.TrimSpace(string(out))
	switch {
	case strings.HasPrefix(line, "OK "):
		return strings.TrimPrefix(line, "OK "), ""
	case strings.HasPrefix(line, "ERROR "):
		return "", strings.TrimPrefix(line, "ERROR ")
	}
	t.Fatalf("child process printed %q", out)
	return "", ""
}

func TestKerberosDaemonsLandInTheirRoles(t *testing.T) {
	t.Parallel()
	kdc := krbtest.Require(t)
	db := pgtest.New(t)
	superuser := pgtest.AdminURL(t)
	for _, process := range admin.Processes {
		host := krbtest.Unique("h")
		role := process + "_" + host
		krbtest.LoginRole(t, superuser, role, "kiln_"+process)
		keytab := kdc.Keytab(t, "kiln-"+process+"/"+host+".farm.kiln.test")
		// Daemons name their keytab by flag (Config.Keytab) or by MIT's
		// variable KRB5_CLIENT_KTNAME; try both.
		got, msg := login(t, "KILN_CHILD_URL="+kdc.URL(t, db.URL, role), "KRB5_CLIENT_KTNAME="+keytab)
		if got != role {
			t.Errorf("%s with KRB5_CLIENT_KTNAME: session_user %q, error %q; want %q", process, got, msg, role)
		}
		got, msg = login(t, "KILN_CHILD_URL="+kdc.URL(t, db.URL, role), "KILN_CHILD_KEYTAB="+keytab)
		if got != role {
			t.Errorf("%s with Config.Keytab: session_user %q, error %q; want %q", process, got, msg, role)
		}
	}
}

func TestKerberosPersonAfterKinit(t *testing.T) {
	t.Parallel()
	kdc := krbtest.Require(t)
	db := pgtest.New(t)
	person := krbtest.Unique("alice_")
	krbtest.LoginRole(t, pgtest.AdminURL(t), person, "kiln_submitter")
	kdc.User(t, person, "secret-"+person)
	cache := kdc.Kinit(t, person, "secret-"+person, 0)
	got, msg := login(t, "KILN_CHILD_URL="+kdc.URL(t, db.URL, person), "KRB5CCNAME=FILE:"+cache)
	if got != person {
		t.Fatalf("session_user %q, error %q; want %q", got, msg, person)
	}
	// The same process settings without Kerberos: a role outside
	// kiln_test_gss logs in by trust, and no ticket is needed.
	got, msg = login(t, "KILN_CHILD_URL="+db.URLAs("postgres"))
	if got != "postgres" {
		t.Fatalf("trust login: session_user %q, error %q", got, msg)
	}
}

func TestKerberosRefusals(t *testing.T) {
	t.Parallel()
	kdc := krbtest.Require(t)
	db := pgtest.New(t)
	admin := pgtest.AdminURL(t)
	alice, bob := krbtest.Unique("alice_"), krbtest.Unique("bob_")
	krbtest.LoginRole(t, admin, alice, "kiln_submitter")
	krbtest.LoginRole(t, admin, bob, "kiln_submitter")
	kdc.User(t, alice, "pw-"+alice)
	aliceCache := kdc.Kinit(t, alice, "pw-"+alice, 0)
	strangerKeytab := kdc.Keytab(t, krbtest.Unique("stranger/h"))

	garbage := filepath.Join(t.TempDir(), "garbage.keytab")
	if err := os.WriteFile(garbage, []byte("not a keytab"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadKDC := filepath.Join(t.TempDir(), "krb5.conf")
	conf, err := os.ReadFile(kdc.Config())
	if err != nil {
		t.Fatal(err)
	}
	// Port 1 on loopback: nothing listens there.
	conf = regexp.MustCompile(`kdc = 127\.0\.0\.1:\d+`).ReplaceAll(conf, []byte("kdc = 127.0.0.1:1"))
	if err := os.WriteFile(deadKDC, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	ipURL, err := url.Parse(kdc.URL(t, db.URL, alice))
	if err != nil {
		t.Fatal(err)
	}
	ipURL.Host = "127.0.0.1:" + ipURL.Port()

	cases := []struct {
		name string
		env  []string
		want []string // fragments of the error, in order
	}{
		{"unmapped principal", []string{"KILN_CHILD_URL=" + kdc.URL(t, db.URL, alice), "KRB5_CLIENT_KTNAME=" + strangerKeytab},
			[]string{"refused Kerberos principal stranger/", "as role \"" + alice + "\"", "pg_ident.conf does not map it"}},
		{"wrong role", []string{"KILN_CHILD_URL=" + kdc.URL(t, db.URL, bob), "KRB5CCNAME=FILE:" + aliceCache},
			[]string{"refused Kerberos principal " + alice + "@" + kdc.Realm, "as role \"" + bob + "\"", "pg_ident.conf does not map it"}},
		{"no ticket", []string{"KILN_CHILD_URL=" + kdc.URL(t, db.URL, alice)},
			[]string{"cannot log in with Kerberos", "no Kerberos ticket", "run kinit"}},
		{"unreadable keytab", []string{"KILN_CHILD_URL=" + kdc.URL(t, db.URL, alice), "KILN_CHILD_KEYTAB=" + garbage},
			[]string{"keytab unusable", "reading keytab " + garbage, "KRB5_CLIENT_KTNAME"}},
		{"missing keytab", []string{"KILN_CHILD_URL=" + kdc.URL(t, db.URL, alice), "KRB5_CLIENT_KTNAME=/nonexistent/kiln.keytab"},
			[]string{"keytab unusable", "/nonexistent/kiln.keytab"}},
		{"service principal from an IP address", []string{"KILN_CHILD_URL=" + ipURL.String(), "KRB5CCNAME=FILE:" + aliceCache},
			[]string{"unknown service principal", "postgres/127.0.0.1", "never an IP address"}},
		{"wrong service principal", []string{"KILN_CHILD_URL=" + kdc.URL(t, db.URL, alice), "KRB5CCNAME=FILE:" + aliceCache, "KILN_CHILD_SPN=postgres/nosuchhost.kiln.test"},
			[]string{"unknown service principal", "postgres/nosuchhost.kiln.test"}},
		{"KDC unreachable", []string{"KILN_CHILD_URL=" + kdc.URL(t, db.URL, alice), "KILN_CHILD_KEYTAB=" + strangerKeytab, "KILN_CHILD_KRB5_CONFIG=" + deadKDC},
			[]string{"KDC unreachable", "cannot reach a KDC", deadKDC}},
		{"gssencmode", []string{"KILN_CHILD_URL=" + kdc.URL(t, db.URL, alice) + "&gssencmode=prefer"},
			[]string{"remove gssencmode"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, msg := login(t, c.env...)
			if got != "" {
				t.Fatalf("logged in as %q; want a refusal", got)
			}
			t.Logf("refused: %s", msg)
			rest := msg
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q lacks %q (in order %q)", msg, w, c.want)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestKerberosExpiredTicket(t *testing.T) {
	t.Parallel()
	kdc := krbtest.Require(t)
	db := pgtest.New(t)
	person := krbtest.Unique("carol_")
	krbtest.LoginRole(t, pgtest.AdminURL(t), person, "kiln_submitter")
	kdc.User(t, person, "pw-"+person)
	cache := kdc.Kinit(t, person, "pw-"+person, time.Second)
	// Wait out the one-second ticket (it ends within two seconds of kinit).
	time.Sleep(2100 * time.Millisecond)
	got, msg := login(t, "KILN_CHILD_URL="+kdc.URL(t, db.URL, person), "KRB5CCNAME=FILE:"+cache)
	if got != "" {
		t.Fatalf("logged in as %q with an expired ticket", got)
	}
	t.Logf("refused: %s", msg)
	for _, w := range []string{"expired Kerberos ticket", person + "@" + kdc.Realm, "expired at", "run kinit again"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q lacks %q", msg, w)
		}
	}
}
