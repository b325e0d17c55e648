// Package daemon holds what every kiln daemon does the same way: logging with
// log/slog, stopping on SIGTERM/SIGINT, telling systemd it is ready and alive
// (sd_notify, without linking libsystemd), and serving a health endpoint.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// Logger returns a text logger on stderr at the given level ("debug",
// "info", "warn", "error"); journald stores stderr as is.
func Logger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// SignalContext is cancelled on SIGTERM or SIGINT.
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, syscall.SIGTERM, syscall.SIGINT)
}

// Notify sends a state string to systemd ("READY=1", "WATCHDOG=1",
// "STOPPING=1", "STATUS=..."). Without NOTIFY_SOCKET (not under systemd, or
// not Type=notify) it does nothing.
func Notify(state string) error {
	socket := os.Getenv("NOTIFY_SOCKET")
	if socket == "" {
		return nil
	}
	addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
	if socket[0] == '@' {
		addr.Name = "\x00" + socket[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// WatchdogInterval is how often systemd expects WATCHDOG=1 (half of
// WATCHDOG_USEC), or 0 when no watchdog is configured for this process.
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// Watchdog feeds systemd's watchdog while alive() succeeds, until ctx ends.
// alive should check what matters (the database answers, the work loop
// runs), so a wedged daemon is restarted.
func Watchdog(ctx context.Context, log *slog.Logger, alive func(context.Context) error) {
	every := WatchdogInterval()
	if every == 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, every)
			err := alive(cctx)
			cancel()
			if err != nil {
				log.Warn("not feeding the systemd watchdog", "err", err)
				continue
			}
			if err := Notify("WATCHDOG=1"); err != nil {
				log.Warn("feeding the systemd watchdog", "err", err)
			}
		}
	}
}

// ServeHealth answers GET /healthz on addr with 200 "ok" while check
// succeeds and 503 with the error otherwise, until ctx ends. An empty addr
// serves nothing.
func ServeHealth(ctx context.Context, log *slog.Logger, addr string, check func(context.Context) error) error {
	if addr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		cctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := check(cctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health endpoint: %w", err)
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health endpoint stopped", "err", err)
		}
	}()
	log.Info("health endpoint listening", "addr", ln.Addr().String())
	return nil
}
