// Command kiln-web serves kiln's web interface: pages, the JSON API, live
// updates, downloads, /healthz and /metrics. See docs/web.md.
//
//	kiln-web --listen 127.0.0.1:8080 --db postgres://web@db.example.org/kiln
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/urfave/cli/v2"

	kcli "github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/web"
)

func main() {
	app := &cli.App{
		Name:    "kiln-web",
		Usage:   "kiln's web interface",
		Version: kcli.Version,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "address to serve on", EnvVars: []string{"KILN_WEB_LISTEN"}},
			&cli.IntFlag{Name: "max-conns", Value: 10, Usage: "most database connections for pages", EnvVars: []string{"KILN_WEB_MAX_CONNS"}},
			&cli.StringFlag{Name: "keytab", Usage: "keytab of the HTTP service principal, for logging people in with Kerberos (none: no login, no actions)", EnvVars: []string{"KILN_WEB_KEYTAB"}},
			&cli.StringFlag{Name: "service-principal", Usage: "keytab entry to use, such as HTTP/kiln.example.org (default: any that matches)", EnvVars: []string{"KILN_WEB_PRINCIPAL"}},
			&cli.StringFlag{Name: "realm", Usage: "Kerberos realm of the people who may log in (required with --keytab)", EnvVars: []string{"KILN_WEB_REALM"}},
			&cli.BoolFlag{Name: "require-auth", Usage: "require a login for reading too", EnvVars: []string{"KILN_WEB_REQUIRE_AUTH"}},
			&cli.StringFlag{Name: "public-url", Usage: "address people use, such as https://kiln.example.org (for the Origin check behind a proxy)", EnvVars: []string{"KILN_WEB_URL"}},
			&cli.StringFlag{Name: "session-key-file", Usage: "file with at least 32 secret bytes signing logins (default: random, logins end on restart)", EnvVars: []string{"KILN_WEB_SESSION_KEY_FILE"}},
			daemon.ReadDBFlag("web"),
		}, daemon.Flags()...),
		Action: run,
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "kiln-web:", err)
		os.Exit(1)
	}
}

func run(c *cli.Context) error {
	common, err := daemon.Common(c, int32(c.Int("max-conns")))
	if err != nil {
		return err
	}
	log := common.Logger
	ctx, stop := daemon.SignalContext(c.Context)
	defer stop()

	cfg := web.Config{Realm: c.String("realm"), ServicePrincipal: c.String("service-principal"),
		RequireAuth: c.Bool("require-auth"), PublicURL: c.String("public-url"), Logger: log}
	if p := c.String("keytab"); p != "" {
		if cfg.Keytab, err = keytab.Load(p); err != nil {
			return fmt.Errorf("reading keytab %s: %w", p, err)
		}
	}
	if p := c.String("session-key-file"); p != "" {
		if cfg.SessionKey, err = os.ReadFile(p); err != nil {
			return fmt.Errorf("reading the session key: %w", err)
		}
		if len(cfg.SessionKey) < 32 {
			return fmt.Errorf("session key %s has %d bytes; it needs at least 32 (head -c 32 /dev/urandom > %s)", p, len(cfg.SessionKey), p)
		}
	}
	if cfg.DB, err = dbconn.Open(ctx, common.DB); err != nil {
		return err
	}
	defer cfg.DB.Close()
	if rc, ok := common.ReadDB(c); ok {
		if cfg.ReadDB, err = dbconn.Open(ctx, rc); err != nil {
			return fmt.Errorf("--read-db: %w", err)
		}
		defer cfg.ReadDB.Close()
	}
	srv, err := web.New(cfg)
	if err != nil {
		return err
	}
	go srv.Run(ctx)
	go daemon.Watchdog(ctx, log, func(ctx context.Context) error { return cfg.DB.Ping(ctx) })

	ln, err := net.Listen("tcp", c.String("listen"))
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
	log.Info("kiln-web listening", "url", "http://"+ln.Addr().String(), "login", cfg.Keytab != nil)
	_ = daemon.Notify("READY=1")
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
