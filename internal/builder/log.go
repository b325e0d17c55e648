package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/task"
)

// liveLog is an attempt's build log. Output goes to a local file (stored as
// the build.log artifact at the end) and into kiln.log_chunk, whose trigger
// sends NOTIFY kiln_log. Batching adapts: a whole line written when nothing
// was stored for LogFlush is stored at once; lines written sooner after a
// store wait until LogFlush has passed since it and go in one batch. So a
// follower sees a quiet build's line within a round trip, and a build that
// prints without pause costs at most one row and NOTIFY per LogFlush.
// Past the limit, output is dropped after a visible note.
type liveLog struct {
	b        *Builder
	task     int64
	attempt  int
	path     string
	file     *os.File
	onFenced func()

	mu         sync.Mutex
	pending    []byte
	accepted   int64 // bytes counted against the limit
	stored     int64 // bytes stored in kiln.log_chunk
	truncated  bool
	isFenced   bool
	seq        int
	partialAge int // flush rounds an unterminated line has waited
	// resend is a batch whose store failed without an answer: it may have
	// committed (the connection lost at a failover), so it goes again as
	// it was, under its number, which the database stores once
	// (kiln.task_log_many), before anything after it.
	resend string

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// flushSize is how much pending output is stored at once, without waiting
// for LogFlush to pass since the last store.
const flushSize = 64 << 10

func newLiveLog(b *Builder, task int64, attempt int, path string, onFenced func()) (*liveLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	l := &liveLog{b: b, task: task, attempt: attempt, path: path, file: f, onFenced: onFenced,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go l.flusher()
	return l, nil
}

// Write takes build output; it never fails, so a database outage cannot
// break a build.
func (l *liveLog) Write(p []byte) (int, error) {
	n := len(p)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.truncated || l.isFenced {
		return n, nil
	}
	if room := l.b.cfg.LogLimit - l.accepted; int64(len(p)) > room {
		p = append(p[:room:room], fmt.Sprintf("\n*** kiln: the log reached its limit of %d bytes; later output is dropped ***\n", l.b.cfg.LogLimit)...)
		l.truncated = true
	}
	l.accepted += int64(len(p))
	l.pending = append(l.pending, p...)
	_, _ = l.file.Write(p)
	if len(l.pending) >= flushSize || bytes.IndexByte(p, '\n') >= 0 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return n, nil
}

// flusher stores output when a line is written (kick) or on a tick (an
// unterminated line, a store to retry), at most once per LogFlush unless
// flushSize is pending.
func (l *liveLog) flusher() {
	defer close(l.done)
	t := time.NewTicker(l.b.cfg.LogFlush)
	defer t.Stop()
	var last time.Time // when output was last stored
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		case <-l.kick:
		}
		if wait := time.Until(last.Add(l.b.cfg.LogFlush)); wait > 0 && !l.full() {
			select {
			case <-l.stop:
				return // close stores what is pending
			case <-time.After(wait):
			}
		}
		stored, err := l.flush(context.Background(), false)
		if err != nil {
			l.b.log.Warn("storing log output failed; keeping it for the next round", "task", l.task, "err", err)
		}
		if stored {
			last = time.Now()
		}
	}
}

// full reports whether flushSize is pending.
func (l *liveLog) full() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending) >= flushSize
}

// flush stores the batch to send again, if there is one, else the next
// batch of pending (next); stored says whether a chunk was stored.
func (l *liveLog) flush(ctx context.Context, final bool) (stored bool, err error) {
	l.mu.Lock()
	text := l.resend
	if text == "" {
		text = l.next(final)
	}
	if l.isFenced || text == "" {
		l.mu.Unlock()
		return false, nil
	}
	truncated, seq := l.truncated, l.seq
	l.mu.Unlock()

	// Protocol step 3, with the other slots' batches of the moment: stored
	// only while the attempt is current.
	held, err := l.b.logs.do(ctx, task.Logging{Task: l.task, Attempt: l.attempt, Seq: seq, Text: text, Truncated: truncated})
	if err == nil && !held {
		err = errStale
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case errors.Is(err, errStale):
		l.isFenced = true
		l.pending, l.resend = nil, ""
		go l.onFenced()
		return false, nil
	case err != nil:
		l.resend = text
		return false, err
	}
	l.resend = ""
	l.seq++
	l.stored += int64(len(text))
	return true, nil
}

// next takes the next batch out of pending, as stored text: its whole
// lines (everything when final, or when a line has waited too long or
// grown too long); "" when there is none yet. l.mu is held.
func (l *liveLog) next(final bool) string {
	if len(l.pending) == 0 {
		return ""
	}
	cut := bytes.LastIndexByte(l.pending, '\n') + 1
	if cut < len(l.pending) {
		l.partialAge++
		if final || l.partialAge > 2 || len(l.pending)-cut > 16<<10 {
			cut = len(l.pending)
		}
	}
	if cut == 0 {
		return ""
	}
	data := l.pending[:cut:cut]
	l.pending = l.pending[cut:]
	if len(l.pending) == 0 || l.pending[len(l.pending)-1] == '\n' {
		l.partialAge = 0
	}
	return logText(data)
}

// logText is log output as stored: valid UTF-8 without NULs, ending in a
// newline.
func logText(data []byte) string {
	text := strings.ToValidUTF8(string(data), "\uFFFD")
	text = strings.ReplaceAll(text, "\x00", "\uFFFD")
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return text
}

// closeForFinish stops the flusher and keeps what is left for tail: the
// finish stores it in its own statement. A batch to send again goes
// first, on its own (retrying for a while when the database is away): the
// finish carries one batch, after it.
func (l *liveLog) closeForFinish(ctx context.Context) {
	close(l.stop)
	<-l.done
	l.file.Close()
	ctx = context.WithoutCancel(ctx)
	deadline := time.Now().Add(time.Minute)
	for l.pendingResend() {
		if _, err := l.flush(ctx, true); err != nil {
			if time.Now().After(deadline) {
				l.b.log.Warn("a log batch could not be stored again", "task", l.task, "err", err)
				return
			}
			time.Sleep(2 * time.Second)
		}
	}
}

// pendingResend reports whether a batch waits to be sent again.
func (l *liveLog) pendingResend() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.resend != ""
}

// tail is the output left after closeForFinish, as the next batch of the
// log (nil when nothing is left or the log was fenced off). A batch still
// to send again (the database away for a minute) goes in it, ahead.
func (l *liveLog) tail() *task.LogBatch {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isFenced || (len(l.pending) == 0 && l.resend == "") {
		return nil
	}
	text := l.resend
	if len(l.pending) > 0 {
		text += logText(l.pending)
	}
	return &task.LogBatch{Seq: l.seq, Text: text}
}

// close stops the flusher and stores what is left (retrying for a while
// when the database is away).
func (l *liveLog) close(ctx context.Context) {
	close(l.stop)
	<-l.done
	ctx = context.WithoutCancel(ctx)
	deadline := time.Now().Add(time.Minute)
	for {
		stored, err := l.flush(ctx, true)
		if err == nil && !stored {
			break // nothing left (a batch sent again, then the rest, are stored)
		}
		if err != nil {
			if time.Now().After(deadline) {
				l.b.log.Warn("the end of the log could not be stored", "task", l.task, "err", err)
				break
			}
			time.Sleep(2 * time.Second)
		}
	}
	l.file.Close()
}

// fenced reports whether a log write was refused as stale.
func (l *liveLog) fenced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.isFenced
}

// totals returns the bytes stored and whether the log was truncated.
func (l *liveLog) totals() (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stored, l.truncated
}
