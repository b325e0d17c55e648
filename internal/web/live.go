package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/termtext"
)

// Live updates. One connection per server LISTENs on the channels the
// schema's triggers notify (kiln_job, kiln_task, kiln_log) and wakes the
// server-sent-event streams a notification concerns. A woken stream reads
// the current state from the database and sends what changed, so
// notifications that arrive in a burst cost one read, and nothing is lost
// when the listener reconnects: it wakes every stream afterwards.
//
// Log batches notify only while their task is watched (report.WatchLogs):
// the hub counts the streams that follow each task's log, watches a task
// as soon as its first stream follows it, and renews the watches of all
// followed tasks every report.WatchRenew.

// channels are the NOTIFY channels the live updates follow.
var channels = []string{report.ChannelJob, report.ChannelTask, report.ChannelLog}

// notice is a parsed notification; zero fields were not in the payload.
type notice struct {
	Channel string `json:"-"`
	Job     int64  `json:"job"`
	Task    int64  `json:"task"`
}

type subscriber struct {
	wake  chan struct{}
	match func(notice) bool
}

type hub struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	watches map[int64]int // task id: the streams following its log
	// renewEvery is how often the watches are renewed (report.WatchRenew).
	renewEvery time.Duration
	started    bool
	connected  bool
	lastErr    error
}

func newHub(pool *pgxpool.Pool, log *slog.Logger) *hub {
	return &hub{pool: pool, log: log, subs: map[*subscriber]struct{}{}, watches: map[int64]int{}, renewEvery: report.WatchRenew}
}

// watch counts one more stream following the logs of tasks and watches at
// once those no stream followed yet. A failure is logged: the renewal
// tries again, and the stream still reads on every task change.
func (h *hub) watch(ctx context.Context, tasks ...int64) {
	var fresh []int64
	h.mu.Lock()
	for _, t := range tasks {
		if h.watches[t] == 0 {
			fresh = append(fresh, t)
		}
		h.watches[t]++
	}
	h.mu.Unlock()
	if err := h.watchLogs(ctx, fresh); err != nil && ctx.Err() == nil {
		h.log.Warn("live updates: watching logs", "err", err)
	}
}

// watchLogs watches (or renews) the logs of tasks, in calls within
// kiln.watch_logs' limit. A call that fails does not keep the others from
// being made; their errors are joined.
func (h *hub) watchLogs(ctx context.Context, tasks []int64) error {
	var errs []error
	for len(tasks) > 0 && ctx.Err() == nil {
		n := min(len(tasks), report.WatchMax)
		if err := report.WatchLogs(ctx, h.pool, tasks[:n]); err != nil {
			errs = append(errs, fmt.Errorf("watching the logs of %d tasks from %d: %w", n, tasks[0], err))
		}
		tasks = tasks[n:]
	}
	return errors.Join(errs...)
}

// unwatch counts one stream fewer following the logs of tasks. The
// database's watch runs out by itself within a minute.
func (h *hub) unwatch(tasks ...int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range tasks {
		if h.watches[t]--; h.watches[t] <= 0 {
			delete(h.watches, t)
		}
	}
}

// renewWatches renews the watches of every followed task each renewEvery
// until ctx ends.
func (h *hub) renewWatches(ctx context.Context) {
	tick := time.NewTicker(h.renewEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h.mu.Lock()
		tasks := make([]int64, 0, len(h.watches))
		for t := range h.watches {
			tasks = append(tasks, t)
		}
		h.mu.Unlock()
		if err := h.watchLogs(ctx, tasks); err != nil && ctx.Err() == nil {
			h.log.Warn("live updates: renewing log watches", "err", err)
		}
	}
}

// subscribe registers a stream; match runs on the listener's goroutine and
// must be quick.
func (h *hub) subscribe(match func(notice) bool) *subscriber {
	s := &subscriber{wake: make(chan struct{}, 1), match: match}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

func (h *hub) dispatch(n notice, all bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if all || s.match(n) {
			select {
			case s.wake <- struct{}{}:
			default: // already woken; it will read everything new
			}
		}
	}
}

func (h *hub) healthy() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started && !h.connected {
		if h.lastErr != nil {
			return fmt.Errorf("not listening: %w", h.lastErr)
		}
		return errors.New("not listening yet")
	}
	return nil
}

func (h *hub) run(ctx context.Context) {
	h.mu.Lock()
	h.started = true
	h.mu.Unlock()
	go h.renewWatches(ctx)
	wait := time.Second
	for ctx.Err() == nil {
		err := h.listen(ctx)
		h.mu.Lock()
		h.connected, h.lastErr = false, err
		h.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("live updates: listener lost, reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (h *hub) listen(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, h.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return fmt.Errorf("LISTEN %s: %w", ch, err)
		}
	}
	h.mu.Lock()
	h.connected = true
	h.mu.Unlock()
	// Whatever happened while nobody listened: every stream re-reads.
	h.dispatch(notice{}, true)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("waiting for notifications: %w", err)
		}
		var p notice
		if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
			h.log.Warn("live updates: unreadable notification", "channel", n.Channel, "payload", n.Payload)
			continue
		}
		p.Channel = n.Channel
		h.dispatch(p, false)
	}
}

// stream is one server-sent-event response.
type stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startStream(w http.ResponseWriter) *stream {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's write timeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &stream{w: w, rc: rc}
}

// send writes one event whose data is v as JSON: one line, whatever v
// holds (a carriage return or newline in a log or a note cannot end the
// event early).
func (s *stream) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	return nil
}

func (s *stream) flush() error { return s.rc.Flush() }

// wait blocks until the subscriber is woken (true) or the request ends
// (false), keeping the connection alive meanwhile.
func (s *stream) wait(ctx context.Context, sub *subscriber) bool {
	keepalive := time.NewTicker(20 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-sub.wake:
			return true
		case <-keepalive.C:
			if _, err := fmt.Fprint(s.w, ": keepalive\n\n"); err != nil || s.flush() != nil {
				return false
			}
		}
	}
}

// logKey names the log of one attempt of a task.
type logKey struct {
	task    int64
	attempt int
}

// logEvent is the data of a "log" event: one stored batch of lines.
type logEvent struct {
	Task     int64  `json:"task"`
	Attempt  int    `json:"attempt"`
	Seq      int    `json:"seq"`
	Platform string `json:"platform"`
	Text     string `json:"text"`
}

// statusEvent is the data of a "status" event.
type statusEvent struct {
	Status string `json:"status"`
	Final  bool   `json:"final"`
}

// parseFollow reads ?log=TASK.ATTEMPT.SEQ parameters: the logs a page
// already shows, up to which batch (-1 for none yet). Values that are not
// three numbers in range (a task id and an attempt from 1, a seq from -1)
// are left out.
func parseFollow(vals []string) map[logKey]int {
	out := map[logKey]int{}
	for _, v := range vals {
		parts := strings.Split(v, ".")
		if len(parts) != 3 {
			continue
		}
		t, err1 := strconv.ParseInt(parts[0], 10, 64)
		a, err2 := strconv.Atoi(parts[1])
		q, err3 := strconv.Atoi(parts[2])
		if err1 == nil && err2 == nil && err3 == nil && t > 0 && a > 0 && q >= -1 {
			out[logKey{t, a}] = q
		}
	}
	return out
}

// jobEvents streams a job's changes: "status" (the job's status), "tasks"
// (the task table, rendered as on the page), "log" (new log batches of its
// building tasks) and "end" once the job is final.
func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	var mu sync.Mutex
	tasks := map[int64]bool{}
	sub := s.hub.subscribe(func(n notice) bool {
		if n.Job == id {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		return n.Channel == report.ChannelLog && tasks[n.Task]
	})
	defer s.hub.unsubscribe(sub)

	v := view{Person: s.person(r), Login: s.cfg.Keytab != nil, CSRF: s.csrfToken(w, r)}
	follow := parseFollow(r.URL.Query()["log"])
	watching := map[int64]bool{} // the tasks whose logs this stream watches
	defer func() {
		for t := range watching {
			s.hub.unwatch(t)
		}
	}()
	var lastStatus task.JobStatus
	var lastTasks string
	var st *stream
	for {
		j, err := report.GetJob(ctx, s.db, id)
		if err != nil {
			if st == nil {
				s.fail(w, r, err)
			}
			return
		}
		if st == nil {
			st = startStream(w)
		}
		mu.Lock()
		for _, t := range j.Tasks {
			tasks[t.ID] = true
		}
		mu.Unlock()
		v.Data = &jobData{Job: j}
		html, err := s.fragment("job", "tasks", v)
		if err != nil {
			s.log.Error("live job", "err", err)
			return
		}
		if html != lastTasks {
			if st.send("tasks", html) != nil {
				return
			}
			lastTasks = html
		}
		if j.Status != lastStatus {
			if st.send("status", statusEvent{string(j.Status), j.Status.Final()}) != nil {
				return
			}
			lastStatus = j.Status
		}
		current := map[logKey]report.Task{}
		for _, t := range j.Tasks {
			if t.Attempt > 0 {
				current[logKey{t.ID, t.Attempt}] = t
			}
			if t.Status == task.Building {
				if _, ok := follow[logKey{t.ID, t.Attempt}]; !ok {
					follow[logKey{t.ID, t.Attempt}] = -1
				}
			}
		}
		for k := range follow {
			if _, ok := current[k]; !ok {
				delete(follow, k) // a stale attempt, or not this job's
			}
		}
		s.watchFollowed(ctx, follow, watching)
		for k, seq := range follow {
			t := current[k]
			if follow[k], err = s.sendLog(ctx, st, t, k.attempt, seq); err != nil {
				return
			}
			if t.Status != task.Building {
				delete(follow, k) // finished: its last lines are out
			}
		}
		if j.Status.Final() {
			_ = st.send("end", statusEvent{string(j.Status), true})
			_ = st.flush()
			return
		}
		if st.flush() != nil || !st.wait(ctx, sub) {
			return
		}
	}
}

// watchFollowed makes the tasks a job's stream watches (watching) those
// whose logs it follows.
func (s *Server) watchFollowed(ctx context.Context, follow map[logKey]int, watching map[int64]bool) {
	want := map[int64]bool{}
	for k := range follow {
		want[k.task] = true
	}
	for t := range watching {
		if !want[t] {
			s.hub.unwatch(t)
			delete(watching, t)
		}
	}
	var fresh []int64
	for t := range want {
		if !watching[t] {
			fresh = append(fresh, t)
			watching[t] = true
		}
	}
	if len(fresh) > 0 {
		s.hub.watch(ctx, fresh...)
	}
}

// sendLog sends the log batches of an attempt after seq and returns the
// last seq sent.
func (s *Server) sendLog(ctx context.Context, st *stream, t report.Task, attempt, seq int) (int, error) {
	chunks, err := report.LogAfter(ctx, s.db, t.ID, attempt, seq)
	if err != nil {
		return seq, err
	}
	for _, c := range chunks {
		if err := st.send("log", logEvent{Task: t.ID, Attempt: attempt, Seq: c.Seq, Platform: t.Platform, Text: termtext.Plain(c.Data)}); err != nil {
			return seq, err
		}
		seq = c.Seq
	}
	return seq, nil
}

// taskEvents streams one attempt's log (?attempt=N&after=SEQ): "log",
// "status", "reload" when a new attempt starts, and "end" once the task is
// final.
func (s *Server) taskEvents(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	attempt, err1 := strconv.Atoi(q.Get("attempt"))
	seq, err2 := strconv.Atoi(q.Get("after"))
	if err1 != nil || err2 != nil {
		s.fail(w, r, fmt.Errorf("need ?attempt=N&after=SEQ: %w", errBadRequest))
		return
	}
	ctx := r.Context()
	sub := s.hub.subscribe(func(n notice) bool { return n.Task == id })
	defer s.hub.unsubscribe(sub)
	s.hub.watch(ctx, id)
	defer s.hub.unwatch(id)
	var st *stream
	var lastStatus task.Status
	for {
		t, err := report.GetTask(ctx, s.db, id)
		if err != nil {
			if st == nil {
				s.fail(w, r, err)
			}
			return
		}
		if st == nil {
			st = startStream(w)
		}
		if seq, err = s.sendLog(ctx, st, *t, attempt, seq); err != nil {
			return
		}
		if t.Attempt != attempt {
			_ = st.send("reload", statusEvent{string(t.Status), t.Status.Final()})
			_ = st.flush()
			return
		}
		if t.Status != lastStatus {
			if st.send("status", statusEvent{string(t.Status), t.Status.Final()}) != nil {
				return
			}
			lastStatus = t.Status
		}
		if t.Status.Final() {
			_ = st.send("end", statusEvent{string(t.Status), true})
			_ = st.flush()
			return
		}
		if st.flush() != nil || !st.wait(ctx, sub) {
			return
		}
	}
}

// farmPace is the least time between two "changed" events of farmEvents:
// a busy farm changes many times a second, and each event makes every open
// list page load itself again.
const farmPace = 2 * time.Second

// farmEvents streams "changed" whenever a job or task of the farm changes,
// at most once per farmPace. The pages that list the farm (dashboard,
// queue, jobs, builders) follow it and load themselves again, so an open
// page shows what a fresh load shows.
func (s *Server) farmEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sub := s.hub.subscribe(func(n notice) bool { return n.Channel != report.ChannelLog })
	defer s.hub.unsubscribe(sub)
	st := startStream(w)
	if st.flush() != nil {
		return
	}
	for n := 1; st.wait(ctx, sub); n++ {
		if st.send("changed", n) != nil || st.flush() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(farmPace):
		}
	}
}
