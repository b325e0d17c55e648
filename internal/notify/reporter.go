package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/riverjob"
)

// Reporter delivers the reports of ended jobs; it implements
// riverjob.Reporter for kiln-reporter's River client.
type Reporter struct {
	db   *pgxpool.Pool
	smtp SMTP
	http *http.Client
	log  *slog.Logger
	// stage is whether kiln.attempt has failure_stage (a later migration
	// adds it; reports name the stage where it is there).
	stage bool
	// afterSend runs, in tests, once a recipient accepted a report and
	// before that is recorded: a crash there is the at-least-once window.
	afterSend func() error
}

// Config is what a Reporter is made of.
type Config struct {
	DB   *pgxpool.Pool
	SMTP SMTP
	// HTTP posts the webhooks; nil: a client with a 30-second timeout that
	// follows no redirect.
	HTTP *http.Client
	Log  *slog.Logger
}

// New returns a Reporter. It checks the SMTP settings and asks the schema
// whether attempts record their failure stage.
func New(ctx context.Context, c Config) (*Reporter, error) {
	if err := c.SMTP.Check(); err != nil {
		return nil, err
	}
	r := &Reporter{db: c.DB, smtp: c.SMTP, http: c.HTTP, log: c.Log}
	if r.http == nil {
		// Redirects are not followed: a webhook goes to the address its
		// owner gave, and a 3xx is an answer (tried again later).
		r.http = &http.Client{Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if err := c.DB.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
		WHERE attrelid = 'kiln.attempt'::regclass AND attname = 'failure_stage' AND NOT attisdropped)`).Scan(&r.stage); err != nil {
		return nil, fmt.Errorf("reading kiln.attempt's columns: %w", err)
	}
	return r, nil
}

// delivery is one pending kiln.report_delivery row.
type delivery struct {
	id      int64
	target  string
	webhook *int64
}

// Deliver implements riverjob.Reporter: it sends what is still pending for
// args and records each outcome in the transaction that locked the rows, so
// two River jobs never send the same delivery at once and a recorded one is
// never sent again. It returns an error while something is left to try.
func (r *Reporter) Deliver(ctx context.Context, args riverjob.ReportArgs) error {
	if args.Channel != riverjob.ReportMail && args.Channel != riverjob.ReportWebhook {
		return fmt.Errorf("report River job of job %d: unknown channel %q", args.JobID, args.Channel)
	}
	tx, err := r.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("delivering the report of job %d: %w", args.JobID, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	rows, err := tx.Query(ctx, `SELECT id, target, webhook_id FROM kiln.report_delivery
		WHERE job_id = $1 AND channel = $2 AND status = 'pending' AND ($3 = 0 OR webhook_id = $3 OR target = $3::text)
		ORDER BY target FOR UPDATE SKIP LOCKED`, args.JobID, args.Channel, args.WebhookID)
	if err != nil {
		return fmt.Errorf("reading the deliveries of job %d: %w", args.JobID, err)
	}
	ds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (delivery, error) {
		var d delivery
		return d, row.Scan(&d.id, &d.target, &d.webhook)
	})
	if err != nil {
		return fmt.Errorf("reading the deliveries of job %d: %w", args.JobID, err)
	}
	if len(ds) == 0 {
		return nil // all recorded (a retry after success), or another worker holds them
	}
	rep, err := load(ctx, tx, args.JobID, r.stage)
	if err != nil {
		return err
	}
	var left error
	if args.Channel == riverjob.ReportMail {
		left, err = r.mail(ctx, tx, rep, ds)
	} else {
		left, err = r.webhooks(ctx, tx, rep, ds)
	}
	if err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("recording the deliveries of job %d: %w", args.JobID, err)
	}
	return left
}

// record writes one delivery's outcome: sent, failed (for good), or still
// pending with why.
func record(ctx context.Context, tx pgx.Tx, id int64, status, msgID string, why error) error {
	var reason *string
	if why != nil {
		s := why.Error()
		reason = &s
	}
	_, err := tx.Exec(ctx, `UPDATE kiln.report_delivery SET status = $2, tries = tries + 1, last_error = $3,
		message_id = coalesce(nullif($4, ''), message_id), sent_at = CASE WHEN $2 = 'sent' THEN now() END
		WHERE id = $1`, id, status, reason, msgID)
	if err != nil {
		return fmt.Errorf("recording delivery %d: %w", id, err)
	}
	return nil
}

func (r *Reporter) mail(ctx context.Context, tx pgx.Tx, rep *Report, ds []delivery) (error, error) {
	var to []string
	var ok []delivery
	for _, d := range ds {
		if err := CheckAddress(d.target); err != nil {
			if err := record(ctx, tx, d.id, "failed", "", err); err != nil {
				return nil, err
			}
			continue
		}
		to = append(to, d.target)
		ok = append(ok, d)
	}
	if len(to) == 0 {
		return nil, nil
	}
	msg, err := rep.Message(r.smtp.From, to, time.Now())
	if err != nil {
		return nil, err
	}
	id := messageID(rep.Job, r.smtp.From)
	refused, sendErr := r.smtp.send(to, msg)
	if sendErr != nil {
		for _, d := range ok {
			if err := record(ctx, tx, d.id, "pending", "", sendErr); err != nil {
				return nil, err
			}
		}
		r.log.Warn("report mail not sent; trying again later", "job", rep.Job, "err", sendErr)
		return sendErr, nil
	}
	if r.afterSend != nil {
		if err := r.afterSend(); err != nil {
			return nil, err
		}
	}
	why := map[string]recipientError{}
	for _, f := range refused {
		why[f.addr] = f
	}
	var left error
	for _, d := range ok {
		status, reason := "sent", error(nil)
		if f, refused := why[d.target]; refused {
			status, reason = "pending", f.err
			if f.permanent {
				status = "failed"
			} else {
				left = errors.Join(left, fmt.Errorf("mail to %s: %w", d.target, f.err))
			}
		}
		if err := record(ctx, tx, d.id, status, id, reason); err != nil {
			return nil, err
		}
	}
	r.log.Info("report mailed", "job", rep.Job, "status", rep.Status, "recipients", len(ok)-len(refused), "message_id", id)
	return left, nil
}

func (r *Reporter) webhooks(ctx context.Context, tx pgx.Tx, rep *Report, ds []delivery) (error, error) {
	var left error
	for _, d := range ds {
		if d.webhook == nil {
			if err := record(ctx, tx, d.id, "failed", "", errors.New("the webhook was removed")); err != nil {
				return nil, err
			}
			continue
		}
		var url, secret string
		err := tx.QueryRow(ctx, `SELECT w.url, s.secret FROM kiln.report_webhook w
			JOIN kiln.report_webhook_secret s ON s.webhook_id = w.id WHERE w.id = $1`, *d.webhook).Scan(&url, &secret)
		if err != nil {
			return nil, fmt.Errorf("reading webhook %d: %w", *d.webhook, err)
		}
		postErr := post(ctx, r.http, url, secret, d.id, rep)
		status := "sent"
		var perm permanentError
		switch {
		case errors.As(postErr, &perm):
			status = "failed"
		case postErr != nil:
			status = "pending"
			left = errors.Join(left, postErr)
		default:
			if r.afterSend != nil {
				if err := r.afterSend(); err != nil {
					return nil, err
				}
			}
		}
		if err := record(ctx, tx, d.id, status, strconv.FormatInt(d.id, 10), postErr); err != nil {
			return nil, err
		}
		r.log.Info("report webhook", "job", rep.Job, "webhook", *d.webhook, "outcome", status, "err", postErr)
	}
	return left, nil
}
