package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// standbyHas waits until the standby has replayed the primary's writes so
// far (the test database, its roles, the rows just written).
func (f *farm) standbyHas(t testing.TB) {
	t.Helper()
	var lsn string
	f.scan(t, `SELECT pg_current_wal_insert_lsn()::text`, nil, &lsn)
	standby := connectStandby(t)
	waitFor(t, "the standby to replay "+lsn, func() bool {
		var ok bool
		err := standby.QueryRow(context.Background(), `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, lsn).Scan(&ok)
		return err == nil && ok
	})
}

// connectStandby connects to the standby as its superuser.
func connectStandby(t testing.TB) *pgx.Conn {
	t.Helper()
	url := os.Getenv(pgtest.EnvStandbyURL)
	if url == "" {
		t.Fatalf("%s is not set: run the tests under .ci/with-cluster, which starts a standby", pgtest.EnvStandbyURL)
	}
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// jobIDs runs kiln jobs --json with env and the flags given and returns the
// ids it lists.
func jobIDs(t testing.TB, env []string, args ...string) map[int64]bool {
	t.Helper()
	out, code := kiln(t, env, append(args, "jobs", "--json")...)
	if code != 0 {
		t.Fatalf("kiln jobs: exit %d\n%s", code, out)
	}
	var list struct {
		Jobs []struct {
			ID int64 `json:"id"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kiln jobs --json: %v\n%s", err, out)
	}
	ids := map[int64]bool{}
	for _, j := range list.Jobs {
		ids[j.ID] = true
	}
	return ids
}

// A person's submit is visible at once in their own kiln show and kiln
// jobs through the read-db path, even while the standby has not replayed
// it (replay paused): the kiln command kept the primary's WAL position
// after the submit, and the read went to the primary when the standby did
// not catch up. Someone else's kiln jobs, with no write of their own,
// reads the standby and so does not see the job until replay goes on.
//
// Not parallel: it pauses the standby's replay, which the parallel tests
// of this package do not use while it runs.
func TestOwnSubmitVisibleThroughReplica(t *testing.T) {
	f := newFarm(t)
	f.standbyHas(t)
	standby := connectStandby(t)
	mine := []string{"XDG_STATE_HOME=" + t.TempDir()}
	other := []string{"XDG_STATE_HOME=" + t.TempDir()}
	as := append(f.login(f.person), "--read-db", f.db.ViaAs(t, pgtest.EnvStandbyURL, f.person))

	if _, err := standby.Exec(context.Background(), `SELECT pg_wal_replay_pause()`); err != nil {
		t.Fatal(err)
	}
	resume := func() { _, _ = standby.Exec(context.Background(), `SELECT pg_wal_replay_resume()`) }
	t.Cleanup(resume)

	out, code := kiln(t, mine, append(as, "submit", "--bucket", "devel", "--platform", platform, quick(t, "kiln-replica"))...)
	if code != 0 {
		t.Fatalf("kiln submit: exit %d\n%s", code, out)
	}
	job := submittedJob(t, out)
	out, code = kiln(t, mine, append(as, "show", strconv.FormatInt(job, 10))...)
	if code != 0 || !strings.Contains(out, "kiln-replica") {
		t.Fatalf("kiln show %d right after the submit: exit %d\n%s", job, code, out)
	}
	if !jobIDs(t, mine, as...)[job] {
		t.Fatalf("kiln jobs right after the submit does not list job %d", job)
	}
	if jobIDs(t, other, as...)[job] {
		t.Fatalf("job %d listed from a standby whose replay is paused: the read did not go to the standby", job)
	}

	resume()
	waitFor(t, "the standby to show the job to everyone", func() bool { return jobIDs(t, other, as...)[job] })
}

// freezer is a TCP proxy to a PostgreSQL server that the test can freeze:
// while frozen it passes no byte either way, as a primary that is too busy
// to answer.
type freezer struct {
	ln     net.Listener
	target string
	mu     sync.RWMutex
}

func newFreezer(t testing.TB, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezer{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *freezer) serve(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{}, 2)
	go func() { p.copy(s, c); done <- struct{}{} }()
	go func() { p.copy(c, s); done <- struct{}{} }()
	<-done
}

func (p *freezer) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.RLock()
			_, werr := dst.Write(buf[:n])
			p.mu.RUnlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// A kiln-web with --read-db serves its pages and JSON API from the standby
// while its primary answers nothing at all (its connection frozen by a
// proxy).
func TestReplicaWebServesWhilePrimaryBusy(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	job, _ := f.submit(t, quick(t, "kiln-from-replica"))
	role := f.role(t, "kiln_web")
	f.standbyHas(t)
	primary, _ := pgtest.URLHost(t, f.db.URLAs(role))
	proxy := newFreezer(t, primary)
	viaProxy := strings.Replace(f.db.URLAs(role), primary, proxy.ln.Addr().String(), 1)
	_, base := f.startWeb(t, role, "--db", viaProxy, "--read-db", f.db.ViaAs(t, pgtest.EnvStandbyURL, role))

	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	// The primary, through the proxy, is indeed not answering.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c, err := pgx.Connect(ctx, viaProxy); err == nil {
		c.Close(context.Background())
		t.Fatal("the frozen proxy let a connection through")
	}

	for _, path := range []string{fmt.Sprintf("/jobs/%d", job), "/jobs", fmt.Sprintf("/api/jobs/%d", job), "/queue"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s while the primary is frozen: %s\n%s", path, resp.Status, body)
		}
		if strings.HasPrefix(path, "/jobs") && !strings.Contains(string(body), "kiln-from-replica") {
			t.Fatalf("GET %s does not show the job's package:\n%s", path, body)
		}
	}
}
