package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/kiln-build/kiln/internal/repo"
)

// repoFile serves GET and HEAD /repos/BUCKET/[snapshots/SEQ/]PLATFORM/PATH
// straight from PostgreSQL: a public bucket's files under the web's own
// rights (row-level security), a private bucket's for a logged-in person or
// a repository token (HTTP basic password, as apt's auth.conf and dnf's
// .repo send it) through kiln.web_repo_file. ETag is the SHA-256; files
// named by their content are cacheable for a year, the rest for a minute;
// http.ServeContent answers Range and conditional requests.
func (s *Server) repoFile(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	a, err := repo.ParseAddress(r.PathValue("rest"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	person := s.person(r)
	_, token, hasToken := r.BasicAuth()
	ctx := r.Context()
	var st repo.Stored
	var chunks repo.ChunkFunc
	if !s.cfg.RequireAuth {
		st, err = repo.Lookup(ctx, s.db, a)
		chunks = repo.PublicChunks(s.db, st.Sum)
	} else {
		err = repo.ErrNotFound
	}
	if errors.Is(err, repo.ErrNotFound) && (person != "" || hasToken) {
		st, chunks, err = s.privateRepoFile(ctx, person, token, hasToken, a)
	}
	switch {
	case errors.Is(err, repo.ErrNotFound) && person == "" && !hasToken:
		w.Header().Set("WWW-Authenticate", `Basic realm="kiln repositories"`)
		http.Error(w, "not found (private repositories need a login or a token: kiln repo token)", http.StatusUnauthorized)
		return
	case errors.Is(err, repo.ErrNotFound):
		http.NotFound(w, r)
		return
	case err != nil:
		s.log.Error("serving a repository file", "path", r.URL.Path, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("ETag", `"`+st.Sum.String()+`"`)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Checksum-Sha256", st.Sum.String())
	vis := "public"
	if person != "" || hasToken {
		vis = "private"
	}
	if a.Immutable() {
		h.Set("Cache-Control", vis+", max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", vis+", max-age=60")
	}
	http.ServeContent(w, r, "", time.Time{}, repo.NewReader(ctx, st, chunks))
}

// privateRepoFile finds a file for a person or a token holder.
func (s *Server) privateRepoFile(ctx context.Context, person, token string, hasToken bool, a repo.Address) (repo.Stored, repo.ChunkFunc, error) {
	var p, tok, seq any
	if person != "" {
		p = person
	}
	if hasToken {
		tok = token
	}
	if a.Seq > 0 {
		seq = a.Seq
	}
	var st repo.Stored
	var sum []byte
	err := s.db.QueryRow(ctx, `SELECT blob_sha256, size, chunk_size FROM kiln.web_repo_file($1, $2, $3, $4, $5, $6)`,
		p, tok, a.Bucket, seq, a.Platform, a.Path).Scan(&sum, &st.Size, &st.ChunkSize)
	if err != nil {
		return st, nil, repo.ErrNotFound
	}
	copy(st.Sum[:], sum)
	return st, func(ctx context.Context, n int64) ([]byte, error) {
		var data []byte
		err := s.db.QueryRow(ctx, `SELECT kiln.web_repo_chunk($1, $2, $3, $4, $5, $6, $7)`, p, tok, a.Bucket, seq, a.Platform, a.Path, n).Scan(&data)
		if err == nil && data == nil {
			err = repo.ErrNotFound
		}
		return data, err
	}, nil
}

// repoKey serves GET /repos/BUCKET/key.asc: the bucket's public signing
// key(s), for signed-by and gpgkey=.
func (s *Server) repoKey(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	key, err := repo.PublicKey(r.Context(), s.db, r.PathValue("bucket"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/pgp-keys")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write([]byte(key)) //nolint:errcheck
}

// promoteJob handles POST /jobs/{id}/promote (form field to): the
// logged-in person promotes the job's published packages into bucket to,
// through kiln.web_promote, which checks their grant on it.
func (s *Server) promoteJob(w http.ResponseWriter, r *http.Request, person string) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	to := r.FormValue("to")
	var req int64
	if err := s.db.QueryRow(r.Context(), "SELECT kiln.web_promote($1, $2, $3)", person, id, to).Scan(&req); err != nil {
		s.fail(w, r, fmt.Errorf("promoting job %d into %s: %w", id, to, err))
		return
	}
	s.log.Info("job promoted", "job", id, "to", to, "person", person, "request", req)
	s.wrote(w, r)
	http.Redirect(w, r, fmt.Sprintf("/jobs/%d", id), http.StatusSeeOther)
}
