package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// session returns the session cookie kiln-web sets after a Kerberos login
// of person. (The login itself, with real tickets from the private KDC, is
// TestSPNEGO; these tests are about what a session may do.)
func (b *bundle) session(t *testing.T, person string) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	b.s.setSession(rec, httptest.NewRequest("GET", "/", nil), person)
	for _, c := range rec.Result().Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	t.Fatal("no session cookie")
	return nil
}

// browser is an HTTP client with its own cookies that does not follow
// redirects.
type browser struct {
	b    *bundle
	c    *http.Client
	csrf string
}

func (b *bundle) browser(t *testing.T, person string) *browser {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(b.ts.URL)
	if person != "" {
		jar.SetCookies(u, []*http.Cookie{b.session(t, person)})
	}
	br := &browser{b: b, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	resp, err := br.c.Get(b.ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(string(body)); m != nil {
		br.csrf = m[1]
	} else {
		// Anonymous pages have no forms; the cookie carries the token.
		for _, c := range jar.Cookies(u) {
			if c.Name == csrfCookie {
				br.csrf = c.Value
			}
		}
	}
	return br
}

// post sends a form as the site's own pages do (Origin and token) unless
// told otherwise, and returns the status and body.
func (br *browser) post(t *testing.T, path, origin, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", br.b.ts.URL+path, strings.NewReader(url.Values{"csrf": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := br.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusSeeOther {
		return resp.StatusCode, resp.Header.Get("Location")
	}
	return resp.StatusCode, string(body)
}

func (br *browser) act(t *testing.T, path string) (int, string) {
	return br.post(t, path, br.b.ts.URL, br.csrf)
}

func TestActions(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.Realm = "KILN.TEST" })
	f := b.f
	ctx := context.Background()
	db := f.DB.Pool
	jobStatus := func(id int64) (status string, by *string) {
		t.Helper()
		if err := db.QueryRow(ctx, "SELECT status, cancelled_by FROM kiln.job WHERE id = $1", id).Scan(&status, &by); err != nil {
			t.Fatal(err)
		}
		return status, by
	}
	building := f.Jobs["building"]
	cancel := fmt.Sprintf("/jobs/%d/cancel", building)

	alice := b.browser(t, f.Alice)
	bob := b.browser(t, f.Bob)
	anon := b.browser(t, "")

	// Refused before anything happens: no token, a wrong token, another
	// site, no origin at all, nobody logged in.
	for _, c := range []struct {
		name          string
		br            *browser
		origin, token string
		want          int
	}{
		{"no token", alice, b.ts.URL, "", http.StatusForbidden},
		{"forged token", alice, b.ts.URL, strings.Repeat("a", 32) + ".x", http.StatusForbidden},
		{"other site", alice, "https://evil.example", alice.csrf, http.StatusForbidden},
		{"no origin", alice, "", alice.csrf, http.StatusForbidden},
		{"anonymous", anon, b.ts.URL, anon.csrf, http.StatusUnauthorized},
	} {
		if code, body := c.br.post(t, cancel, c.origin, c.token); code != c.want {
			t.Errorf("%s: %d, want %d\n%s", c.name, code, c.want, body)
		}
	}
	if st, _ := jobStatus(building); st != "building" {
		t.Fatalf("a refused request changed the job: %s", st)
	}

	// Bob may not cancel Alice's job or task: to him they do not exist.
	if code, body := bob.act(t, cancel); code != http.StatusNotFound || !strings.Contains(body, fmt.Sprintf("job %d does not exist or is not yours", building)) {
		t.Errorf("bob cancelling alice's job: %d\n%s", code, body)
	}
	pendingTask := f.Tasks["building/"+farmtest.Bookworm]
	if code, _ := bob.act(t, fmt.Sprintf("/tasks/%d/cancel", pendingTask)); code != http.StatusNotFound {
		t.Errorf("bob cancelling alice's task: %d", code)
	}

	// Alice cancels one task, then the whole job.
	if code, loc := alice.act(t, fmt.Sprintf("/tasks/%d/cancel", pendingTask)); code != http.StatusSeeOther || loc != fmt.Sprintf("/tasks/%d", pendingTask) {
		t.Fatalf("alice cancelling her task: %d %s", code, loc)
	}
	if code, loc := alice.act(t, cancel); code != http.StatusSeeOther || loc != fmt.Sprintf("/jobs/%d", building) {
		t.Fatalf("alice cancelling her job: %d %s", code, loc)
	}
	if st, by := jobStatus(building); st != "cancelled" || by == nil || *by != f.Alice {
		t.Errorf("after alice's cancel: %s by %v", st, by)
	}
	var attempt, reason, actor, person string
	if err := db.QueryRow(ctx, `SELECT a.status, a.reason FROM kiln.attempt a WHERE a.task_id = $1`, f.Tasks["building/"+farmtest.EL9]).Scan(&attempt, &reason); err != nil {
		t.Fatal(err)
	}
	if attempt != "cancelled" || reason != "cancelled by "+f.Alice+" (web)" {
		t.Errorf("attempt after cancel: %s %q", attempt, reason)
	}
	if err := db.QueryRow(ctx, `SELECT actor, detail->>'person' FROM kiln.event WHERE kind = 'web.cancel_job' AND job_id = $1`, building).Scan(&actor, &person); err != nil {
		t.Fatal(err)
	}
	if actor != b.web || person != f.Alice {
		t.Errorf("web.cancel_job event: actor %s for %s", actor, person)
	}
	if code, body := alice.act(t, cancel); code != http.StatusConflict || !strings.Contains(body, "has already finished") {
		t.Errorf("cancelling again: %d\n%s", code, body)
	}
	if code, _ := alice.act(t, "/jobs/999999/cancel"); code != http.StatusNotFound {
		t.Errorf("cancelling a missing job: %d", code)
	}

	// Bob resubmits Alice's job: the new one is his, with the same
	// packages, and waits for validation.
	old := f.Jobs["succeeded"]
	code, loc := bob.act(t, fmt.Sprintf("/jobs/%d/resubmit", old))
	var newID int64
	if _, err := fmt.Sscanf(loc, "/jobs/%d", &newID); code != http.StatusSeeOther || err != nil {
		t.Fatalf("resubmit: %d %s", code, loc)
	}
	var submitter, status string
	var resubmitOf int64
	var samePackages bool
	var validate int
	if err := db.QueryRow(ctx, `SELECT submitter, status, resubmit_of,
		(SELECT array_agg((file_name, blob_sha256) ORDER BY seq) FROM kiln.package WHERE job_id = j.id) =
		(SELECT array_agg((file_name, blob_sha256) ORDER BY seq) FROM kiln.package WHERE job_id = $2),
		(SELECT count(*) FROM river.river_job WHERE kind = 'validate' AND (args->>'job_id')::bigint = j.id)
		FROM kiln.job j WHERE id = $1`, newID, old).Scan(&submitter, &status, &resubmitOf, &samePackages, &validate); err != nil {
		t.Fatal(err)
	}
	if submitter != f.Bob || status != "submitted" || resubmitOf != old || !samePackages || validate != 1 {
		t.Errorf("resubmitted job: %s %s of %d, same packages %v, %d validate River jobs", submitter, status, resubmitOf, samePackages, validate)
	}

	// Builders: admins only.
	if code, _ := bob.act(t, "/builders/b1/disable"); code != http.StatusForbidden {
		t.Errorf("bob disabling a builder: %d", code)
	}
	ada := b.browser(t, f.Admin)
	if code, loc := ada.act(t, "/builders/b1/disable"); code != http.StatusSeeOther || loc != "/builders/b1" {
		t.Errorf("ada disabling b1: %d %s", code, loc)
	}
	var enabled bool
	if err := db.QueryRow(ctx, "SELECT enabled FROM kiln.builder WHERE name = 'b1'").Scan(&enabled); err != nil || enabled {
		t.Errorf("b1 enabled %v after ada disabled it (%v)", enabled, err)
	}
	if code, _ := ada.act(t, "/builders/nope/enable"); code != http.StatusNotFound {
		t.Errorf("enabling a missing builder: %d", code)
	}
	page := b.get(t, "/builders/b1", http.StatusOK)
	contains(t, "disabled builder", page, "<strong>no</strong>")

	// An admin may cancel anyone's job.
	if code, _ := ada.act(t, fmt.Sprintf("/jobs/%d/cancel", f.Jobs["queued"])); code != http.StatusSeeOther {
		t.Errorf("ada cancelling bob's job: %d", code)
	}
	// Logging out ends the session.
	if code, _ := alice.act(t, "/logout"); code != http.StatusSeeOther {
		t.Errorf("logout: %d", code)
	}
}

// TestWebFunctions checks the SQL side of acting for a person: only
// kiln_web may call the functions, and only for real, ordinary people.
func TestWebFunctions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.f
	ctx := context.Background()
	as := func(role, sql string, args ...any) error {
		return pgx.BeginFunc(ctx, f.DB.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL SESSION AUTHORIZATION "+pgx.Identifier{role}.Sanitize()); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, sql, args...)
			return err
		})
	}
	job := f.Jobs["building"]
	for _, c := range []struct {
		name, role, person string
		want               string
	}{
		{"a person calling directly", f.Alice, f.Alice, "permission denied for function web_cancel_job"},
		{"an admin calling directly", f.Admin, f.Admin, "only the web interface|permission denied for function"},
		{"for a superuser", b.web, "postgres", "has no login role here"},
		{"for nobody", b.web, "nobody_at_all", "has no login role here"},
		{"for the web itself", b.web, b.web, "is not a member of kiln_submitter"},
		{"for a group role", b.web, "kiln_admin", "has no login role here"},
	} {
		err := as(c.role, "SELECT kiln.web_cancel_job($1, $2)", c.person, job)
		// Where admins inherit the owner's rights they may execute the
		// function, which then refuses them itself.
		if err == nil || !regexp.MustCompile(c.want).MatchString(err.Error()) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if err := as(b.web, "SELECT kiln.web_set_builder_enabled($1, 'b1', false)", f.Alice); err == nil || !strings.Contains(err.Error(), "is not a member of kiln_admin") {
		t.Errorf("alice switching a builder: %v", err)
	}
	if err := as(b.web, "SELECT kiln.web_cancel_job($1, $2)", f.Alice, job); err != nil {
		t.Errorf("the web cancelling for alice: %v", err)
	}
}
