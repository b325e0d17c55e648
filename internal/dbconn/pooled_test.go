package dbconn_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// A pool through the transaction pooler pings a connection it hands out
// only after a minute idle (not pgxpool's second, a ping of nearly every
// poll of an idle builder), and its connections still work after idling
// past a second; a direct pool keeps pgxpool's default.
func TestPooledConnectionsArePingedOnlyAfterAMinuteIdle(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	pooled, err := dbconn.Open(ctx, dbconn.Config{URL: db.ViaAs(t, pgtest.EnvPgBouncerURL, "postgres"), Pooled: true, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer pooled.Close()
	ping := pooled.Config().ShouldPing
	if ping == nil {
		t.Fatal("a pooled pool keeps pgxpool's default ShouldPing")
	}
	for idle, want := range map[time.Duration]bool{2 * time.Second: false, 59 * time.Second: false, 61 * time.Second: true} {
		if got := ping(ctx, pgxpool.ShouldPingParams{IdleDuration: idle}); got != want {
			t.Errorf("pooled: ping after %v idle: %v, want %v", idle, got, want)
		}
	}
	time.Sleep(1200 * time.Millisecond)
	var one int
	if err := pooled.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("pooled connection after 1.2 s idle: %d, %v", one, err)
	}

	direct, err := dbconn.Open(ctx, dbconn.Config{URL: db.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if direct.Config().ShouldPing != nil {
		t.Error("a direct pool does not keep pgxpool's default ShouldPing")
	}
}
