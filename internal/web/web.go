// Package web is kiln's web interface: server-rendered pages (html/template,
// with the stylesheet and the small live-update script embedded in the
// binary), a JSON API under /api/ that returns the same types as the CLI's
// --json (package report), live updates over server-sent events fed by
// PostgreSQL LISTEN, artifact and log downloads, Prometheus metrics, and
// actions (cancel, resubmit, enable or disable a builder) for people who log
// in with Kerberos over HTTP (SPNEGO).
//
// Pages read as the web's own database role (a member of kiln_web, so of
// kiln_reader). Actions go through the kiln.web_* SQL functions, which take
// the name of the person the web authenticated and check that person's
// rights; docs/web.md explains why.
package web

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jcmturner/gokrb5/v8/keytab"

	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/internal/termtext"
)

// Config configures a Server.
type Config struct {
	// DB is the pool pages read from and actions run on, connected as the
	// web's login role (a member of kiln_web).
	DB *pgxpool.Pool
	// ReadDB, when set, is a hot standby the pages, the JSON API and the
	// metrics read from (the live updates and actions stay on DB); a
	// browser's own actions are read back from it only once it has them.
	ReadDB *pgxpool.Pool
	// Keytab holds the key of the web's HTTP service principal. Without
	// one, nobody can log in and actions are unavailable.
	Keytab *keytab.Keytab
	// ServicePrincipal names the keytab entry to use (HTTP/web.example.org);
	// empty means whichever entry matches the ticket.
	ServicePrincipal string
	// Realm is the Kerberos realm of the people who may log in; principals
	// of other realms are refused. Required with a keytab.
	Realm string
	// RequireAuth makes every page and API call (except /healthz, /metrics
	// and the login itself) require a logged-in person.
	RequireAuth bool
	// PublicURL is the address people use (https://kiln.example.org), for
	// the Origin check of actions behind a proxy; empty means the request's
	// own Host.
	PublicURL string
	// SessionKey signs session and CSRF cookies; a random key when empty
	// (sessions then end when the process restarts).
	SessionKey []byte
	// SessionTTL is how long a login lasts (10 hours when 0, a ticket's
	// usual lifetime).
	SessionTTL time.Duration
	// MetricsWindow is the window of the recent-build figures in /metrics
	// (an hour when 0).
	MetricsWindow time.Duration
	// Logger receives request errors; slog.Default() when nil.
	Logger *slog.Logger
}

// Server serves the web interface. Create it with New, start its live
// updates with Run, and serve Handler.
type Server struct {
	cfg     Config
	db      *pgxpool.Pool
	log     *slog.Logger
	pages   pages
	submit  *submit.Client // resubmits (submit.Client.ResubmitFor)
	hub     *hub
	reads   dbconn.Reads
	metrics metricsCache
	mux     *http.ServeMux
}

// New prepares a server.
func New(cfg Config) (*Server, error) {
	if cfg.DB == nil {
		return nil, errors.New("web: no database pool")
	}
	if cfg.Keytab != nil && cfg.Realm == "" {
		return nil, errors.New("web: a keytab needs the realm of the people who log in (--realm)")
	}
	if len(cfg.SessionKey) == 0 {
		cfg.SessionKey = make([]byte, 32)
		if _, err := rand.Read(cfg.SessionKey); err != nil {
			return nil, fmt.Errorf("web: making a session key: %w", err)
		}
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 10 * time.Hour
	}
	if cfg.MetricsWindow == 0 {
		cfg.MetricsWindow = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("web: public URL %q is not an absolute URL", cfg.PublicURL)
		}
	}
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, err := submit.New(cfg.DB)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	s := &Server{cfg: cfg, db: cfg.DB, reads: dbconn.Reads{Primary: cfg.DB, Replica: cfg.ReadDB}, log: cfg.Logger, pages: p, submit: sub, hub: newHub(cfg.DB, cfg.Logger)}
	s.routes()
	return s, nil
}

// Run follows the database's notifications for the live updates until ctx
// ends, reconnecting after failures.
func (s *Server) Run(ctx context.Context) { s.hub.run(ctx) }

// Handler returns the HTTP handler of the whole interface.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) routes() {
	m := http.NewServeMux()
	page := func(pattern string, h http.HandlerFunc) { m.Handle(pattern, s.guard(h)) }

	page("GET /{$}", s.dashboard)
	page("GET /jobs", s.jobList)
	page("GET /jobs/{id}", s.jobPage)
	page("GET /jobs/{id}/events", s.jobEvents)
	page("GET /tasks/{id}", s.taskPage)
	page("GET /tasks/{id}/log.txt", s.rawLog)
	page("GET /tasks/{id}/events", s.taskEvents)
	page("GET /artifacts/{id}/{name}", s.download)
	page("GET /builders", s.builderList)
	page("GET /builders/{name}", s.builderPage)
	page("GET /platforms", s.platformList)
	page("GET /queue", s.queuePage)
	page("GET /events", s.farmEvents)

	m.HandleFunc("POST /jobs/{id}/cancel", s.action(s.cancelJob))
	m.HandleFunc("POST /jobs/{id}/resubmit", s.action(s.resubmit))
	m.HandleFunc("POST /tasks/{id}/cancel", s.action(s.cancelTask))
	m.HandleFunc("POST /jobs/{id}/promote", s.action(s.promoteJob))
	m.HandleFunc("POST /builders/{name}/enable", s.action(s.enableBuilder(true)))
	m.HandleFunc("POST /builders/{name}/disable", s.action(s.enableBuilder(false)))
	m.HandleFunc("GET /login", s.login)
	m.HandleFunc("POST /logout", s.logout)

	page("GET /api/jobs", s.apiJobs)
	page("GET /api/jobs/{id}", s.apiJob)
	page("GET /api/tasks/{id}", s.apiTask)
	page("GET /api/tasks/{id}/log", s.apiLog)
	page("GET /api/builders", s.apiBuilders)
	page("GET /api/builders/{name}", s.apiBuilder)
	page("GET /api/platforms", s.apiPlatforms)
	page("GET /api/queue", s.apiQueue)
	page("GET /api/health", s.apiHealth)

	m.HandleFunc("GET /repos/{bucket}/key.asc", s.repoKey)
	m.HandleFunc("GET /repos/{rest...}", s.repoFile)
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /metrics", s.serveMetrics)
	m.Handle("GET /static/", http.StripPrefix("/static/", s.staticHandler()))
	// Everything else is the styled 404 page, not the mux's plain text.
	page("/", s.notFound)
	s.mux = m
}

// guard applies the security headers and, when reading requires a login,
// sends anonymous people to it.
func (s *Server) guard(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		if s.cfg.RequireAuth && s.person(r) == "" {
			if strings.HasPrefix(r.URL.Path, "/api/") {
				writeJSON(w, http.StatusUnauthorized, apiError{"log in first: GET /login with Kerberos (curl --negotiate -u : -c cookies)"})
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		h(w, r)
	})
}

func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

// pathID reads a numeric path value such as the {id} of /jobs/{id}.
func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q is not a valid %s: %w", r.PathValue(name), name, errBadRequest)
	}
	return id, nil
}

var errBadRequest = errors.New("bad request")

// statusOf picks the HTTP status for an error of the report queries or of
// the database.
func statusOf(err error) int {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, report.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.As(err, &pgErr):
		switch pgErr.Code {
		case "42501":
			return http.StatusForbidden
		case "P0002":
			return http.StatusNotFound
		case "55000", "23505":
			return http.StatusConflict
		case "22023", "22P02", "23514":
			return http.StatusBadRequest
		case "KL001": // a quota (docs/quotas.md)
			return http.StatusTooManyRequests
		}
	case errors.Is(err, context.Canceled):
		return 499
	}
	return http.StatusInternalServerError
}

// message is what a person is told about an error: the database's own
// sentence for refusals it raised, nothing internal otherwise.
func message(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && statusOf(err) != http.StatusInternalServerError {
		if pgErr.Hint != "" {
			return termtext.Plain(pgErr.Message + " (" + pgErr.Hint + ")")
		}
		return termtext.Plain(pgErr.Message)
	}
	if statusOf(err) == http.StatusInternalServerError {
		return "internal error; the server's log has the details"
	}
	return err.Error()
}
