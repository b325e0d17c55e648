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

// ErrConnectionLost is wrapped by the error of FollowJob when the database
// connection was lost and could not be made again in time.
var ErrConnectionLost = errors.New("lost the database connection")

// Follow says how FollowJob reports what it sees. Zero fields do nothing.
type Follow struct {
	// Seen is called with the job as first read and after every change
	// (and again after a reconnect, changed or not); an error ends
	// FollowJob with that error.
	Seen func(*Job) error
	// Lost is called when the connection is lost, before reconnecting.
	Lost func(err error)
	// GiveUpAfter is how long reconnecting is tried before FollowJob fails
	// with ErrConnectionLost (5 minutes when 0).
	GiveUpAfter time.Duration
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
// It returns ctx's error when ctx ends, the error of f.Seen, or an error
// reading the job (one wrapping ErrNotFound when it does not exist).
func FollowJob(ctx context.Context, db *pgxpool.Pool, id int64, f Follow) (*Job, error) {
	giveUp := f.GiveUpAfter
	if giveUp == 0 {
		giveUp = 5 * time.Minute
	}
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	var lostAt time.Time // zero while connected
	pause := time.Duration(0)
	for {
		if conn == nil {
			c, err := listenOn(ctx, db, "kiln_job", "kiln_task")
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if lostAt.IsZero() {
					return nil, err // never connected: nothing to reconnect to
				}
				pause = min(max(2*pause, time.Second), 30*time.Second)
				if time.Since(lostAt)+pause > giveUp { // the next try would be too late
					return nil, fmt.Errorf("following job %d: %w and could not reconnect for %s: %w", id, ErrConnectionLost, giveUp, err)
				}
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(pause):
				}
				continue
			}
			conn, lostAt, pause = c, time.Time{}, 0
		}
		j, err := snapshotJob(ctx, conn, id)
		if err == nil {
			if f.Seen != nil {
				if err := f.Seen(j); err != nil {
					return j, err
				}
			}
			if JobFinal(j.Status) {
				return j, nil
			}
			err = waitForJob(ctx, conn, id)
		}
		switch {
		case err == nil:
			continue // a change: read the job again
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case !conn.IsClosed():
			return nil, err // the query failed, not the connection
		}
		conn, lostAt = nil, time.Now()
		if f.Lost != nil {
			f.Lost(err)
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

// waitForJob blocks until a notification about job id arrives.
func waitForJob(ctx context.Context, conn *pgx.Conn, id int64) error {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("waiting for changes of job %d: %w", id, err)
		}
		var p struct {
			Job int64 `json:"job"`
		}
		if json.Unmarshal([]byte(n.Payload), &p) == nil && p.Job == id {
			return nil
		}
	}
}
