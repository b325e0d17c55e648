package web

import (
	"context"
	"net/http"
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
	if _, err := f.DB.Pool.Exec(ctx, `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('testing', $1)`, f.Alice); err != nil {
		t.Fatal(err)
	}
	if code, loc := alice.act(t, path); code != http.StatusSeeOther || loc != "/jobs/"+itoa(job) {
		t.Fatalf("promotion: %d %s", code, loc)
	}
	var by string
	if err := f.DB.Pool.QueryRow(ctx, `SELECT requested_by FROM kiln.publication_request WHERE kind = 'promote' AND bucket = 'testing' AND job_id = $1`, job).Scan(&by); err != nil || by != f.Alice {
		t.Fatalf("request: %v, requested by %q", err, by)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
