package split

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/riverjob"
)

// Config is how kiln-splitter runs.
type Config struct {
	// DB is the connection, as a member of kiln_splitter.
	DB dbconn.Config
	// Workers is how many jobs are validated at once.
	Workers int
	// MaxFileSize is the largest file a job may contain.
	MaxFileSize int64
	// Once processes the waiting jobs and returns (for cron).
	Once bool
	// HealthAddr serves GET /healthz when not empty.
	HealthAddr string
	Logger     *slog.Logger
}

// Run connects and works queue incoming until ctx ends (or, with Once,
// until nothing is waiting).
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	db, err := dbconn.Open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer db.Close()
	id := riverjob.NewSplitterID()
	lock, err := lockClient(ctx, db, id, log)
	if err != nil {
		return err
	}
	// The lock is kept until the River client has stopped, so that the
	// validations it finishes on SIGTERM are not taken over meanwhile.
	lockCtx, unlock := context.WithCancel(context.WithoutCancel(ctx))
	go lock.keep(lockCtx)
	defer func() {
		unlock()
		<-lock.done
	}()
	rc, err := newRiverClient(db, New(db, cfg.MaxFileSize), log, cfg.Workers, id)
	if err != nil {
		return err
	}
	if err := rc.Start(ctx); err != nil {
		return fmt.Errorf("starting the River client: %w", err)
	}
	log.Info("kiln-splitter working queue "+riverjob.QueueIncoming, "client", id, "workers", cfg.Workers, "max_file_size", cfg.MaxFileSize, "once", cfg.Once)
	if cfg.Once {
		err := drain(ctx, db)
		if serr := stopRiver(rc, log); err == nil {
			err = serr
		}
		return err
	}
	alive := func(ctx context.Context) error { return db.Ping(ctx) }
	if err := daemon.ServeHealth(ctx, log, cfg.HealthAddr, alive); err != nil {
		_ = stopRiver(rc, log)
		return err
	}
	_ = daemon.Notify("READY=1")
	go daemon.Watchdog(ctx, log, alive)
	<-ctx.Done()
	_ = daemon.Notify("STOPPING=1")
	log.Info("stopping: finishing the jobs being validated")
	return stopRiver(rc, log)
}

// drain waits until queue incoming has no validate River job available to
// run now. Those already taken finish in stopRiver; ones waiting for a
// retry later are left for the next run.
func drain(ctx context.Context, db *pgxpool.Pool) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		waiting, err := riverjob.CountAvailable(ctx, db, riverjob.QueueIncoming)
		if err != nil {
			return err
		}
		if waiting == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// stopRiver lets running validations finish (at most a minute).
func stopRiver(rc *riverjob.Client, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rc.Stop(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopping the River client", "err", err)
		return err
	}
	return nil
}
