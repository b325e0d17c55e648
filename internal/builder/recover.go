package builder

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/task"
)

// A builder that starts may find tasks still building in its name: a
// previous run of it crashed (kill -9, OOM, power) in the middle of their
// builds. Those builds are certainly dead, provided no other process of the
// same name runs. Rather than leave them until the janitor's horizon has
// passed, the builder gives them back at once, exactly as the janitor would
// (the attempt closed as lost, counted in lost_count, the task pending again
// or ended as lost past MaxLost, its River job available again at once).
//
// "No other process of the same name" is made sure by a session advisory
// lock on the builder's name, held on the builder's session connection
// (which also carries its LISTEN) for as long as the daemon runs: a crashed
// run's connection closes with it, and the server drops its lock. A
// builder that cannot get the lock (a second daemon with the same name, or
// a previous run that is paused rather than dead, or whose connection the
// server has not yet seen close) leaves such tasks to the janitor.

// nameLockSQL takes the advisory lock of a builder's name.
const nameLockSQL = "SELECT pg_try_advisory_lock(hashtextextended('kiln-builder:' || $1, 0))"

// sessionCheckTimeout bounds keepNameLock's statements.
const sessionCheckTimeout = 10 * time.Second

// nameLockWait is how long a starting builder waits for its name's lock, so
// that the server can notice that the previous run's connection closed.
const nameLockWait = 10 * time.Second

// lockName takes the advisory lock of the builder's name, waiting up to
// nameLockWait, and reports whether it holds it.
func (b *Builder) lockName(ctx context.Context) bool {
	deadline := time.Now().Add(nameLockWait)
	for {
		held, err := b.tryNameLock(ctx)
		if held {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			b.log.Warn("another session holds this builder name's lock (another kiln-builder with this name, or a previous run that is not dead); tasks it left building are left to the janitor",
				"name", b.cfg.Name, "err", err)
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// tryNameLock tries once to take the lock, on the builder's session
// connection (opened first when there is none), and says whether it holds
// it. The connection is kept either way: it also carries the LISTEN
// (listen.go).
func (b *Builder) tryNameLock(ctx context.Context) (bool, error) {
	c, err := b.sessionConn(ctx)
	if err != nil {
		return false, err
	}
	var held bool
	if err := c.QueryRow(ctx, nameLockSQL, b.cfg.Name).Scan(&held); err != nil {
		b.closeSession()
		return false, err
	}
	b.locked = held
	return held, nil
}

// keepNameLock checks the session connection while it holds the lock, and
// tries to take the lock again when the connection was lost (a database
// restart) or another session held it. Only the listen loop calls it once
// Run started.
func (b *Builder) keepNameLock(ctx context.Context) {
	// A connection that went half-open answers never: the check gives up
	// in time for the loop to see a build start.
	ctx, cancel := context.WithTimeout(ctx, sessionCheckTimeout)
	defer cancel()
	if b.sess != nil && b.locked {
		if _, err := b.sess.Exec(ctx, "SELECT 1"); err == nil {
			return
		}
		b.closeSession()
	}
	held, err := b.tryNameLock(ctx)
	if !held && err == nil && !b.nameLockWarned {
		b.log.Warn("another session holds this builder name's lock: is a second kiln-builder running with this name?", "name", b.cfg.Name)
		b.nameLockWarned = true
	}
}

// sessionConn is the builder's session connection, opened from the session
// pool when there is none. It never goes back to the pool: its lock and
// its LISTEN belong to the session.
func (b *Builder) sessionConn(ctx context.Context) (*pgx.Conn, error) {
	if b.sess != nil && !b.sess.IsClosed() {
		return b.sess, nil
	}
	b.closeSession()
	conn, err := b.session().Acquire(ctx)
	if err != nil {
		return nil, err
	}
	b.sess = conn.Hijack()
	return b.sess, nil
}

// closeSession closes the session connection, which releases the lock and
// ends its LISTEN.
func (b *Builder) closeSession() {
	if b.sess != nil {
		b.sess.Close(context.Background())
		b.sess = nil
	}
	b.locked = false
}

// recoverTasks gives back the tasks a previous run of this builder left
// building (task.Recover), each in its own transaction fenced by its
// attempt. It is called only while holding the name's lock, before the
// builder takes any task.
func (b *Builder) recoverTasks(ctx context.Context) error {
	left, err := task.LeftBuilding(ctx, b.db, b.cfg.Name)
	if err != nil {
		return err
	}
	for _, a := range left {
		var loss task.Loss
		err := retry(ctx, b.log, "giving back a task left by a previous run", func(ctx context.Context) error {
			loss, err = task.Recover(ctx, b.db, a)
			return err
		})
		switch {
		case errors.Is(err, errStale): // the janitor or a cancel was quicker
		case err != nil:
			return err
		default:
			b.log.Info("gave back a task left building by a previous run", "task", a.Task, "attempt", a.Number,
				"status", loss.Status, "lost_count", loss.LostCount, "river_job", loss.RiverJob)
		}
	}
	return nil
}
