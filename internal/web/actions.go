package web

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/kiln-build/kiln/internal/task"
)

// The actions run the kiln.web_* functions (schema/current/10_functions.sql;
// cancels through internal/task's CancelJobFor and CancelTaskFor) with the
// name of the person the session belongs to; the database decides whether
// that person may do it, with the same rules as for the kiln command.

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, person string) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := task.CancelJobFor(r.Context(), s.db, person, id); err != nil {
		s.fail(w, r, fmt.Errorf("cancelling job %d: %w", id, err))
		return
	}
	s.log.Info("job cancelled", "job", id, "person", person)
	s.wrote(w, r)
	http.Redirect(w, r, fmt.Sprintf("/jobs/%d", id), http.StatusSeeOther)
}

func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request, person string) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := task.CancelTaskFor(r.Context(), s.db, person, id); err != nil {
		s.fail(w, r, fmt.Errorf("cancelling task %d: %w", id, err))
		return
	}
	s.log.Info("task cancelled", "task", id, "person", person)
	s.wrote(w, r)
	http.Redirect(w, r, fmt.Sprintf("/tasks/%d", id), http.StatusSeeOther)
}

// resubmit creates the new job and its validate River job in one
// transaction, as kiln resubmit does (submit.Client.ResubmitFor).
func (s *Server) resubmit(w http.ResponseWriter, r *http.Request, person string) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	newID, err := s.submit.ResubmitFor(r.Context(), person, id)
	if err != nil {
		s.fail(w, r, fmt.Errorf("resubmitting job %d: %w", id, err))
		return
	}
	s.log.Info("job resubmitted", "job", id, "new", newID, "person", person)
	s.wrote(w, r)
	http.Redirect(w, r, fmt.Sprintf("/jobs/%d", newID), http.StatusSeeOther)
}

func (s *Server) enableBuilder(enabled bool) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, person string) {
		name := r.PathValue("name")
		if _, err := s.db.Exec(r.Context(), "SELECT kiln.web_set_builder_enabled($1, $2, $3)", person, name, enabled); err != nil {
			s.fail(w, r, fmt.Errorf("switching builder %s: %w", name, err))
			return
		}
		s.log.Info("builder switched", "builder", name, "enabled", enabled, "person", person)
		s.wrote(w, r)
		http.Redirect(w, r, "/builders/"+url.PathEscape(name), http.StatusSeeOther)
	}
}
