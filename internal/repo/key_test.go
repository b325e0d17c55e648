package repo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Rotating a bucket's key: the new key signs the re-published metadata,
// key.asc carries both keys during the change, and an apt trusting only the
// old key refuses the repository afterwards.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	f.job(t, "devel", debArtifact(t, "hello-kiln", "1.0"), nil)
	f.publish(t)
	_, oldKey := f.get(t, "/repos/devel/key.asc")
	_, before := f.get(t, "/repos/devel/bookworm-amd64/dists/devel/InRelease")

	fpr, err := f.publisher.RotateKey(ctx, "devel")
	must(t, err)
	if res := f.publish(t); len(res) != 1 || res[0].Snapshot != 2 {
		t.Fatalf("re-signing: %+v", res)
	}
	_, after := f.get(t, "/repos/devel/bookworm-amd64/dists/devel/InRelease")
	if bytes.Equal(before, after) {
		t.Fatal("InRelease was not re-signed")
	}
	var active string
	must(t, f.db.Pool.QueryRow(ctx, `SELECT fingerprint FROM kiln.bucket_key WHERE bucket = 'devel' AND active`).Scan(&active))
	if active != fpr {
		t.Fatalf("active key %s, rotated to %s", active, fpr)
	}
	_, both := f.get(t, "/repos/devel/key.asc")
	if strings.Count(string(both), "BEGIN PGP PUBLIC KEY BLOCK") != 2 {
		t.Fatalf("key.asc during the rotation:\n%s", both)
	}
	src := f.web.URL + "/repos/devel/bookworm-amd64"
	if out, err := newApt(t, src, "devel", both).run("update"); err != nil || strings.Contains(out, "W:") {
		t.Fatalf("apt with the served keys: %v\n%s", err, out)
	}
	if out, err := newApt(t, src, "devel", oldKey).run("update"); err == nil && !strings.Contains(out, "W:") && !strings.Contains(out, "E:") {
		t.Fatalf("apt trusting only the retired key accepted the re-signed repository:\n%s", out)
	}
	// The publisher host keeps no secret in the database.
	var leaked bool
	must(t, f.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kiln.bucket_key WHERE public_key LIKE '%PRIVATE KEY%')`).Scan(&leaked))
	if leaked {
		t.Fatal("a secret key is stored in the database")
	}
}
