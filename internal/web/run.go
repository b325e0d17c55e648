package web

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/jcmturner/gokrb5/v8/keytab"

	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/dbconn"
)

// RunConfig is what kiln-web's main hands to Run.
type RunConfig struct {
	// DB is the connection, as a member of kiln_web.
	DB dbconn.Config
	// ReadDB, when not nil, is a hot standby that pages, the JSON API and
	// /metrics read from (docs/scaling.md).
	ReadDB *dbconn.Config
	// Listen is the address to serve on (host:port).
	Listen string
	// KeytabFile holds the HTTP service principal's key; empty: no login.
	KeytabFile string
	// SessionKeyFile holds at least 32 secret bytes signing logins; empty:
	// a random key, so logins end when the process restarts.
	SessionKeyFile string
	// Web configures the server; its DB, Keytab and SessionKey are filled
	// in by Run.
	Web Config
}

// Run connects, serves the web interface on cfg.Listen and shuts it down
// (waiting up to 10 s for requests) when ctx ends.
func Run(ctx context.Context, cfg RunConfig) error {
	wc := cfg.Web
	var err error
	if p := cfg.KeytabFile; p != "" {
		if wc.Keytab, err = keytab.Load(p); err != nil {
			return fmt.Errorf("reading keytab %s: %w", p, err)
		}
	}
	if p := cfg.SessionKeyFile; p != "" {
		if wc.SessionKey, err = os.ReadFile(p); err != nil {
			return fmt.Errorf("reading the session key: %w", err)
		}
		if len(wc.SessionKey) < 32 {
			return fmt.Errorf("session key %s has %d bytes; it needs at least 32 (head -c 32 /dev/urandom > %s)", p, len(wc.SessionKey), p)
		}
	}
	if wc.DB, err = dbconn.Open(ctx, cfg.DB); err != nil {
		return err
	}
	defer wc.DB.Close()
	if cfg.ReadDB != nil {
		if wc.ReadDB, err = dbconn.Open(ctx, *cfg.ReadDB); err != nil {
			return fmt.Errorf("--read-db: %w", err)
		}
		defer wc.ReadDB.Close()
	}
	srv, err := New(wc)
	if err != nil {
		return err
	}
	go srv.Run(ctx)
	go daemon.Watchdog(ctx, srv.log, func(ctx context.Context) error { return wc.DB.Ping(ctx) })

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Requests (server-sent event streams above all) end with ctx.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	go func() {
		<-ctx.Done()
		_ = daemon.Notify("STOPPING=1")
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	srv.log.Info("kiln-web listening", "url", "http://"+ln.Addr().String(), "login", wc.Keytab != nil)
	_ = daemon.Notify("READY=1")
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
