package web

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kiln-build/kiln/internal/report"
)

// The JSON API returns the types of package report, exactly as the kiln
// command's --json prints them (docs/cli.md lists the fields):
//
//	GET /api/jobs            report.JobList (filters as on /jobs)   kiln jobs --json
//	GET /api/jobs/N          report.Job                             kiln show --json
//	GET /api/tasks/N         report.Task
//	GET /api/tasks/N/log     []report.LogChunk (?attempt=, ?after=) kiln log --json
//	GET /api/builders        []report.Builder                       kiln builders --json
//	GET /api/builders/NAME   BuilderPage
//	GET /api/platforms       []report.Platform                      kiln platforms --json
//	GET /api/queue           report.Queue                           kiln queue --json
//	GET /api/health          report.Health                          kiln check --json

func (s *Server) api(w http.ResponseWriter, r *http.Request, load func(context.Context) (any, error)) {
	v, err := load(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) apiJobs(w http.ResponseWriter, r *http.Request) {
	s.api(w, r, func(ctx context.Context) (any, error) {
		f, err := jobFilter(r.URL.Query(), time.Now())
		if err != nil {
			return nil, err
		}
		return report.ListJobs(ctx, s.readDB(r), f)
	})
}

func (s *Server) apiJob(w http.ResponseWriter, r *http.Request) {
	s.api(w, r, func(ctx context.Context) (any, error) {
		id, err := pathID(r, "id")
		if err != nil {
			return nil, err
		}
		return report.GetJob(ctx, s.readDB(r), id)
	})
}

func (s *Server) apiTask(w http.ResponseWriter, r *http.Request) {
	s.api(w, r, func(ctx context.Context) (any, error) {
		id, err := pathID(r, "id")
		if err != nil {
			return nil, err
		}
		return report.GetTask(ctx, s.readDB(r), id)
	})
}

func (s *Server) apiLog(w http.ResponseWriter, r *http.Request) {
	s.api(w, r, func(ctx context.Context) (any, error) {
		id, err := pathID(r, "id")
		if err != nil {
			return nil, err
		}
		t, err := report.GetTask(ctx, s.readDB(r), id)
		if err != nil {
			return nil, err
		}
		attempt, after := t.Attempt, -1
		for name, to := range map[string]*int{"attempt": &attempt, "after": &after} {
			if v := r.URL.Query().Get(name); v != "" {
				if *to, err = strconv.Atoi(v); err != nil {
					return nil, fmt.Errorf("%s %q is not a number: %w", name, v, errBadRequest)
				}
			}
		}
		return report.LogAfter(ctx, s.readDB(r), id, attempt, after)
	})
}

func (s *Server) apiBuilders(w http.ResponseWriter, r *http.Request) {
	s.api(w, r, func(ctx context.Context) (any, error) { return report.ListBuilders(ctx, s.readDB(r)) })
}

func (s *Server) apiBuilder(w http.ResponseWriter, r *http.Request) {
	s.api(w, r, func(ctx context.Context) (any, error) { return s.loadBuilder(r) })
}

func (s *Server) apiPlatforms(w http.ResponseWriter, r *http.Request) {
	s.api(w, r, func(ctx context.Context) (any, error) { return report.ListPlatforms(ctx, s.readDB(r)) })
}

func (s *Server) apiQueue(w http.ResponseWriter, r *http.Request) {
	s.api(w, r, func(ctx context.Context) (any, error) {
		return report.GetQueue(ctx, s.readDB(r), report.QueueFilter{Submitter: r.URL.Query().Get("submitter"), Platform: r.URL.Query().Get("platform")})
	})
}

func (s *Server) apiHealth(w http.ResponseWriter, r *http.Request) {
	s.api(w, r, func(ctx context.Context) (any, error) { return report.GetHealth(ctx, s.readDB(r)) })
}

// healthz answers 200 "ok" while the database answers and the live-update
// listener is connected (or has not been started), 503 otherwise.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		http.Error(w, "database: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if err := s.hub.healthy(); err != nil {
		http.Error(w, "live updates: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}
