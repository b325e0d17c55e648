package notify

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/riverjob"
)

// RunConfig is kiln-reporter's configuration.
type RunConfig struct {
	// DB is the connection, as a member of kiln_reporter.
	DB dbconn.Config
	// SMTP is the mail server.
	SMTP SMTP
	// Workers is how many deliveries run at once.
	Workers int
	// RetryMin and RetryMax bound the backoff between tries.
	RetryMin, RetryMax time.Duration
	// HealthAddr serves GET /healthz when not empty.
	HealthAddr string
	Logger     *slog.Logger
}

// Run is kiln-reporter: it works River queue report until ctx ends, then
// lets the deliveries under way finish (at most a minute).
func Run(ctx context.Context, cfg RunConfig) error {
	log := cfg.Logger
	db, err := dbconn.Open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer db.Close()
	rep, err := New(ctx, Config{DB: db, SMTP: cfg.SMTP, Log: log})
	if err != nil {
		return err
	}
	rc, err := riverjob.NewReporterClient(db, riverjob.ReporterConfig{
		Reporter: rep, Workers: cfg.Workers, RetryMin: cfg.RetryMin, RetryMax: cfg.RetryMax, Logger: log,
	})
	if err != nil {
		return err
	}
	if err := rc.Start(ctx); err != nil {
		return fmt.Errorf("starting the River client: %w", err)
	}
	log.Info("kiln-reporter working queue "+riverjob.QueueReport, "smtp", cfg.SMTP.Addr, "from", cfg.SMTP.From, "starttls", cfg.SMTP.StartTLS)
	stop := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := rc.Stop(sctx); err != nil {
			return fmt.Errorf("stopping the River client: %w", err)
		}
		return nil
	}
	alive := func(ctx context.Context) error { return db.Ping(ctx) }
	if err := daemon.ServeHealth(ctx, log, cfg.HealthAddr, alive); err != nil {
		_ = stop()
		return err
	}
	_ = daemon.Notify("READY=1")
	go daemon.Watchdog(ctx, log, alive)
	<-ctx.Done()
	_ = daemon.Notify("STOPPING=1")
	log.Info("stopping: finishing the deliveries under way")
	return stop()
}
