package web

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// Promoting from the web: only a logged-in person with a grant on the
// target bucket, through a real form post (Origin and CSRF token).
func TestPromoteFromTheWeb(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.Realm = "KILN.TEST" })
	f := b.f
	ctx := context.Background()
	job := f.Jobs["succeeded"]
	farmtest.Bucket(t, f.DB.Pool, "testing")
	// The job's package as its bucket serves it (the publisher's work,
	// which internal/repo tests for real).
	_, err := f.DB.Pool.Exec(ctx, `
		INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES (sha256('promoted'), 8, 262144);
		INSERT INTO kiln.binary_package (sha256, format, name, version, arch, source) VALUES (sha256('promoted'), 'deb', 'p', '1', 'amd64', 'p');
		INSERT INTO kiln.snapshot (bucket, seq) SELECT bucket, 1 FROM kiln.job WHERE id = `+itoa(job)+`;
		INSERT INTO kiln.repository_file (bucket, platform, path, from_seq, blob_sha256, size, package, job_id)
			SELECT bucket, 'bookworm-amd64', 'pool/main/p/p/p_1_amd64.deb', 1, sha256('promoted'), 8, sha256('promoted'), id FROM kiln.job WHERE id = `+itoa(job))
	if err != nil {
		t.Fatal(err)
	}
	path := "/jobs/" + itoa(job) + "/promote?to=testing"

	alice := b.browser(t, f.Alice)
	if code, body := alice.act(t, path); code != http.StatusForbidden || !strings.Contains(body, "grant") {
		t.Fatalf("promotion without a grant: %d %.200s", code, body)
	}
	if code, _ := b.browser(t, "").act(t, path); code == http.StatusSeeOther {
		t.Fatal("an anonymous visitor promoted")
	}
	if code, _ := alice.post(t, path, "https://evil.example", alice.csrf); code == http.StatusSeeOther {
		t.Fatal("a cross-site form promoted")
	}
	if code, _ := alice.post(t, path, b.ts.URL, ""); code == http.StatusSeeOther {
		t.Fatal("a form without the CSRF token promoted")
	}
	if _, err := f.DB.Pool.Exec(ctx, `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('testing', $1)`, f.Alice); err != nil {
		t.Fatal(err)
	}
	if code, _ := alice.post(t, path, b.ts.URL, ""); code == http.StatusSeeOther {
		t.Fatal("a form without the CSRF token promoted for a person with the grant")
	}
	// The job page's own promote form, filled in and sent as a browser
	// sends it (its fields, the page's origin).
	page := alice.page(t, "/jobs/"+itoa(job))
	form := regexp.MustCompile(`<form method="post" action="(/jobs/` + itoa(job) + `/promote)"[^>]*><input type="hidden" name="csrf" value="([^"]+)"><label>into bucket <input name="to"`).FindStringSubmatch(page)
	if form == nil {
		t.Fatalf("the job page has no promote form:\n%s", page)
	}
	if code, loc := alice.form(t, form[1], url.Values{"csrf": {form[2]}, "to": {"testing"}}); code != http.StatusSeeOther || loc != "/jobs/"+itoa(job) {
		t.Fatalf("promotion: %d %s", code, loc)
	}
	var by string
	if err := f.DB.Pool.QueryRow(ctx, `SELECT requested_by FROM kiln.publication_request WHERE kind = 'promote' AND bucket = 'testing' AND job_id = $1`, job).Scan(&by); err != nil || by != f.Alice {
		t.Fatalf("request: %v, requested by %q", err, by)
	}
}

// page is the body of a GET of path with the browser's cookies.
func (br *browser) page(t *testing.T, path string) string {
	t.Helper()
	resp, err := br.c.Get(br.b.ts.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", path, resp.StatusCode, body)
	}
	return string(body)
}

// form posts fields to path from the site's own origin and returns the
// status and the redirect's target.
func (br *browser) form(t *testing.T, path string, fields url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", br.b.ts.URL+path, strings.NewReader(fields.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", br.b.ts.URL)
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

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
