package riverjob

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
)

// QueueReport is the queue of report River jobs, worked by kiln-reporter.
const QueueReport = "report"

// KindReport is the kind of report River jobs. kiln.job_request_reports
// (schema/current/14_reports.sql) inserts them in SQL with this kind, this
// queue and ReportMaxAttempts, in the transaction that ends the job.
const KindReport = "report"

// ReportMaxAttempts is how often a report River job is tried before River
// gives up: with the default backoff (DefaultReportRetryMin doubling up to
// DefaultReportRetryMax) about a day of a mail server or receiver down.
const ReportMaxAttempts = 25

// The report channels a ReportArgs names.
const (
	ReportMail    = "mail"
	ReportWebhook = "webhook"
)

// ReportArgs asks kiln-reporter to deliver the report of a job that ended:
// the mail (one message to every pending mail recipient) or one webhook.
type ReportArgs struct {
	JobID     int64  `json:"job_id"`
	Channel   string `json:"channel"`
	WebhookID int64  `json:"webhook_id,omitempty"`
}

// Kind implements river.JobArgs.
func (ReportArgs) Kind() string { return KindReport }

// InsertOpts implements river.JobArgsWithInsertOpts (for tests and repairs
// that insert one from Go; the trigger uses the same values).
func (ReportArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueReport, MaxAttempts: ReportMaxAttempts}
}

// Reporter delivers reports (internal/notify implements it).
type Reporter interface {
	// Deliver sends what is still pending for args and records it. Its
	// error is the River job's outcome: non-nil retries it later.
	Deliver(ctx context.Context, args ReportArgs) error
}

// Defaults of ReporterConfig.
const (
	DefaultReportRetryMin = 30 * time.Second
	DefaultReportRetryMax = time.Hour
	DefaultReportWorkers  = 4
)

// ReportWorker works report River jobs, retrying with exponential backoff.
type ReportWorker struct {
	river.WorkerDefaults[ReportArgs]
	Reporter Reporter
	// RetryMin is the wait after the first failure, doubled after each
	// further one up to RetryMax.
	RetryMin, RetryMax time.Duration
}

// Work implements river.Worker.
func (w *ReportWorker) Work(ctx context.Context, job *river.Job[ReportArgs]) error {
	return w.Reporter.Deliver(ctx, job.Args)
}

// NextRetry implements river.Worker: RetryMin, doubled per failed attempt,
// at most RetryMax.
func (w *ReportWorker) NextRetry(job *river.Job[ReportArgs]) time.Time {
	wait := w.RetryMin
	for i := 1; i < job.Attempt && wait < w.RetryMax; i++ {
		wait *= 2
	}
	return time.Now().Add(min(wait, w.RetryMax))
}

// Timeout implements river.Worker: one delivery is one SMTP transaction or
// one POST.
func (w *ReportWorker) Timeout(*river.Job[ReportArgs]) time.Duration { return 5 * time.Minute }

// ReporterConfig is what kiln-reporter's River client is made of.
type ReporterConfig struct {
	Reporter Reporter
	// Workers is how many deliveries run at once (DefaultReportWorkers).
	Workers int
	// RetryMin and RetryMax bound the backoff (DefaultReportRetryMin,
	// DefaultReportRetryMax).
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
}

// NewReporterClient returns kiln-reporter's River client: it works queue
// report. Retried River jobs become available again through River's
// scheduler, which runs on the leader (kiln-janitor).
func NewReporterClient(db *pgxpool.Pool, c ReporterConfig) (*Client, error) {
	workers := river.NewWorkers()
	w := &ReportWorker{Reporter: c.Reporter, RetryMin: cmp.Or(c.RetryMin, DefaultReportRetryMin), RetryMax: cmp.Or(c.RetryMax, DefaultReportRetryMax)}
	if w.RetryMax < w.RetryMin {
		return nil, fmt.Errorf("report retry: the longest wait %s is shorter than the first %s", w.RetryMax, w.RetryMin)
	}
	if err := river.AddWorkerSafely(workers, w); err != nil {
		return nil, fmt.Errorf("registering the report worker: %w", err)
	}
	cfg := config(c.Logger)
	cfg.Queues = map[string]river.QueueConfig{QueueReport: {MaxWorkers: cmp.Or(c.Workers, DefaultReportWorkers)}}
	cfg.Workers = workers
	return newClient(db, cfg, "reporter")
}
