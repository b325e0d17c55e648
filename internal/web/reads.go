package web

import (
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/dbconn"
)

// writtenCookie holds the primary's WAL position after the browser's last
// action, so that its next pages are read from the standby only once the
// standby has replayed that action (dbconn.Reads).
const writtenCookie = "kiln_written"

// readDB is where a page or API call of r reads: the standby (Config.ReadDB)
// once it has the requester's last action, else the primary.
func (s *Server) readDB(r *http.Request) *pgxpool.Pool {
	written := ""
	if c, err := r.Cookie(writtenCookie); err == nil && dbconn.CheckPosition(c.Value) == nil {
		written = c.Value
	}
	return s.reads.For(r.Context(), written)
}

// wrote remembers, in the response's cookie, how far the primary has got
// after an action, when pages read from a standby.
func (s *Server) wrote(w http.ResponseWriter, r *http.Request) {
	if s.reads.Replica == nil {
		return
	}
	lsn, err := s.reads.Written(r.Context())
	if err != nil {
		s.log.Warn("reading the WAL position after an action; the next page may read from the primary", "err", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: writtenCookie, Value: lsn, Path: "/", MaxAge: 300, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
}
