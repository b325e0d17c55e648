package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/split"
	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// TestOnce submits jobs as a submitter's role and runs the splitter the way
// cron would (--once), as a login role that is a member of kiln_splitter.
func TestOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	alice, splitter := "alice_"+db.Name, "splitter_"+db.Name
	if _, err := db.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN IN ROLE kiln_submitter; CREATE ROLE %s LOGIN IN ROLE kiln_splitter;
		INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES
			('el9-x86_64', 'x86_64', 'rpm', 'rpmbuild'), ('el9-aarch64', 'aarch64', 'rpm', 'rpmbuild');
		INSERT INTO kiln.bucket (name, open) VALUES ('devel', true)`, alice, splitter)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Pool.Exec(context.Background(), fmt.Sprintf("DROP ROLE %s; DROP ROLE %s", alice, splitter)) })
	pool, err := pgxpool.New(ctx, db.URLAs(alice))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c, err := submit.New(pool)
	if err != nil {
		t.Fatal(err)
	}
	good := testpkg.SRPM(t, testpkg.Spec{Name: "hello"})
	var ids []int64
	for i, req := range []submit.Request{
		{Bucket: "devel", Files: []string{good}},
		{Bucket: "devel", Files: []string{good}, Platforms: []string{"el9-aarch64"}},
		{Bucket: "nope", Files: []string{good}},
	} {
		req.Key = fmt.Sprint("k", i)
		res, err := c.Submit(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.JobID)
	}

	log := slog.New(slog.DiscardHandler)
	if err := split.Run(ctx, split.Config{DB: dbconn.Config{URL: db.URLAs(splitter)}, Workers: 2, MaxFileSize: 1 << 20, Once: true, Logger: log}); err != nil {
		t.Fatalf("kiln-splitter --once: %v", err)
	}
	var got []string
	rows, _ := db.Pool.Query(ctx, `SELECT j.status || ' ' || coalesce(j.reason, '') || ' ' || count(t.id) || ' ' || count(t.river_job_id)
		FROM kiln.job j LEFT JOIN kiln.task t ON t.job_id = j.id WHERE j.id = ANY($1) GROUP BY j.id ORDER BY j.id`, ids)
	for rows.Next() {
		var s string
		rows.Scan(&s)
		got = append(got, s)
	}
	want := []string{"queued  2 2", "queued  1 1", "invalid unknown bucket nope 0 0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after --once: %q, want %q", got, want)
	}
	var waiting int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM river.river_job WHERE queue = 'incoming' AND state <> 'completed'`).Scan(&waiting); err != nil || waiting != 0 {
		t.Fatalf("%d validate River jobs not completed (%v)", waiting, err)
	}
}

// TestMaxFileSize: --max-file-size is a positive byte count
// (format.ParseSize), refused before the splitter connects.
func TestMaxFileSize(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "0", "-1", "G", "1.5G"} {
		err := app().Run([]string{"kiln-splitter", "--db", "postgres://nowhere.invalid/x", "--max-file-size", in})
		if err == nil || !strings.HasPrefix(err.Error(), "--max-file-size: ") {
			t.Errorf("--max-file-size %q: %v", in, err)
		}
	}
}
