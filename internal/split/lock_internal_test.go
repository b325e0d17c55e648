package split

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/riverjob"
)

// lockHolder returns the pid of the session holding the lock of River
// client id, or 0.
func lockHolder(t *testing.T, db *pgtest.DB, id string) int {
	t.Helper()
	var pid int
	err := db.Pool.QueryRow(context.Background(), `SELECT coalesce(max(pid), 0) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND objsubid = 1 AND ((classid::int8 << 32) | objid::int8) = hashtextextended('kiln-river-client:' || $1, 0)`, id).Scan(&pid)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// The splitter's client lock is exclusive, is taken again on a new
// connection when its connection is lost (as in a database restart or a
// failover), and is released when the splitter stops.
func TestClientLockHeldAcrossLostConnections(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	role := "splitter_lock_" + db.Name
	if _, err := db.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN IN ROLE kiln_splitter`, role)); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, db.URLAs(role))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		_, _ = db.Pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
	})
	id := riverjob.NewSplitterID()
	lock, err := lockClient(ctx, pool, id, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	go lock.keep(lctx)
	first := lockHolder(t, db, id)
	if first == 0 {
		t.Fatal("the lock is not held")
	}
	if _, err := lockClient(ctx, pool, id, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "another session holds") {
		t.Fatalf("a second lock of the same client: %v", err)
	}

	if _, err := db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, first); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the lock to be taken again", func() bool {
		pid := lockHolder(t, db, id)
		return pid != 0 && pid != first
	})

	stop()
	<-lock.done
	waitUntil(t, "the lock to be released", func() bool { return lockHolder(t, db, id) == 0 })
}
