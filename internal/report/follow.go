package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrConnectionLost is wrapped by the error of FollowJob and FollowLog when
// the database connection was lost and could not be made again in time.
var ErrConnectionLost = errors.New("lost the database connection")

// Reconnect says how a follower (FollowJob, FollowLog) behaves when its
// connection is lost. Zero fields mean the defaults.
type Reconnect struct {
	// Lost is called when the connection is lost, before reconnecting.
	Lost func(err error)
	// GiveUpAfter is how long reconnecting is tried before the follower
	// fails with ErrConnectionLost (5 minutes when 0).
	GiveUpAfter time.Duration
}

// Follow says how FollowJob reports what it sees. Zero fields do nothing.
type Follow struct {
	// Seen is called with the job as first read and after every change
	// (and again after a reconnect, changed or not); an error ends
	// FollowJob with that error.
	Seen func(*Job) error
	Reconnect
}

// FollowJob follows job id until it is final and returns it as it ended.
//
// It LISTENs on kiln_job and kiln_task (which the schema's triggers notify
// on every change of a job and its tasks) on a connection of its own,
// taken from db, and reads the job only then, so no change between the
// read and the first notification is missed. After every notification
// about the job it reads the job again in one read-only repeatable-read
// snapshot, so the job's status and its tasks' agree even while a task
// finishes. There is no polling: PostgreSQL does not drop notifications for
// a listening session (a full queue makes NOTIFY fail instead), so only a
// lost connection loses them. Then FollowJob reconnects, with a growing
// pause, and reads the job again.
//
// It returns nil and ctx's error when ctx ends, the error of f.Seen, or an
// error reading the job (one wrapping ErrNotFound when it does not exist).
func FollowJob(ctx context.Context, db *pgxpool.Pool, id int64, f Follow) (*Job, error) {
	var last *Job
	err := followListening(ctx, db, f.Reconnect, fmt.Sprintf("following job %d", id), []string{ChannelJob, ChannelTask},
		func(conn *pgx.Conn) error {
			for {
				j, err := snapshotJob(ctx, conn, id)
				if err != nil {
					return err
				}
				last = j
				if f.Seen != nil {
					if err := f.Seen(j); err != nil {
						return err
					}
				}
				if j.Status.Final() {
					return nil
				}
				if _, err := waitFor(ctx, conn, func(n notice) bool { return n.Job == id }); err != nil {
					return fmt.Errorf("waiting for changes of job %d: %w", id, err)
				}
			}
		})
	if err != nil {
		return nil, err
	}
	return last, nil
}

// LogFollow says how FollowLog reports what it sees. Zero fields do nothing.
type LogFollow struct {
	// Attempt is called when FollowLog starts on the log of an attempt
	// (the task's current one when it starts, then every newer one), with
	// the task as read then; an error ends FollowLog with that error.
	Attempt func(*Task) error
	// Chunks is called with the log batches of the attempt followed, each
	// batch once and in order, also across a reconnect; an error ends
	// FollowLog with that error.
	Chunks func([]LogChunk) error
	// Renew is how often the watch of the log is renewed (WatchRenew when
	// 0; at most WatchRenew works, since a watch lasts a minute).
	Renew time.Duration
	Reconnect
}

// FollowLog follows the build log of task id until the task is final and
// returns the task as it ended.
//
// It LISTENs on kiln_log and kiln_task, watches the task's log (WatchLogs,
// renewed every WatchRenew), then reads the task and the log batches after
// the last one it passed to f.Chunks; a notification about the task, and
// each renewal, makes it read again. When the janitor requeues the task, it
// moves on to the newer attempt's log once it has passed on everything of
// the older one. A lost connection is handled as FollowJob does, and after
// the reconnect it goes on from the last batch passed on.
//
// It returns nil and ctx's error when ctx ends, the error of a callback, or
// an error reading the task or its log (one wrapping ErrNotFound when the task
// does not exist).
func FollowLog(ctx context.Context, db *pgxpool.Pool, id int64, f LogFollow) (*Task, error) {
	var t *Task
	attempt, last := 0, -1 // the attempt followed and its last batch passed on; 0 and -1 for none
	err := followListening(ctx, db, f.Reconnect, fmt.Sprintf("following the log of task %d", id), []string{ChannelLog, ChannelTask},
		func(conn *pgx.Conn) error {
			if err := WatchLogs(ctx, conn, []int64{id}); err != nil {
				return err
			}
			every := f.Renew
			if every <= 0 {
				every = WatchRenew
			}
			renew := time.Now().Add(every)
			var err error
			if t, err = GetTask(ctx, conn, id); err != nil {
				return err
			}
			for {
				if attempt > 0 {
					chunks, err := LogAfter(ctx, conn, id, attempt, last)
					if err != nil {
						return err
					}
					if len(chunks) > 0 && f.Chunks != nil {
						if err := f.Chunks(chunks); err != nil {
							return err
						}
					}
					if len(chunks) > 0 {
						last = chunks[len(chunks)-1].Seq
					}
				}
				if t.Attempt > attempt {
					// Caught up with the older attempt: on to the newer one.
					attempt, last = t.Attempt, -1
					if f.Attempt != nil {
						if err := f.Attempt(t); err != nil {
							return err
						}
					}
					continue
				}
				if t.Status.Final() {
					return nil
				}
				wctx, cancel := context.WithDeadline(ctx, renew)
				n, err := waitFor(wctx, conn, func(n notice) bool { return n.Task == id })
				cancel()
				if err != nil && wctx.Err() != nil && ctx.Err() == nil && !conn.IsClosed() {
					// Time to renew the watch. Reading again afterwards
					// also catches a batch whose commit raced the first
					// watch and so sent nothing.
					if err := WatchLogs(ctx, conn, []int64{id}); err != nil {
						return err
					}
					renew = time.Now().Add(every)
					n = notice{channel: ChannelTask}
				} else if err != nil {
					return fmt.Errorf("waiting for the log of task %d: %w", id, err)
				}
				if n.channel == ChannelTask || n.Attempt > attempt {
					if t, err = GetTask(ctx, conn, id); err != nil {
						return err
					}
				}
			}
		})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// followListening runs follow with a connection of its own, taken from db,
// that LISTENs on channels; follow reads what it follows and waits for
// notifications until it is done. When the connection is lost, it calls
// r.Lost, connects again with a pause growing from 1 s to 30 s, and runs
// follow again on the new connection, which reads afresh what it follows,
// so nothing that happened meanwhile is missed. It gives up with an error
// wrapping ErrConnectionLost when the next try would end later than
// r.GiveUpAfter after the loss. Every other error of follow (one when the
// connection is still open: a failed query, a callback's error) ends it.
//
// what says what is followed, for the error.
func followListening(ctx context.Context, db *pgxpool.Pool, r Reconnect, what string, channels []string, follow func(*pgx.Conn) error) error {
	giveUp := r.GiveUpAfter
	if giveUp == 0 {
		giveUp = 5 * time.Minute
	}
	var lostAt time.Time // zero while connected
	pause := time.Duration(0)
	for {
		conn, err := listenOn(ctx, db, channels...)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if lostAt.IsZero() {
				return err // never connected: nothing to reconnect to
			}
			pause = min(max(2*pause, time.Second), 30*time.Second)
			if time.Since(lostAt)+pause > giveUp { // the next try would be too late
				return fmt.Errorf("%s: %w and could not reconnect for %s: %w", what, ErrConnectionLost, giveUp, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pause):
			}
			continue
		}
		lostAt, pause = time.Time{}, 0
		err = follow(conn)
		closed := conn.IsClosed()
		conn.Close(context.WithoutCancel(ctx))
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !closed:
			return err // the query or a callback failed, not the connection
		}
		lostAt = time.Now()
		if r.Lost != nil {
			r.Lost(err)
		}
	}
}

// listenOn takes a connection of its own from db and LISTENs on channels.
func listenOn(ctx context.Context, db *pgxpool.Pool, channels ...string) (*pgx.Conn, error) {
	pc, err := db.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	conn := pc.Hijack()
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("listening on %s: %w", ch, err)
		}
	}
	return conn, nil
}

// snapshotJob reads a job in one read-only snapshot.
func snapshotJob(ctx context.Context, conn *pgx.Conn, id int64) (*Job, error) {
	var j *Job
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		j, err = GetJob(ctx, tx, id)
		return err
	})
	return j, err
}

// The NOTIFY channels the schema's triggers send on when a job, a task or
// a task's log changes, with the ids as a JSON payload (notice); followers
// here and kiln-web's live updates LISTEN on them.
const (
	ChannelJob  = "kiln_job"
	ChannelTask = "kiln_task"
	ChannelLog  = "kiln_log"
)

// notice is a notification on kiln_job, kiln_task or kiln_log; the schema's
// triggers send its fields as JSON (zero when not sent).
type notice struct {
	channel string
	Job     int64 `json:"job"`
	Task    int64 `json:"task"`
	Attempt int   `json:"attempt"`
}

// waitFor blocks until a notification that match accepts arrives.
func waitFor(ctx context.Context, conn *pgx.Conn, match func(notice) bool) (notice, error) {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return notice{}, err
		}
		p := notice{channel: n.Channel}
		if json.Unmarshal([]byte(n.Payload), &p) == nil && match(p) {
			return p, nil
		}
	}
}
