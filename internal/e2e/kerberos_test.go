package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/credentials"
	"github.com/jcmturner/gokrb5/v8/spnego"

	"github.com/kiln-build/kiln/internal/admin"
	"github.com/kiln-build/kiln/internal/krb/krbtest"
	"github.com/kiln-build/kiln/internal/testsupport/proctest"
)

// kerberized sets up logins the way a site does (docs/kerberos.md): the
// login role is made with kiln admin, and is made a member of kiln_test_gss
// so the private cluster's pg_hba.conf sends it to gss, where only the ident
// map (roles/pg_ident.conf.example) lets a principal in.
func (f *farm) kerberized(t testing.TB, adminArgs ...string) {
	t.Helper()
	out, code := kiln(t, nil, append([]string{"--db", f.db.URL}, adminArgs...)...)
	if code != 0 {
		t.Fatalf("kiln %s: exit %d\n%s", strings.Join(adminArgs, " "), code, out)
	}
	m := regexp.MustCompile(`created login role (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("kiln %s printed no role:\n%s", strings.Join(adminArgs, " "), out)
	}
	role := m[1]
	t.Cleanup(func() {
		_, _ = f.db.Pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
	})
	f.exec(t, "GRANT kiln_test_gss TO "+pgx.Identifier{role}.Sanitize())
}

// krbDaemon makes process's login role on host and a keytab for its
// principal kiln-<process>/<host>, and has the farm start the process with
// that keytab. It returns the role.
func (f *farm) krbDaemon(t testing.TB, kdc *krbtest.KDC, process, host string) string {
	t.Helper()
	role, err := admin.DaemonRole(process, host)
	if err != nil {
		t.Fatal(err)
	}
	f.kerberized(t, "admin", "daemon-host", "add", process, host)
	keytab := kdc.Keytab(t, "kiln-"+process+"/"+host)
	f.logins[role] = []string{"--db", kdc.URL(t, f.db.URL, role), "--krb-keytab", keytab, "--krb5-config", kdc.Config()}
	return role
}

// The whole pipeline with every process under its own Kerberos identity
// (issues 6 and 17): kiln-splitter, kiln-builder, kiln-janitor, kiln-web,
// kiln-reporter and kiln-publisher log in with their own keytabs, mapped by the ident map to the login roles kiln
// admin made; a person kinit's and runs kiln submit --wait, kiln show and
// kiln download with the ticket cache; then cancels a second job of hers
// through kiln-web with a SPNEGO token for the web's HTTP principal and the
// page's CSRF token. Every identity is checked where the database records
// it: pg_stat_gssapi and session_user of each daemon's connections,
// kiln.builder.role, kiln.job.submitter, the actors of the events and the
// maker of the publisher's snapshot.
func TestPipelineUnderKerberos(t *testing.T) {
	t.Parallel()
	kdc := krbtest.Require(t)
	f := newFarm(t)
	host := krbtest.Unique("farm") + ".kiln.test"
	short := strings.SplitN(host, ".", 2)[0]
	roles := map[string]string{}
	for _, p := range admin.Processes {
		roles[p] = f.krbDaemon(t, kdc, p, host)
	}
	alice := krbtest.Unique("alice_")
	f.kerberized(t, "admin", "person", "add", "--bucket", "devel", alice)
	kdc.User(t, alice, "pw-"+alice)
	cache := kdc.Kinit(t, alice, "pw-"+alice, 0)
	f.logins[alice] = []string{"--db", kdc.URL(t, f.db.URL, alice), "--krb5-config", kdc.Config()}
	aliceEnv := []string{"KRB5CCNAME=FILE:" + cache, "KRB5_CONFIG=" + kdc.Config(), "KRB5_CLIENT_KTNAME="}
	// The web's HTTP service principal, for people's SPNEGO logins.
	spn := "HTTP/" + host
	httpKeytab := kdc.Keytab(t, spn)

	f.startSplitter(t, roles["splitter"])
	janitor := f.startJanitor(t, roles["janitor"])
	f.startBuilder(t, short, roles["builder"])
	f.startReporter(t, roles["reporter"])
	f.startPublisher(t, roles["publisher"])
	_, web := f.startWeb(t, roles["web"], "--keytab", httpKeytab, "--realm", kdc.Realm)

	// alice submits with kiln submit --wait, after kinit.
	out, code := kiln(t, aliceEnv, append(f.login(alice), "--web-url", web, "submit", "--bucket", "devel", "--platform", platform,
		"--wait", quick(t, "kiln-kerberos"))...)
	if code != 0 {
		t.Fatalf("kiln submit --wait: exit %d\n%s", code, out)
	}
	job := submittedJob(t, out)
	jobURL := fmt.Sprintf("%s/jobs/%d", web, job)
	if !strings.Contains(out, jobURL) {
		t.Errorf("kiln submit printed no link to %s:\n%s", jobURL, out)
	}
	// kiln-publisher publishes the finished job into bucket devel's
	// repository, as its own role.
	waitFor(t, "kiln-publisher's snapshot of the job", func() bool {
		return f.count(t, `SELECT count(*) FROM kiln.publication_request WHERE job_id = $1 AND done_at IS NOT NULL AND snapshot_id IS NOT NULL`, job) > 0
	})
	var publishedBy []string
	f.scan(t, `SELECT array_agg(DISTINCT s.created_by::text) FROM kiln.snapshot s WHERE s.bucket = 'devel'`, nil, &publishedBy)
	if !reflect.DeepEqual(publishedBy, []string{roles["publisher"]}) {
		t.Errorf("bucket devel's snapshots made by %v; want %s", publishedBy, roles["publisher"])
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.repository_package WHERE job_id = $1 AND name = 'kiln-kerberos'`, job); n == 0 {
		t.Errorf("the published repository holds no package kiln-kerberos of job %d", job)
	}
	out, code = kiln(t, aliceEnv, append(f.login(alice), "show", strconv.FormatInt(job, 10))...)
	if code != 0 || !strings.Contains(out, "submitted by "+alice) || !strings.Contains(out, "kiln-kerberos-1.0-1.x86_64.rpm") {
		t.Fatalf("kiln show: exit %d\n%s", code, out)
	}
	dir := t.TempDir()
	out, code = kiln(t, aliceEnv, append(f.login(alice), "download", "-o", dir, strconv.FormatInt(job, 10))...)
	if code != 0 {
		t.Fatalf("kiln download: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, platform, "kiln-kerberos-1.0-1.x86_64.rpm")); err != nil {
		t.Fatalf("kiln download: %v\n%s", err, out)
	}

	// A second job, still building when alice cancels it on the web.
	marker := proctest.SleepMarker()
	out, code = kiln(t, aliceEnv, append(f.login(alice), "submit", "--bucket", "devel", "--platform", platform,
		hangingFirstAttempt(t, "kiln-kerberos-cancel", marker))...)
	if code != 0 {
		t.Fatalf("kiln submit: exit %d\n%s", code, out)
	}
	second := submittedJob(t, out)
	secondTask := f.taskOf(t, second)
	f.waitBuilding(t, secondTask, 1, short, "SLEEPING-NOW")

	// Every daemon's connections, while they all run: authenticated by
	// Kerberos as its own principal, session_user its own role.
	checkDaemonLogins(t, f, kdc, host, roles)

	webCancel(t, kdc, cache, spn, web, second)
	if got := f.waitTask(t, secondTask, "cancelled", "succeeded", "failed"); got.Status != "cancelled" {
		t.Fatalf("task %+v after alice cancelled on the web", got)
	}
	var cancelledBy string
	f.scan(t, `SELECT status || ' by ' || cancelled_by FROM kiln.job WHERE id = $1`, []any{second}, &cancelledBy)
	if cancelledBy != "cancelled by "+alice {
		t.Errorf("second job: %s; want cancelled by %s", cancelledBy, alice)
	}
	// The builder learns of it and kills the build.
	proctest.NoLeftovers(t, "sleep "+marker)
	waitFor(t, "a janitor round", func() bool {
		return f.count(t, `SELECT count(*) FROM kiln.event WHERE kind = 'janitor.round'`) > 0
	})
	janitor.stop(t)

	// Who did what, as the database recorded it.
	var submitters []string
	f.scan(t, `SELECT array_agg(DISTINCT submitter) FROM kiln.job`, nil, &submitters)
	if !reflect.DeepEqual(submitters, []string{alice}) {
		t.Errorf("job submitters %v; want %s", submitters, alice)
	}
	var builderRole string
	f.scan(t, `SELECT role FROM kiln.builder WHERE name = $1`, []any{short}, &builderRole)
	if builderRole != roles["builder"] {
		t.Errorf("kiln.builder.role %q; want %q", builderRole, roles["builder"])
	}
	for _, c := range []struct {
		what, where string
		actor       string
	}{
		{"job submitted", `kind = 'job.status' AND old_status IS NULL`, alice},
		{"task created by the split", `kind = 'task.status' AND old_status IS NULL`, roles["splitter"]},
		{"task taken", `kind = 'task.status' AND new_status = 'building'`, roles["builder"]},
		{"attempt started or ended by the builder", `kind = 'attempt.status' AND new_status IN ('building', 'succeeded')`, roles["builder"]},
		{"builder state", `kind = 'builder.state'`, roles["builder"]},
		{"janitor round", `kind = 'janitor.round'`, roles["janitor"]},
		{"cancel on the web", `kind = 'web.cancel_job' AND detail->>'person' = '` + alice + `'`, roles["web"]},
		{"task cancelled through the web", `kind = 'task.status' AND new_status = 'cancelled'`, roles["web"]},
	} {
		var actors []string
		f.scan(t, `SELECT coalesce(array_agg(DISTINCT actor::text), '{}') FROM kiln.event WHERE `+c.where, nil, &actors)
		if !reflect.DeepEqual(actors, []string{c.actor}) {
			t.Errorf("%s: actors %v; want %s", c.what, actors, c.actor)
		}
	}
}

// checkDaemonLogins checks the connections of each daemon (by its
// application_name) in pg_stat_activity and pg_stat_gssapi.
func checkDaemonLogins(t *testing.T, f *farm, kdc *krbtest.KDC, host string, roles map[string]string) {
	t.Helper()
	for _, p := range admin.Processes {
		type login struct {
			User, Principal string
			GSS             bool
		}
		rows, err := f.db.Pool.Query(context.Background(), `SELECT DISTINCT a.usename::text, coalesce(g.principal, ''), coalesce(g.gss_authenticated, false)
			FROM pg_stat_activity a LEFT JOIN pg_stat_gssapi g ON g.pid = a.pid
			WHERE a.datname = current_database() AND a.application_name = $1`, "kiln-"+p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[login])
		if err != nil {
			t.Fatal(err)
		}
		want := []login{{roles[p], kdc.Principal("kiln-" + p + "/" + host), true}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("kiln-%s's connections: %+v; want %+v", p, got, want)
		}
	}
}

// webCancel logs the person whose ticket cache is cache in to kiln-web at
// web with SPNEGO (a ticket for spn), reads the CSRF token from the job's
// page, and cancels the job with the page's form.
func webCancel(t *testing.T, kdc *krbtest.KDC, cache, spn, web string, job int64) {
	t.Helper()
	cfg, err := config.Load(kdc.Config())
	if err != nil {
		t.Fatal(err)
	}
	cc, err := credentials.LoadCCache(cache)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.NewFromCCache(cc, cfg, client.DisablePAFXFAST(true))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Destroy()
	browser := spnego.NewClient(cl, &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, spn)
	page := fmt.Sprintf("/jobs/%d", job)

	// Without a login, the page offers no action.
	body := get(t, http.DefaultClient, web+page)
	if strings.Contains(body, `name="csrf"`) {
		t.Fatalf("the job page offers actions without a login:\n%s", body)
	}
	resp, err := browser.Get(web + "/login?next=" + url.QueryEscape(page))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != page {
		t.Fatalf("SPNEGO login: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	body = get(t, browser.Client, web+page)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no action form after login:\n%s", body)
	}
	post := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", web+page+"/cancel", strings.NewReader(url.Values{"csrf": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", web)
		resp, err := browser.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// A forged form (no token of the page) is refused; the page's is not.
	if code := post("forged"); code != http.StatusForbidden {
		t.Fatalf("cancel without the page's CSRF token: %d; want 403", code)
	}
	if code := post(m[1]); code != http.StatusSeeOther {
		t.Fatalf("cancel on the web: %d; want 303", code)
	}
}

// get fetches url and returns the body of a 200 answer.
func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", url, resp.StatusCode, b)
	}
	return string(b)
}
