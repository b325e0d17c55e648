package builder

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultListenIdle is how long a builder with no build running keeps
// listening for notifications unless Config.ListenIdle says otherwise.
const DefaultListenIdle = time.Minute

// listenLoop follows NOTIFY kiln_task so a cancelled task's build stops at
// once rather than at the next heartbeat, and NOTIFY kiln_builder so that
// disabling or enabling the builder takes effect at once. It owns the
// builder's session connection, which also holds the name's lock
// (recover.go), and opens it again after errors.
//
// PostgreSQL wakes every listening session of the database at each commit
// that notifies, on any channel (docs/scaling.md, "Notifications wake every
// listener"), so a builder that has built nothing for Config.ListenIdle
// stops listening (UNLISTEN *) and listens again when it takes a task.
// While it does not listen, its heartbeat is what tells it of its row's
// changes, and the loop checks the lock's connection every heartbeat.
func (b *Builder) listenLoop(ctx context.Context) {
	for ctx.Err() == nil {
		err := b.listenRound(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			continue
		}
		// A refusal on a working connection (a LISTEN refused) keeps the
		// session, and with it the name's lock: closing it would free the
		// lock for a while at each try.
		var pgErr *pgconn.PgError
		if b.sess == nil || b.sess.IsClosed() || !errors.As(err, &pgErr) {
			b.closeSession()
		}
		b.log.Warn("listening for task changes failed; trying again", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// listenRound listens on the session connection until no build has run
// for Config.ListenIdle, or, while none has, waits for a build to start
// and checks the lock's connection each heartbeat.
func (b *Builder) listenRound(ctx context.Context) error {
	// A new session takes the lock first; one that could not take it
	// tries again each heartbeat (below, and in listenUntilIdle).
	if b.sess == nil || b.sess.IsClosed() {
		b.keepNameLock(ctx)
	}
	c, err := b.sessionConn(ctx)
	if err != nil {
		return err
	}
	if _, _, idle := b.idleUntil(); idle {
		tick := time.NewTimer(b.cfg.Heartbeat)
		defer tick.Stop()
		select {
		case <-ctx.Done():
		case <-b.runStarted:
		case <-tick.C:
			b.keepNameLock(ctx)
		}
		return nil
	}
	defer b.listening.Store(false)
	if err := b.startListening(ctx, c); err != nil {
		return err
	}
	if err := b.listenUntilIdle(ctx, c); err != nil {
		return err
	}
	if _, err := c.Exec(ctx, "UNLISTEN *"); err != nil {
		return err
	}
	b.log.Debug("no build for a while: stopped listening for notifications", "idle", b.cfg.ListenIdle)
	return nil
}

// startListening LISTENs on c and then checks what it may have missed.
func (b *Builder) startListening(ctx context.Context, c *pgx.Conn) error {
	if _, err := c.Exec(ctx, "LISTEN kiln_task; LISTEN kiln_builder"); err != nil {
		return err
	}
	b.listening.Store(true)
	// The builds listed now were taken before the LISTEN, so their takes'
	// own notifications may never come: none is skipped (onNotify).
	for _, r := range b.snapshot() {
		r.ownSeen.Store(true)
	}
	// Changes missed while not listening are caught by this round.
	if err := b.heartbeat(ctx); err != nil {
		b.log.Warn("heartbeat after listening", "err", err)
	}
	return nil
}

// listenUntilIdle handles the notifications that arrive on c until no build
// has run for Config.ListenIdle. While builds run it waits with no
// deadline; the last one to end wakes it (runsEnded). While another
// session holds the name's lock, it tries to take it each heartbeat.
func (b *Builder) listenUntilIdle(ctx context.Context, c *pgx.Conn) error {
	for {
		until, running, idle := b.idleUntil()
		if idle {
			return nil
		}
		if !b.locked && (running || time.Until(until) > b.cfg.Heartbeat) {
			until, running = time.Now().Add(b.cfg.Heartbeat), false
		}
		var wctx context.Context
		var cancel context.CancelFunc
		if running {
			wctx, cancel = context.WithCancel(ctx)
		} else {
			wctx, cancel = context.WithDeadline(ctx, until)
		}
		woken := make(chan struct{})
		go func() {
			defer close(woken)
			select {
			case <-b.runsEnded:
				cancel()
			case <-wctx.Done():
			}
		}()
		n, err := c.WaitForNotification(wctx)
		cancel()
		// Waiting for the waker keeps it from taking a later wake-up
		// meant for the next round.
		<-woken
		if err != nil {
			if wctx.Err() != nil && ctx.Err() == nil && !c.IsClosed() {
				if !b.locked {
					if _, err := b.tryNameLock(ctx); err != nil {
						return err
					}
				}
				continue // time to look again
			}
			return err
		}
		b.onNotify(ctx, n.Channel, n.Payload, n.PID)
	}
}

// idleUntil says whether builds run, whether none has for
// Config.ListenIdle, and if neither, when that time comes. It first
// forgets earlier wake-ups (runStarted, runsEnded): a change after it
// sends a new one.
func (b *Builder) idleUntil() (until time.Time, running, idle bool) {
	for _, ch := range []chan struct{}{b.runStarted, b.runsEnded} {
		select {
		case <-ch:
		default:
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.running) > 0 {
		return time.Time{}, true, false
	}
	until = b.idleSince.Add(b.cfg.ListenIdle)
	return until, false, !time.Now().Before(until)
}

// addRun lists a build that began and wakes listen should it have stopped
// listening.
func (b *Builder) addRun(r *attemptRun) {
	b.mu.Lock()
	b.running[r.task] = r
	b.mu.Unlock()
	select {
	case b.runStarted <- struct{}{}:
	default:
	}
}

// removeRun takes a build off the list; the last one to go starts the idle
// time after which the builder stops listening, and wakes listen to count
// it.
func (b *Builder) removeRun(task int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.running, task)
	if len(b.running) == 0 {
		b.idleSince = time.Now()
		select {
		case b.runsEnded <- struct{}{}:
		default:
		}
	}
}

// onNotify handles one notification from backend pid. A payload is only a
// hint (anyone may NOTIFY kiln_task or kiln_builder with anything): what it
// names is read again from the database, and only the database's answer
// changes anything.
func (b *Builder) onNotify(ctx context.Context, channel, payload string, pid uint32) {
	var msg struct {
		Task    int64  `json:"task"`
		Builder string `json:"builder"`
	}
	if json.Unmarshal([]byte(payload), &msg) != nil {
		return
	}
	if channel == "kiln_builder" {
		if msg.Builder == b.cfg.Name {
			if err := b.refreshEnabled(ctx); err != nil {
				b.log.Warn("reading the builder's row after a change", "err", err)
			}
		}
		return
	}
	b.mu.Lock()
	r := b.running[msg.Task]
	b.mu.Unlock()
	// A run whose build is over is being finished (or given back): that
	// statement learns whether the attempt is still held, so a check now
	// (for the finish's own NOTIFY, say, which may arrive before the run
	// is unlisted) would only cost a round trip.
	if r == nil || r.ending.Load() {
		return
	}
	// The first notification from the backend that took the attempt is the
	// take's own: notifications arrive in commit order, and anything that
	// ends the attempt commits after the take, in another session (the
	// janitor, a person, kiln-web). Should the take's own have come before
	// the run was listed, this skips nothing of anyone else's unless that
	// session's backend reused the pid; the heartbeat loop still checks
	// within Heartbeat.
	if pid == r.takenBy && r.ownSeen.CompareAndSwap(false, true) {
		return
	}
	// The heartbeat asks the database whether the attempt is still held;
	// only a refusal stops the build.
	if err := b.heartbeatTasks(ctx, []*attemptRun{r}); err != nil {
		b.log.Warn("checking a changed task", "task", msg.Task, "err", err)
	}
}
