package web

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/termtext"
)

// logChunks is how many log batches a page shows before following live;
// the raw log has the rest.
const logChunks = 400

type dashboardData struct {
	Platforms []report.Platform
	Builders  []builderRow
	Jobs      []report.JobSummary
}

// builderRow is a builder with the tasks it is building.
type builderRow struct {
	report.Builder
	Building []report.BuildingTask
}

func (s *Server) builderRows(r *http.Request) ([]builderRow, error) {
	bs, err := report.ListBuilders(r.Context(), s.readDB(r))
	if err != nil {
		return nil, err
	}
	building, err := report.BuildingTasks(r.Context(), s.readDB(r))
	if err != nil {
		return nil, err
	}
	rows := make([]builderRow, len(bs))
	for i, b := range bs {
		rows[i].Builder = b
		for _, t := range building {
			if t.Builder == b.Name {
				rows[i].Building = append(rows[i].Building, t)
			}
		}
	}
	return rows, nil
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	var d dashboardData
	var err error
	if d.Platforms, err = report.ListPlatforms(r.Context(), s.readDB(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	if d.Builders, err = s.builderRows(r); err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := report.ListJobs(r.Context(), s.readDB(r), report.Filter{Limit: 15})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Jobs = list.Jobs
	s.render(w, r, http.StatusOK, "dashboard", "Dashboard", "dashboard", d)
}

// jobFilter reads the job list's filters from the query string (the same
// for the page and /api/jobs); since is back from now. Its errors are the
// client's (errBadRequest).
func jobFilter(q url.Values, now time.Time) (report.Filter, error) {
	f := report.Filter{Submitter: q.Get("submitter"), Bucket: q.Get("bucket"), Platform: q.Get("platform")}
	for _, st := range q["status"] {
		if st != "" {
			f.Status = append(f.Status, st)
		}
	}
	for _, st := range f.Status {
		if _, err := task.ParseJobStatus(st); err != nil {
			return f, fmt.Errorf("%w: %w", err, errBadRequest)
		}
	}
	if v := q.Get("since"); v != "" {
		// Dates are midnight UTC: the pages show times in UTC.
		t, err := report.ParseSince(v, now.UTC())
		if err != nil {
			return f, fmt.Errorf("since %q: %v: %w", v, err, errBadRequest)
		}
		f.Since = t
	}
	for _, p := range []struct {
		name string
		to   *int64
	}{{"before", &f.Before}, {"limit", nil}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return f, fmt.Errorf("%s %q is not a number: %w", p.name, v, errBadRequest)
		}
		if p.to != nil {
			*p.to = n
		} else {
			f.Limit = int(min(n, report.MaxLimit))
		}
	}
	return f, nil
}

// jobsPage is the address of a page of the job list with the filters of q:
// the jobs before a job id, or the first page for 0.
func jobsPage(q url.Values, before int64) string {
	v := url.Values{}
	for k, vs := range q {
		if k != "before" {
			v[k] = vs
		}
	}
	if before > 0 {
		v.Set("before", strconv.FormatInt(before, 10))
	}
	if len(v) == 0 {
		return "/jobs"
	}
	return "/jobs?" + v.Encode()
}

type jobListData struct {
	List      report.JobList
	Q         url.Values
	Statuses  []task.JobStatus
	Platforms []report.Platform
	Next      string // URL of the next (older) page, "" on the last
	First     string // URL of the first page when not on it
}

func (s *Server) jobList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := jobFilter(q, time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := jobListData{Q: q, Statuses: task.JobStatuses()}
	if d.List, err = report.ListJobs(r.Context(), s.readDB(r), f); err != nil {
		s.fail(w, r, err)
		return
	}
	if d.Platforms, err = report.ListPlatforms(r.Context(), s.readDB(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	if d.List.NextBefore > 0 {
		d.Next = jobsPage(q, d.List.NextBefore)
	}
	if f.Before > 0 {
		d.First = jobsPage(q, 0)
	}
	s.render(w, r, http.StatusOK, "jobs", "Jobs", "jobs", d)
}

// liveLog is the log of a building attempt on the job and task pages: the
// last chunks, then followed live from Seq.
type liveLog struct {
	Task     int64
	Platform string
	Attempt  int
	Text     string
	Seq      int // last seq shown, -1 for none
	Earlier  bool
}

func (s *Server) liveLog(r *http.Request, t report.Task, attempt int) (liveLog, error) {
	chunks, more, err := report.LogLast(r.Context(), s.readDB(r), t.ID, attempt, logChunks)
	if err != nil {
		return liveLog{}, err
	}
	l := liveLog{Task: t.ID, Platform: t.Platform, Attempt: attempt, Seq: -1, Earlier: more}
	var b strings.Builder
	for _, c := range chunks {
		b.WriteString(c.Data)
		l.Seq = c.Seq
	}
	l.Text = termtext.Plain(b.String())
	return l, nil
}

type jobData struct {
	Job  *report.Job
	Logs []liveLog
	// Tails are the last lines of the logs of the failed tasks.
	Tails []logTail
	// Waiting are the job's pending tasks with why they wait and when
	// they should build (what kiln queue says), and its building tasks
	// with when they should end.
	Waiting []waitLine
}

// waitLine is what the job page says of a pending or building task's
// place in line and estimates (report.Task.Why, report.ETA.Estimate).
type waitLine struct {
	Task     int64
	Platform string
	Status   task.Status
	Text     string
}

// tailLines is how many last lines of a failed task's log the job page
// shows.
const tailLines = 15

// logTail is the end of the log of a failed task's last attempt.
type logTail struct {
	Task     int64
	Platform string
	Attempt  int
	Text     string
}

// failed says whether a task's status is a failure whose log is worth a
// look (not a cancellation or a skip).
func failed(st task.Status) bool {
	return st == task.Failed || st == task.TimedOut
}

func (s *Server) loadJob(r *http.Request, id int64) (*jobData, error) {
	j, err := report.GetJob(r.Context(), s.readDB(r), id)
	if err != nil {
		return nil, err
	}
	d := &jobData{Job: j}
	for _, t := range j.Tasks {
		if t.Status != "building" {
			continue
		}
		l, err := s.liveLog(r, t, t.Attempt)
		if err != nil {
			return nil, err
		}
		d.Logs = append(d.Logs, l)
	}
	for _, t := range j.Tasks {
		if !failed(t.Status) || t.Attempt == 0 {
			continue
		}
		lines, err := report.LogTail(r.Context(), s.readDB(r), t.ID, t.Attempt, tailLines)
		if err != nil {
			return nil, err
		}
		d.Tails = append(d.Tails, logTail{Task: t.ID, Platform: t.Platform, Attempt: t.Attempt,
			Text: termtext.Plain(strings.Join(lines, "\n"))})
	}
	for _, t := range j.Tasks {
		text := t.Why
		if t.Status == task.Building {
			text = t.ETA.Estimate(t.Status)
		}
		if text != "" {
			d.Waiting = append(d.Waiting, waitLine{Task: t.ID, Platform: t.Platform, Status: t.Status, Text: text})
		}
	}
	return d, nil
}

func (s *Server) jobPage(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d, err := s.loadJob(r, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "job", fmt.Sprintf("Job %d", id), "jobs", d)
}

type taskData struct {
	Task *report.Task
	Log  liveLog
	// Viewed is the attempt whose log is shown; Live is true while it is
	// the current one and still building.
	Viewed int
	Live   bool
	// Before, Error and After split the log of a failed attempt at its
	// first line that reads like an error; the page opens there.
	Before, Error, After string
}

// errorLine finds a line that reports an error in build output.
var errorLine = regexp.MustCompile(`(?im)^.*(\berror\b|\bfailed\b|\bfatal\b|^E: |Bad exit status).*$`)

// splitAtError splits log text at its first error line; Error is "" when
// there is none.
func splitAtError(text string) (before, line, after string) {
	loc := errorLine.FindStringIndex(text)
	if loc == nil {
		return text, "", ""
	}
	return text[:loc[0]], text[loc[0]:loc[1]], text[loc[1]:]
}

// taskAttempt reads the task named in the path and the attempt asked for
// with ?attempt=N (the current one without it).
func (s *Server) taskAttempt(r *http.Request) (*report.Task, int, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return nil, 0, err
	}
	t, err := report.GetTask(r.Context(), s.readDB(r), id)
	if err != nil {
		return nil, 0, err
	}
	attempt := t.Attempt
	if v := r.URL.Query().Get("attempt"); v != "" {
		if attempt, err = strconv.Atoi(v); err != nil || attempt < 1 || attempt > t.Attempt {
			return nil, 0, fmt.Errorf("task %d has no attempt %q: %w", id, v, errBadRequest)
		}
	}
	return t, attempt, nil
}

func (s *Server) taskPage(w http.ResponseWriter, r *http.Request) {
	t, viewed, err := s.taskAttempt(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := taskData{Task: t, Viewed: viewed}
	d.Live = d.Viewed == t.Attempt && t.Status == task.Building
	if d.Viewed > 0 {
		if d.Log, err = s.liveLog(r, *t, d.Viewed); err != nil {
			s.fail(w, r, err)
			return
		}
		if d.Viewed == t.Attempt && failed(t.Status) {
			d.Before, d.Error, d.After = splitAtError(d.Log.Text)
		}
	}
	s.render(w, r, http.StatusOK, "task", fmt.Sprintf("Task %d", t.ID), "jobs", d)
}

// rawLog writes the whole log of an attempt (the current one unless
// ?attempt=N) as plain text.
func (s *Server) rawLog(w http.ResponseWriter, r *http.Request) {
	t, attempt, err := s.taskAttempt(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	chunks, err := report.LogAfter(r.Context(), s.readDB(r), t.ID, attempt, -1)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": fmt.Sprintf("task-%d-attempt-%d.log", t.ID, attempt)}))
	for _, c := range chunks {
		if _, err := w.Write([]byte(c.Data)); err != nil {
			return
		}
	}
}

// download streams an artifact's blob, checking its digest on the way.
func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := report.GetArtifact(r.Context(), s.readDB(r), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if a.FileName != r.PathValue("name") {
		http.Redirect(w, r, artifactURL(*a), http.StatusMovedPermanently)
		return
	}
	if a.SHA256 == nil {
		s.render(w, r, http.StatusGone, "error", "Gone", "", fmt.Sprintf("The content of %s was pruned by retention.", a.FileName))
		return
	}
	sum, err := blob.ParseSum(*a.SHA256)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.FileName}))
	h.Set("Content-Length", strconv.FormatInt(a.Size, 10))
	h.Set("X-Checksum-Sha256", *a.SHA256)
	h.Set("ETag", `"sha256:`+*a.SHA256+`"`)
	h.Set("Cache-Control", "private, max-age=86400, immutable")
	if r.Header.Get("If-None-Match") == h.Get("ETag") {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if _, err := blob.WriteTo(r.Context(), s.readDB(r), sum, w); err != nil {
		// Headers are gone: break the connection so the client sees a
		// truncated download rather than a wrong file.
		s.log.Error("streaming artifact", "artifact", id, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// artifactURL is where an artifact downloads from; the file name at the
// end makes browsers and wget save it under its own name.
func artifactURL(a report.Artifact) string {
	return fmt.Sprintf("/artifacts/%d/%s", a.ID, url.PathEscape(a.FileName))
}

func (s *Server) builderList(w http.ResponseWriter, r *http.Request) {
	rows, err := s.builderRows(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "builders", "Builders", "builders", rows)
}

// BuilderPage is a builder with its recent attempts (page and API).
type BuilderPage struct {
	Builder  report.Builder          `json:"builder"`
	Attempts []report.BuilderAttempt `json:"attempts"`
}

func (s *Server) loadBuilder(r *http.Request) (*BuilderPage, error) {
	name := r.PathValue("name")
	bs, err := report.ListBuilders(r.Context(), s.readDB(r))
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(bs, func(b report.Builder) bool { return b.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("builder %q does not exist: %w", name, report.ErrNotFound)
	}
	p := &BuilderPage{Builder: bs[i]}
	if p.Attempts, err = report.BuilderAttempts(r.Context(), s.readDB(r), name, 50); err != nil {
		return nil, err
	}
	return p, nil
}

func (s *Server) builderPage(w http.ResponseWriter, r *http.Request) {
	p, err := s.loadBuilder(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "builder", "Builder "+p.Builder.Name, "builders", p)
}

func (s *Server) platformList(w http.ResponseWriter, r *http.Request) {
	ps, err := report.ListPlatforms(r.Context(), s.readDB(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "platforms", "Platforms", "platforms", ps)
}

// queuePage shows every platform's queue with why it does not move, and
// the pending tasks with their place in line and why they wait (what kiln
// queue prints).
func (s *Server) queuePage(w http.ResponseWriter, r *http.Request) {
	q, err := report.GetQueue(r.Context(), s.readDB(r), report.QueueFilter{Submitter: r.URL.Query().Get("submitter"), Platform: r.URL.Query().Get("platform")})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "queue", "Queue", "queue", q)
}

// notFound is the styled page for an address that names nothing.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusNotFound, "error", "Not found", "", "There is no page at this address.")
}
