package split

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/riverjob"
)

// A splitter killed in the middle of a validation leaves its validate River
// job running. So that another splitter takes it over within one janitor
// round rather than after the janitor's validate horizon, every splitter
// holds the session advisory lock of its River client ID for as long as it
// runs (riverjob.HoldClientLock; docs/reliability.md): the janitor takes
// back the running validate River jobs of a splitter whose lock nobody
// holds. The lock costs one idle connection and no queries: the connection
// is watched by waiting on it.

// clientLock holds the lock of River client id on a connection of db's
// own (taken out of the pool), and takes it again on a new one when that
// connection is lost.
type clientLock struct {
	db   *pgxpool.Pool
	id   string
	log  *slog.Logger
	conn *pgx.Conn
	done chan struct{}
}

// lockClient takes the lock of River client id, before the River client
// starts: a River job attempted by id is then always covered by the lock
// while id lives.
func lockClient(ctx context.Context, db *pgxpool.Pool, id string, log *slog.Logger) (*clientLock, error) {
	l := &clientLock{db: db, id: id, log: log, done: make(chan struct{})}
	if err := l.take(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// take takes the lock on a new connection.
func (l *clientLock) take(ctx context.Context) error {
	c, err := l.db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connecting for the River client's lock: %w", err)
	}
	// The lock belongs to the session: the connection never goes back to
	// the pool.
	conn := c.Hijack()
	held, err := riverjob.HoldClientLock(ctx, conn, l.id)
	if err == nil && !held {
		err = fmt.Errorf("another session holds the lock of River client %s", l.id)
	}
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return err
	}
	l.conn = conn
	return nil
}

// keep watches the lock's connection until ctx ends, then closes it (which
// releases the lock). It waits for a notification that never comes, which
// returns only when the connection fails; then it takes the lock again on
// a new connection (after a database restart or failover), retrying with
// a growing pause.
func (l *clientLock) keep(ctx context.Context) {
	defer close(l.done)
	defer func() {
		if l.conn != nil {
			l.conn.Close(context.WithoutCancel(ctx))
		}
	}()
	wait := time.Second
	for {
		if l.conn != nil {
			_, err := l.conn.WaitForNotification(ctx)
			if ctx.Err() != nil {
				return
			}
			l.log.Warn("lost the connection that holds the River client's lock; taking it again", "client", l.id, "err", err)
			l.conn.Close(context.WithoutCancel(ctx))
			l.conn = nil
		}
		err := l.take(ctx)
		if err == nil {
			l.log.Info("holding the River client's lock again", "client", l.id)
			wait = time.Second
			continue
		}
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("taking the River client's lock failed; its validations can be taken over by another splitter meanwhile",
			"client", l.id, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}
