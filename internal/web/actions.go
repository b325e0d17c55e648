package web

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/riverjob"
)

// The actions run the kiln.web_* functions (schema/0008_web.sql) with the
// name of the person the session belongs to; the database decides whether
// that person may do it, with the same rules as for the kiln command.

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, person string) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var status string
	if err := s.db.QueryRow(r.Context(), "SELECT kiln.web_cancel_job($1, $2)", person, id).Scan(&status); err != nil {
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
	var status string
	if err := s.db.QueryRow(r.Context(), "SELECT kiln.web_cancel_task($1, $2)", person, id).Scan(&status); err != nil {
		s.fail(w, r, fmt.Errorf("cancelling task %d: %w", id, err))
		return
	}
	s.log.Info("task cancelled", "task", id, "person", person)
	s.wrote(w, r)
	http.Redirect(w, r, fmt.Sprintf("/tasks/%d", id), http.StatusSeeOther)
}

// resubmit creates the new job and its validate River job in one
// transaction, as kiln resubmit does.
func (s *Server) resubmit(w http.ResponseWriter, r *http.Request, person string) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	key := make([]byte, 12)
	_, _ = rand.Read(key)
	var newID int64
	err = pgx.BeginFunc(r.Context(), s.db, func(tx pgx.Tx) error {
		if err := tx.QueryRow(r.Context(), "SELECT kiln.web_resubmit($1, $2, $3)", person, id,
			fmt.Sprintf("web.resubmit.%d.%s", id, hex.EncodeToString(key))).Scan(&newID); err != nil {
			return err
		}
		if _, err := s.river.InsertTx(r.Context(), tx, riverjob.ValidateArgs{JobID: newID}, nil); err != nil {
			return fmt.Errorf("queueing job %d for validation: %w", newID, err)
		}
		return nil
	})
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
