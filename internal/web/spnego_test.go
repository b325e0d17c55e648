package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/spnego"

	"github.com/kiln-build/kiln/internal/krb/krbtest"
)

// person logs name in to the private realm (krbtest) with a password and
// returns an HTTP client that answers kiln-web's Negotiate challenges with
// its tickets for spn, keeping cookies and not following redirects.
func person(t *testing.T, k *krbtest.KDC, name, spn string) *spnego.Client {
	t.Helper()
	pw := krbtest.Unique("pw-")
	k.User(t, name, pw)
	cfg, err := config.Load(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	cl := client.NewWithPassword(name, k.Realm, pw, cfg, client.DisablePAFXFAST(true))
	if err := cl.Login(); err != nil {
		t.Fatalf("kerberos login of %s: %v", name, err)
	}
	t.Cleanup(cl.Destroy)
	return spnego.NewClient(cl, &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, spn)
}

// TestSPNEGO: people log in with real tickets from the private KDC; an
// authenticated person can cancel their job, another person and an
// anonymous request cannot.
func TestSPNEGO(t *testing.T) {
	t.Parallel()
	k := krbtest.Require(t)
	spn := krbtest.Unique("HTTP/kiln-web-")
	kt, err := keytab.Load(k.Keytab(t, spn))
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, func(c *Config) { c.Keytab, c.Realm = kt, k.Realm })
	f := b.f
	job := f.Jobs["building"]
	jobPage := fmt.Sprintf("/jobs/%d", job)

	// login fetches /login?next=PAGE, answering the Negotiate challenge,
	// then the page; it returns the page's CSRF token.
	login := func(c *spnego.Client) string {
		t.Helper()
		resp, err := c.Get(b.ts.URL + "/login?next=" + url.QueryEscape(jobPage))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != jobPage {
			t.Fatalf("login: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, err = c.Get(b.ts.URL + jobPage)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(string(body))
		if m == nil {
			t.Fatalf("no action form after login:\n%s", body)
		}
		return m[1]
	}
	cancel := func(c *http.Client, csrf string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", b.ts.URL+jobPage+"/cancel", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.ts.URL)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	status := func() string {
		var s string
		if err := f.DB.Pool.QueryRow(context.Background(), "SELECT status FROM kiln.job WHERE id = $1", job).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	// Anonymous: the page has no form; posting with a valid CSRF token
	// (from the cookie) is still refused for want of a login.
	anon := b.browser(t, "")
	if code, _ := anon.act(t, jobPage+"/cancel"); code != http.StatusUnauthorized {
		t.Errorf("anonymous cancel: %d", code)
	}
	// Without a ticket, /login challenges and explains.
	resp, err := http.Get(b.ts.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Negotiate" {
		t.Errorf("login without a ticket: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	bob := person(t, k, f.Bob, spn)
	if code, body := cancel(bob.Client, login(bob)); code != http.StatusNotFound || !strings.Contains(body, "does not exist or is not yours") {
		t.Errorf("bob cancelling alice's job: %d\n%s", code, body)
	}
	if s := status(); s != "building" {
		t.Fatalf("job is %s after refused cancels", s)
	}

	alice := person(t, k, f.Alice, spn)
	if code, body := cancel(alice.Client, login(alice)); code != http.StatusSeeOther {
		t.Fatalf("alice cancelling her job: %d\n%s", code, body)
	}
	var by string
	if err := f.DB.Pool.QueryRow(context.Background(), "SELECT status || ' by ' || cancelled_by FROM kiln.job WHERE id = $1", job).Scan(&by); err != nil {
		t.Fatal(err)
	}
	if by != "cancelled by "+f.Alice {
		t.Errorf("after alice's cancel: %s", by)
	}

	// A principal that is not a person's is refused at login.
	svc := person(t, k, krbtest.Unique("kiln_"), spn)
	resp, err = svc.Get(b.ts.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("login of a kiln_ principal: %d", resp.StatusCode)
	}
}

func TestRoleFor(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		comps []string
		realm string
		want  string
	}{
		{[]string{"alice"}, "EXAMPLE.ORG", "alice"},
		{[]string{"alice_2"}, "EXAMPLE.ORG", "alice_2"},
		{[]string{"alice"}, "OTHER.ORG", ""},
		{[]string{"alice", "admin"}, "EXAMPLE.ORG", ""},
		{[]string{"HTTP", "web.example.org"}, "EXAMPLE.ORG", ""},
		{[]string{"Alice"}, "EXAMPLE.ORG", ""},
		{[]string{"kiln_admin"}, "EXAMPLE.ORG", ""},
		{[]string{"builder_b1"}, "EXAMPLE.ORG", ""},
		{[]string{"reporter_farm1"}, "EXAMPLE.ORG", ""},
		{[]string{"publisher_farm1"}, "EXAMPLE.ORG", ""},
		{[]string{"postgres"}, "EXAMPLE.ORG", ""},
		{[]string{"a;drop"}, "EXAMPLE.ORG", ""},
	} {
		got, err := RoleFor(c.comps, c.realm, "EXAMPLE.ORG")
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("RoleFor(%v@%s) = %q, %v; want %q", c.comps, c.realm, got, err, c.want)
		}
	}
}
