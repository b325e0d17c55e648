package repo

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/dbconn"
)

// RunConfig is kiln-publisher's configuration.
type RunConfig struct {
	// DB is the connection, as a member of kiln_publisher.
	DB dbconn.Config
	// GnuPGHome holds the buckets' secret signing keys (mode 0700).
	GnuPGHome string
	// WorkDir holds the rpm-md trees and scratch files; made (0700) if
	// missing.
	WorkDir string
	// Once publishes what is pending and returns, instead of serving.
	Once bool
	// Serve is how to wait for work (unless Once).
	Serve ServeConfig
	// HealthAddr serves GET /healthz when not empty (unless Once).
	HealthAddr string
	// Logger is where the publisher logs (slog.Default() when nil).
	Logger *slog.Logger
}

// Open checks cfg's GnuPG home, makes its work directory and connects: the
// publisher Run works with, or one for a single task (kiln-publisher
// rotate-key). The caller closes p.DB.
func Open(ctx context.Context, cfg RunConfig) (*Publisher, error) {
	keys := Keyring{Home: cfg.GnuPGHome}
	if err := keys.Check(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	pool, err := dbconn.Open(ctx, cfg.DB)
	if err != nil {
		return nil, err
	}
	return &Publisher{DB: pool, Keys: keys, WorkDir: cfg.WorkDir, Log: cmp.Or(cfg.Logger, slog.Default())}, nil
}

// Run is kiln-publisher: it publishes pending requests until ctx ends (see
// Serve), or once with cfg.Once. It tells systemd it is ready once it
// serves, and answers /healthz while the database does.
func Run(ctx context.Context, cfg RunConfig) error {
	p, err := Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.DB.Close()
	if cfg.Once {
		_, err := p.PublishPending(ctx)
		return err
	}
	alive := func(ctx context.Context) error { return p.DB.Ping(ctx) }
	if err := daemon.ServeHealth(ctx, p.Log, cfg.HealthAddr, alive); err != nil {
		return err
	}
	_ = daemon.Notify("READY=1")
	return Serve(ctx, p, cfg.Serve)
}

// ServeConfig is how Serve waits for work.
type ServeConfig struct {
	// Poll is how often pending requests are looked for without a
	// notification (30s when 0).
	Poll time.Duration
	// Coalesce is how long to wait after a notification for more to
	// arrive, so a burst of finished jobs gives one publication.
	Coalesce time.Duration
}

// Serve publishes pending requests until ctx ends: at start, on every
// NOTIFY kiln_publish (after waiting cfg.Coalesce for more) and every
// cfg.Poll. The notification is only a wake-up; the requests are rows, so
// nothing is lost while the publisher is down or disconnected.
func Serve(ctx context.Context, p *Publisher, cfg ServeConfig) error {
	if cfg.Poll <= 0 {
		cfg.Poll = 30 * time.Second
	}
	wake := make(chan struct{}, 1)
	go listen(ctx, p, wake)
	for {
		if _, err := p.PublishPending(ctx); err != nil && ctx.Err() == nil && p.Log != nil {
			p.Log.Error("publishing", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cfg.Poll):
		case <-wake:
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(cfg.Coalesce):
			}
		}
	}
}

// listen LISTENs for kiln_publish and signals wake, reconnecting after
// failures.
func listen(ctx context.Context, p *Publisher, wake chan<- struct{}) {
	for ctx.Err() == nil {
		err := func() error {
			conn, err := p.DB.Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, "LISTEN kiln_publish"); err != nil {
				return err
			}
			// Requests made while not listening are found by this look.
			select {
			case wake <- struct{}{}:
			default:
			}
			for {
				if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
					return err
				}
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}()
		if ctx.Err() != nil {
			return
		}
		if p.Log != nil {
			p.Log.Warn("listening for kiln_publish; retrying", "err", fmt.Sprint(err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// RotateKey makes a new signing key for bucket, retires the active one (its
// public key stays served next to the new one) and queues a rebuild, which
// re-signs every repository of the bucket with the new key.
func (p *Publisher) RotateKey(ctx context.Context, bucket string) (string, error) {
	tx, err := p.DB.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, `INSERT INTO kiln.bucket_publication (bucket) VALUES ($1) ON CONFLICT DO NOTHING`, bucket); err != nil {
		return "", fmt.Errorf("bucket %s: %w", bucket, err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM kiln.bucket_publication WHERE bucket = $1 FOR UPDATE`, bucket); err != nil {
		return "", fmt.Errorf("locking bucket %s: %w", bucket, err)
	}
	fpr, pub, err := p.Keys.Generate(ctx, bucket)
	if err != nil {
		return "", err
	}
	if _, err := tx.Exec(ctx, `UPDATE kiln.bucket_key SET active = false, retired_at = now() WHERE bucket = $1 AND active`, bucket); err != nil {
		return "", fmt.Errorf("retiring the key of %s: %w", bucket, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO kiln.bucket_key (bucket, fingerprint, public_key) VALUES ($1, $2, $3)`, bucket, fpr, pub); err != nil {
		return "", fmt.Errorf("recording the key of %s: %w", bucket, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO kiln.publication_request (bucket, kind) VALUES ($1, 'rebuild')`, bucket); err != nil {
		return "", fmt.Errorf("queueing the re-signing of %s: %w", bucket, err)
	}
	return fpr, tx.Commit(ctx)
}
