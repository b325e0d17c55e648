package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kiln-build/kiln/internal/format"
)

// Quota is one of the per-person quotas of kiln.quota (docs/quotas.md).
type Quota struct {
	// Column is its column in kiln.quota; with - for _ it is the flag of
	// kiln admin quota set.
	Column string
	// Title is how refusals and listings name it.
	Title string
	// Bytes is true for a size in bytes (set accepts KiB, MiB, GiB, TiB).
	Bytes bool
	// Window is the window it counts over, "hour" or "day"; empty for a
	// limit on each job or River job.
	Window string
}

// Flag is the flag of kiln admin quota set for q.
func (q Quota) Flag() string { return strings.ReplaceAll(q.Column, "_", "-") }

// Quotas are the quotas in the order listings show them.
var Quotas = []Quota{
	{Column: "jobs_per_hour", Title: "jobs per hour", Window: "hour"},
	{Column: "bytes_per_day", Title: "bytes per day", Bytes: true, Window: "day"},
	{Column: "options_bytes", Title: "options size", Bytes: true},
	{Column: "platforms_per_job", Title: "platforms in a list"},
	{Column: "validate_river_jobs_per_job", Title: "validate River jobs per job"},
	{Column: "river_job_bytes", Title: "River job size", Bytes: true},
}

// QuotaLimit is one quota as it applies to a person.
type QuotaLimit struct {
	Quota string `json:"quota"`
	Title string `json:"title"`
	Limit int64  `json:"limit"`
	// Own is true when the person has a limit of their own, false when
	// the default applies.
	Own bool `json:"own"`
	// Used and ResetsAt are what the person used in the current window
	// and when it ends, for the quotas counted over a window; nil for
	// the others.
	Used     *int64     `json:"used"`
	ResetsAt *time.Time `json:"resets_at"`
}

// PersonQuotas is the quotas of one person, or the defaults (Person
// "public").
type PersonQuotas struct {
	Person string       `json:"person"`
	SetBy  string       `json:"set_by"`
	SetAt  time.Time    `json:"set_at"`
	Limits []QuotaLimit `json:"limits"`
}

// Defaults is the person name of the default quotas.
const Defaults = "public"

// ShowQuotas returns the quotas that apply to person (Defaults for the
// defaults) with what they used in the current windows.
func ShowQuotas(ctx context.Context, db *pgxpool.Pool, person string) (PersonQuotas, error) {
	pq := PersonQuotas{Person: person}
	if person != Defaults {
		if err := roleExists(ctx, db, person); err != nil {
			return pq, err
		}
	}
	var cols []string
	for _, q := range Quotas {
		cols = append(cols, "l."+q.Column, "o."+q.Column+" IS NOT NULL")
	}
	row := db.QueryRow(ctx, `SELECT `+strings.Join(cols, ", ")+`, coalesce(o.set_by, l.set_by), coalesce(o.set_at, l.set_at)
		FROM kiln.quota_limits($1) l LEFT JOIN kiln.quota o ON o.person = $1 AND $1 <> 'public'`, person)
	pq.Limits = make([]QuotaLimit, len(Quotas))
	dest := make([]any, 0, 2*len(Quotas)+2)
	for i, q := range Quotas {
		pq.Limits[i] = QuotaLimit{Quota: q.Column, Title: q.Title}
		dest = append(dest, &pq.Limits[i].Limit, &pq.Limits[i].Own)
	}
	dest = append(dest, &pq.SetBy, &pq.SetAt)
	if err := row.Scan(dest...); err != nil {
		return pq, explain(err, "quotas of", person)
	}
	if person == Defaults {
		return pq, nil
	}
	rows, err := db.Query(ctx, `SELECT w.quota, coalesce(u.used, 0), w.start + w.length
		FROM (VALUES ('jobs_per_hour', date_trunc('hour', clock_timestamp(), 'UTC'), interval '1 hour'),
		             ('bytes_per_day', date_trunc('day', clock_timestamp(), 'UTC'), interval '1 day')) w (quota, start, length)
		LEFT JOIN kiln.quota_usage u ON u.person = $1 AND u.quota = w.quota AND u.window_start = w.start`, person)
	if err != nil {
		return pq, explain(err, "quota use of", person)
	}
	defer rows.Close()
	for rows.Next() {
		var quota string
		var used int64
		var resets time.Time
		if err := rows.Scan(&quota, &used, &resets); err != nil {
			return pq, explain(err, "quota use of", person)
		}
		for i := range pq.Limits {
			if pq.Limits[i].Quota == quota {
				pq.Limits[i].Used, pq.Limits[i].ResetsAt = &used, &resets
			}
		}
	}
	return pq, explain(rows.Err(), "quota use of", person)
}

// QuotaOverrides returns the people with quotas of their own, by name.
func QuotaOverrides(ctx context.Context, db *pgxpool.Pool) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT person::text FROM kiln.quota WHERE person <> 'public' ORDER BY person`)
	if err != nil {
		return nil, explain(err, "quotas of", "everyone")
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ParseQuotaValue reads a limit as kiln admin quota set takes it: a
// non-negative integer, for sizes with an optional binary suffix as
// format.ParseSize reads them (K, KiB, M, MiB, G, GiB, T, TiB), or "default" (nil: the person's own limit goes
// and the default applies).
func ParseQuotaValue(q Quota, s string) (*int64, error) {
	if s == "default" {
		return nil, nil
	}
	var n int64
	var err error
	if q.Bytes {
		n, err = format.ParseSize(s)
	} else {
		n, err = strconv.ParseInt(s, 10, 64)
	}
	max := int64(1<<31 - 1)
	if q.Column == "bytes_per_day" {
		max = 1<<63 - 1
	}
	if err != nil || n < 0 || n > max {
		unit := ""
		if q.Bytes {
			unit = " (bytes, or with KiB, MiB, GiB, TiB)"
		}
		return nil, fmt.Errorf("--%s %q: give a whole number from 0 to %d%s, or default", q.Flag(), s, max, unit)
	}
	return &n, nil
}

// SetQuotas sets limits of person (Defaults for the defaults): each entry
// of limits maps a column of kiln.quota to its new limit, nil to drop the
// person's own and fall back to the default.
func SetQuotas(ctx context.Context, db *pgxpool.Pool, person string, limits map[string]*int64) error {
	if len(limits) == 0 {
		return errors.New("nothing to set: give at least one quota (kiln admin quota set --help lists them)")
	}
	var cols, sets []string
	args := []any{person}
	for _, q := range Quotas {
		v, ok := limits[q.Column]
		if !ok {
			continue
		}
		if v == nil && person == Defaults {
			return fmt.Errorf("--%s: the defaults need a limit, not default", q.Flag())
		}
		args = append(args, v)
		cols = append(cols, q.Column)
		sets = append(sets, fmt.Sprintf("%s = $%d", q.Column, len(args)))
	}
	for col := range limits {
		if !slices.ContainsFunc(Quotas, func(q Quota) bool { return q.Column == col }) {
			return fmt.Errorf("%q is not a quota (kiln admin quota show lists them)", col)
		}
	}
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if person == Defaults {
			_, err := tx.Exec(ctx, `UPDATE kiln.quota SET `+strings.Join(sets, ", ")+` WHERE person = $1`, args...)
			return explain(err, "quotas of", "everyone")
		}
		if err := roleExists(ctx, tx, person); err != nil {
			return err
		}
		placeholders := make([]string, len(cols))
		for i := range cols {
			placeholders[i] = fmt.Sprintf("$%d", i+2)
		}
		_, err := tx.Exec(ctx, `INSERT INTO kiln.quota (person, `+strings.Join(cols, ", ")+`) VALUES ($1, `+strings.Join(placeholders, ", ")+`)
			ON CONFLICT (person) DO UPDATE SET `+strings.Join(sets, ", "), args...)
		if err != nil {
			return explain(err, "quotas of", person)
		}
		// A row that sets nothing any more is no override.
		var none []string
		for _, q := range Quotas {
			none = append(none, q.Column+" IS NULL")
		}
		_, err = tx.Exec(ctx, `DELETE FROM kiln.quota WHERE person = $1 AND `+strings.Join(none, " AND "), person)
		return explain(err, "quotas of", person)
	})
}

// ResetQuotas drops person's own limits, so the defaults apply; for
// Defaults it restores the built-in defaults (kiln.quota_builtin).
func ResetQuotas(ctx context.Context, db *pgxpool.Pool, person string) error {
	if person == Defaults {
		var cols []string
		for _, q := range Quotas {
			cols = append(cols, q.Column)
		}
		list := strings.Join(cols, ", ")
		_, err := db.Exec(ctx, `UPDATE kiln.quota SET (`+list+`) = (SELECT `+list+` FROM kiln.quota_builtin()) WHERE person = 'public'`)
		return explain(err, "quotas of", "everyone")
	}
	tag, err := db.Exec(ctx, `DELETE FROM kiln.quota WHERE person = $1`, person)
	if err != nil {
		return explain(err, "quotas of", person)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s has no quotas of their own; the defaults apply already (kiln admin quota show %s)", person, person)
	}
	return nil
}

type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func roleExists(ctx context.Context, db rowQuerier, role string) error {
	var exists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		return fmt.Errorf("looking up role %q: %w", role, err)
	}
	if !exists {
		return fmt.Errorf("database role %q does not exist (add the person first: kiln admin person add %s)", role, role)
	}
	return nil
}
