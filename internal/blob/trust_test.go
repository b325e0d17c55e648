package blob_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// as connects to the test database as role.
func as(t *testing.T, db *pgtest.DB, role string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), db.URLAs(role))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// inTx runs fn in a transaction of pool and commits it.
func inTx(t *testing.T, pool *pgxpool.Pool, fn func(pgx.Tx) error) {
	t.Helper()
	if err := pgx.BeginFunc(t.Context(), pool, fn); err != nil {
		t.Fatal(err)
	}
}

// submit stores data as a blob and a one-package job in bucket, all as the
// pool's role in one transaction, and returns the job and the blob.
func submit(t *testing.T, pool *pgxpool.Pool, bucket string, data []byte) (int64, blob.Info) {
	t.Helper()
	ctx := t.Context()
	var id int64
	var info blob.Info
	inTx(t, pool, func(tx pgx.Tx) error {
		var err error
		if info, err = blob.Put(ctx, tx, bytes.NewReader(data), false); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `INSERT INTO kiln.job (bucket, platforms, submission_key) VALUES ($1, '{all}', md5(random()::text))
			RETURNING id`, bucket).Scan(&id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size)
			VALUES ($1, 0, 'a.src.rpm', 'srpm', $2, $3)`, id, info.Sum[:], info.Size)
		return err
	})
	return id, info
}

func wantDenied(t *testing.T, err error, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("%s: want permission denied, got %v", what, err)
	}
}

// TestPlantedBlobIsNeverTrusted: someone who stores garbage under the
// SHA-256 of a file before its owner submits it spoils nothing: the owner's
// upload is staged under a key of its own and verifies.
func TestPlantedBlobIsNeverTrusted(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)
	farmtest.Bucket(t, db.Pool, "devel")
	mallory := as(t, db, farmtest.Person(t, db, "mallory", "kiln_submitter"))
	alice := as(t, db, farmtest.Person(t, db, "alice", "kiln_submitter"))
	splitter := as(t, db, farmtest.Person(t, db, "splitter", "kiln_splitter"))

	data := bytes.Repeat([]byte("the real package "), blob.ChunkSize/8)
	digest := sha256.Sum256(data)
	// Mallory plants garbage under the digest and uses it in a job of hers,
	// so that it is visible to everyone.
	inTx(t, mallory, func(tx pgx.Tx) error {
		// One chunk of the declared size: a person's chunks may not reach
		// past the size the blob declares (schema/0018_quotas.sql).
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES ($1, $2, $3)`,
			digest[:], len(data), len(data)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.blob_chunk (sha256, seq, data) VALUES ($1, 0, $2)`,
			digest[:], bytes.Repeat([]byte("x"), len(data))); err != nil {
			return err
		}
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO kiln.job (bucket, submission_key) VALUES ('devel', 'planted') RETURNING id`).Scan(&id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size)
			VALUES ($1, 0, 'a.src.rpm', 'srpm', $2, $3)`, id, digest[:], len(data))
		return err
	})

	_, info := submit(t, alice, "devel", data)
	if !info.New || !info.Staged() || info.Digest != digest || info.Sum == digest {
		t.Fatalf("alice's upload over a planted blob: %+v; want a new staged blob", info)
	}
	if err := blob.Verify(ctx, splitter, info.Sum); err != nil {
		t.Fatalf("verifying alice's staged blob: %v", err)
	}
	var out bytes.Buffer
	if _, err := blob.WriteTo(ctx, alice, info.Sum, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("alice reading her blob back: %v (equal %v)", err, bytes.Equal(out.Bytes(), data))
	}
	if err := blob.Verify(ctx, splitter, digest); !errors.Is(err, blob.ErrCorrupt) {
		t.Fatalf("the planted blob verified: %v", err)
	}

	// Once verified, the content is reused by others, not stored again.
	bob := as(t, db, farmtest.Person(t, db, "bob", "kiln_submitter"))
	_, again := submit(t, bob, "devel", data)
	if again.New || again.Sum != info.Sum {
		t.Fatalf("bob's upload of verified content: %+v; want alice's blob %s reused", again, info.Sum)
	}
	// Verified bytes are preferred to anyone's unverified ones, even the
	// uploader's own.
	_, hers := submit(t, mallory, "devel", data)
	if hers.New || hers.Sum != info.Sum {
		t.Fatalf("mallory's second upload: %+v; want the verified blob %s reused", hers, info.Sum)
	}
}

// TestChunksOnlyWithTheirBlob: nobody, not even the blob's creator or a
// builder, adds chunks to a blob stored by another transaction.
func TestChunksOnlyWithTheirBlob(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)
	farmtest.Bucket(t, db.Pool, "devel")
	aliceName := farmtest.Person(t, db, "alice", "kiln_submitter")
	alice := as(t, db, aliceName)
	mallory := as(t, db, farmtest.Person(t, db, "mallory", "kiln_submitter"))
	builder := as(t, db, farmtest.Person(t, db, "builder", "kiln_builder"))

	data := []byte("a small package")
	_, info := submit(t, alice, "devel", data)
	for name, pool := range map[string]*pgxpool.Pool{"another person": mallory, "its creator": alice, "a builder": builder} {
		_, err := pool.Exec(ctx, `INSERT INTO kiln.blob_chunk (sha256, seq, data) VALUES ($1, 1, 'appended')`, info.Sum[:])
		wantDenied(t, err, name+" appending a chunk")
	}
	// A builder's verified artifact is closed the same way.
	var art blob.Info
	inTx(t, builder, func(tx pgx.Tx) error {
		var err error
		art, err = blob.Put(ctx, tx, strings.NewReader("built"), true)
		return err
	})
	_, err := mallory.Exec(ctx, `INSERT INTO kiln.blob_chunk (sha256, seq, data) VALUES ($1, 1, 'appended')`, art.Sum[:])
	wantDenied(t, err, "appending to a verified blob")
	var out bytes.Buffer
	if _, err := blob.WriteTo(ctx, db.Pool, info.Sum, &out); err != nil || out.String() != string(data) {
		t.Fatalf("alice's blob after the attempts: %q, %v", out.String(), err)
	}
	// Nor does a person mark anything verified.
	_, err = mallory.Exec(ctx, `UPDATE kiln.blob SET verified_at = now() WHERE sha256 = $1`, info.Sum[:])
	wantDenied(t, err, "a person marking a blob verified")
	if n, err := builder.Exec(ctx, `UPDATE kiln.blob SET verified_at = now()`); err == nil {
		t.Fatalf("a builder marked %d stored blobs verified", n.RowsAffected())
	}
}

// TestPrivateBytesNeedReadAccess: the bytes of a job in a private bucket are
// readable only by who may read the job; knowing their SHA-256 is no key.
func TestPrivateBytesNeedReadAccess(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)
	farmtest.Bucket(t, db.Pool, "devel")
	if _, err := db.Pool.Exec(ctx, `INSERT INTO kiln.bucket (name, private) VALUES ('secret', true)`); err != nil {
		t.Fatal(err)
	}
	carolName, erinName := farmtest.Person(t, db, "carol", "kiln_submitter"), farmtest.Person(t, db, "erin", "kiln_submitter")
	if _, err := db.Pool.Exec(ctx, `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('secret', $1), ('secret', $2)`, carolName, erinName); err != nil {
		t.Fatal(err)
	}
	carol, erin := as(t, db, carolName), as(t, db, erinName)
	dave := as(t, db, farmtest.Person(t, db, "dave", "kiln_submitter"))
	web := as(t, db, farmtest.Person(t, db, "web", "kiln_web"))
	builder := as(t, db, farmtest.Person(t, db, "builder", "kiln_builder"))

	secret := []byte("embargoed source")
	_, info := submit(t, carol, "secret", secret)
	readable := func(pool *pgxpool.Pool) bool {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM kiln.blob_chunk WHERE sha256 = $1`, info.Sum[:]).Scan(&n); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		_, err := blob.WriteTo(ctx, pool, info.Sum, &out)
		if (n > 0) != (err == nil) {
			t.Fatalf("chunks visible: %d, but WriteTo: %v", n, err)
		}
		return n > 0 && out.String() == string(secret)
	}
	for _, c := range []struct {
		name string
		pool *pgxpool.Pool
		want bool
	}{{"carol", carol, true}, {"erin (grantee)", erin, true}, {"a builder", builder, true}, {"dave", dave, false}, {"the web", web, false}} {
		if got := readable(c.pool); got != c.want {
			t.Errorf("%s reads the private bytes: %v, want %v", c.name, got, c.want)
		}
	}

	// Dave, who knows the SHA-256, cannot make the blob his by naming it in
	// a job of his own.
	var job int64
	if err := dave.QueryRow(ctx, `INSERT INTO kiln.job (bucket, submission_key) VALUES ('devel', 'k') RETURNING id`).Scan(&job); err != nil {
		t.Fatal(err)
	}
	_, err := dave.Exec(ctx, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size) VALUES ($1, 0, 'a.src.rpm', 'srpm', $2, $3)`,
		job, info.Sum[:], info.Size)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, "row-level security") {
		t.Fatalf("dave naming the private blob in his package: %v", err)
	}
	if readable(dave) {
		t.Fatal("dave reads the private bytes after trying")
	}
	// Having the bytes himself, he submits them: his own copy, staged.
	_, his := submit(t, dave, "devel", secret)
	if !his.New || !his.Staged() {
		t.Fatalf("dave's upload of content he may not read: %+v; want his own staged copy", his)
	}
}
