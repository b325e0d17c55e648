// Package admin holds the operations behind `kiln admin`: platforms, buckets,
// bucket grants and builders. Each runs as the caller's own database role, so
// the grants in roles/ decide who may do what.
package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/names"
	"github.com/kiln-build/kiln/internal/platform"
)

// Backends maps each backend to the package format it builds ("" for any).
var Backends = map[string]string{"rpmbuild": "rpm", "mock": "rpm", "dpkg": "deb", "sbuild": "deb", "noop": ""}

// DefaultTimeout is a platform's build timeout unless set.
const DefaultTimeout = 2 * time.Hour

func checkPlatform(p platform.Platform) error {
	if err := names.CheckName("platform", p.Name); err != nil {
		return err
	}
	if p.Arch == "" {
		return kinded(ErrInvalid, "platform %s: --arch is required (x86_64, aarch64, amd64, ...)", p.Name)
	}
	format, ok := Backends[p.Backend]
	if !ok {
		return kinded(ErrInvalid, "platform %s: unknown backend %q (known: rpmbuild, dpkg, mock, sbuild, noop)", p.Name, p.Backend)
	}
	if p.PackageFormat != "rpm" && p.PackageFormat != "deb" {
		return kinded(ErrInvalid, "platform %s: package format %q is not rpm or deb (--format rpm or --format deb)", p.Name, p.PackageFormat)
	}
	if format != "" && format != p.PackageFormat {
		return kinded(ErrInvalid, "platform %s: backend %s builds %s packages, not %s", p.Name, p.Backend, format, p.PackageFormat)
	}
	if p.Timeout < 0 {
		return kinded(ErrInvalid, "platform %s: --timeout must be positive (such as 2h)", p.Name)
	}
	return nil
}

// AddPlatform creates a platform.
func AddPlatform(ctx context.Context, db *pgxpool.Pool, p platform.Platform) error {
	if err := checkPlatform(p); err != nil {
		return err
	}
	if p.Timeout == 0 {
		p.Timeout = DefaultTimeout
	}
	if p.BackendSettings == nil {
		p.BackendSettings = map[string]any{}
	}
	_, err := db.Exec(ctx, `INSERT INTO kiln.platform (name, arch, package_format, backend, backend_settings, timeout, active, description)
		VALUES ($1, $2, $3, $4, $5, make_interval(secs => $6), $7, $8)`,
		p.Name, p.Arch, p.PackageFormat, p.Backend, p.BackendSettings, p.Timeout.Seconds(), p.Active, p.Description)
	return explain(err, "platform", p.Name)
}

// SetPlatformActive enables or disables a platform for new jobs.
func SetPlatformActive(ctx context.Context, db *pgxpool.Pool, name string, active bool) error {
	tag, err := db.Exec(ctx, "UPDATE kiln.platform SET active = $2 WHERE name = $1", name, active)
	if err != nil {
		return explain(err, "platform", name)
	}
	if tag.RowsAffected() == 0 {
		return kinded(ErrNotFound, "platform %q does not exist (kiln admin platform list shows the platforms)", name)
	}
	return nil
}

// PlatformChange lists the settings `platform set` changes; nil fields stay.
type PlatformChange struct {
	Arch            *string
	Backend         *string
	PackageFormat   *string
	BackendSettings map[string]any
	Timeout         *time.Duration
	Description     *string
	// MaxInfraRetries is how often a task is retried after the farm's
	// faults (kiln.platform.max_infra_retries, 0 to MaxInfraRetries), and
	// InfraRetryBackoff the wait before the first such retry (0 to
	// MaxInfraRetryBackoff); docs/protocol.md.
	MaxInfraRetries   *int
	InfraRetryBackoff *time.Duration
}

// Bounds of the retry settings (the checks of kiln.platform).
const (
	MaxInfraRetries      = 100
	MaxInfraRetryBackoff = 24 * time.Hour
)

// SetPlatform changes some settings of a platform.
func SetPlatform(ctx context.Context, db *pgxpool.Pool, name string, c PlatformChange) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("starting transaction: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	p, err := platform.Get(ctx, tx, name, true)
	if errors.Is(err, platform.ErrNotFound) {
		return kinded(ErrNotFound, "platform %q does not exist (kiln admin platform list shows the platforms)", name)
	}
	if err != nil {
		return err
	}
	if c.Arch != nil {
		p.Arch = *c.Arch
	}
	if c.Backend != nil {
		p.Backend = *c.Backend
	}
	if c.PackageFormat != nil {
		p.PackageFormat = *c.PackageFormat
	}
	if c.BackendSettings != nil {
		p.BackendSettings = c.BackendSettings
	}
	if c.Timeout != nil {
		if *c.Timeout <= 0 {
			return kinded(ErrInvalid, "platform %s: --timeout must be positive (such as 2h)", name)
		}
		p.Timeout = *c.Timeout
	}
	if c.Description != nil {
		p.Description = *c.Description
	}
	if err := checkPlatform(p); err != nil {
		return err
	}
	if r := c.MaxInfraRetries; r != nil && (*r < 0 || *r > MaxInfraRetries) {
		return kinded(ErrInvalid, "platform %s: --max-infra-retries must be between 0 (no retries) and %d, not %d", name, MaxInfraRetries, *r)
	}
	var backoff *float64
	if b := c.InfraRetryBackoff; b != nil {
		if *b < 0 || *b > MaxInfraRetryBackoff {
			return kinded(ErrInvalid, "platform %s: --infra-retry-backoff must be between 0s and 24h, not %s", name, *b)
		}
		secs := b.Seconds()
		backoff = &secs
	}
	_, err = tx.Exec(ctx, `UPDATE kiln.platform SET max_infra_retries = coalesce($2, max_infra_retries),
		infra_retry_backoff = coalesce(make_interval(secs => $3), infra_retry_backoff) WHERE name = $1`,
		p.Name, c.MaxInfraRetries, backoff)
	if err != nil {
		return explain(err, "platform", name)
	}
	_, err = tx.Exec(ctx, `UPDATE kiln.platform SET arch = $2, package_format = $3, backend = $4, backend_settings = $5,
		timeout = make_interval(secs => $6), description = $7 WHERE name = $1`,
		p.Name, p.Arch, p.PackageFormat, p.Backend, p.BackendSettings, p.Timeout.Seconds(), p.Description)
	if err != nil {
		return explain(err, "platform", name)
	}
	return explain(tx.Commit(ctx), "platform", name)
}

// Bucket is a destination repository.
type Bucket struct {
	Name             string   `json:"name"`
	Description      string   `json:"description"`
	Private          bool     `json:"private"`
	Open             bool     `json:"open"`
	RetentionSeconds *float64 `json:"retention_seconds"`
	Grantees         []string `json:"grantees"`
	PublishPolicy    string   `json:"publish_policy"`
	SignPackages     bool     `json:"sign_packages"`
	KeepSnapshots    int32    `json:"keep_snapshots"`
	BuildAgainst     []string `json:"build_against"`
}

// BucketSettings are a bucket's repository settings (docs/repositories.md);
// nil ones are left as they are.
type BucketSettings struct {
	// PublishPolicy is whole_job, per_task or none.
	PublishPolicy *string
	SignPackages  *bool
	KeepSnapshots *int
	// BuildAgainst are the further buckets builds of this one install build
	// dependencies from, in order (empty: none).
	BuildAgainst *[]string
}

// AddBucket creates a bucket with settings s.
func AddBucket(ctx context.Context, db *pgxpool.Pool, b Bucket, retention time.Duration, s BucketSettings) error {
	if err := names.CheckName("bucket", b.Name); err != nil {
		return err
	}
	var ret *float64
	if retention > 0 {
		sec := retention.Seconds()
		ret = &sec
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it does nothing
	if _, err := tx.Exec(ctx, `INSERT INTO kiln.bucket (name, description, private, open, retention)
		VALUES ($1, $2, $3, $4, make_interval(secs => $5))`, b.Name, b.Description, b.Private, b.Open, ret); err != nil {
		return explain(err, "bucket", b.Name)
	}
	if err := setBucket(ctx, tx, b.Name, s); err != nil {
		return err
	}
	return explain(tx.Commit(ctx), "bucket", b.Name)
}

// SetBucket changes the settings of bucket name that s gives.
func SetBucket(ctx context.Context, db *pgxpool.Pool, name string, s BucketSettings) error {
	if s == (BucketSettings{}) {
		return errors.New("nothing to change: give --publish-policy, --sign-packages, --keep-snapshots or --build-against")
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it does nothing
	if err := setBucket(ctx, tx, name, s); err != nil {
		return err
	}
	return explain(tx.Commit(ctx), "bucket", name)
}

// setBucket applies s to bucket name in tx. The buckets to build against
// must exist (they are locked until tx ends) and be neither name itself
// nor named twice.
func setBucket(ctx context.Context, tx pgx.Tx, name string, s BucketSettings) error {
	if s.PublishPolicy != nil {
		switch *s.PublishPolicy {
		case "whole_job", "per_task", "none":
		default:
			return fmt.Errorf("publish policy %q is not one of whole_job, per_task, none", *s.PublishPolicy)
		}
	}
	if s.KeepSnapshots != nil && (*s.KeepSnapshots < 1 || *s.KeepSnapshots > 100000) {
		return fmt.Errorf("keep snapshots %d: keep between 1 and 100000", *s.KeepSnapshots)
	}
	var against []string
	if s.BuildAgainst != nil {
		against = []string{}
		seen := map[string]bool{}
		for _, b := range *s.BuildAgainst {
			switch {
			case b == name:
				return fmt.Errorf("bucket %s cannot build against itself (it always builds against its own repository first)", name)
			case seen[b]:
				return fmt.Errorf("bucket %s is named twice in the buckets to build against", b)
			}
			seen[b] = true
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kiln.bucket WHERE name = $1 FOR SHARE)`, b).Scan(&exists); err != nil {
				return explain(err, "bucket", b)
			}
			if !exists {
				return fmt.Errorf("bucket %q does not exist: a bucket builds only against existing buckets", b)
			}
			against = append(against, b)
		}
		if len(against) > 8 {
			return fmt.Errorf("bucket %s: at most 8 buckets to build against, not %d", name, len(against))
		}
	}
	var keep *int32
	if s.KeepSnapshots != nil {
		k := int32(*s.KeepSnapshots)
		keep = &k
	}
	tag, err := tx.Exec(ctx, `UPDATE kiln.bucket SET publish_policy = coalesce($2, publish_policy),
		sign_packages = coalesce($3, sign_packages), keep_snapshots = coalesce($4, keep_snapshots),
		build_against = coalesce($5, build_against) WHERE name = $1`, name, s.PublishPolicy, s.SignPackages, keep, against)
	if err != nil {
		return explain(err, "bucket", name)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("bucket %q does not exist", name)
	}
	return nil
}

// ListBuckets returns every bucket with its grantees and settings.
func ListBuckets(ctx context.Context, db *pgxpool.Pool) ([]Bucket, error) {
	rows, err := db.Query(ctx, `SELECT b.name, b.description, b.private, b.open, extract(epoch FROM b.retention)::float8,
		coalesce((SELECT array_agg(g.grantee::text ORDER BY g.grantee) FROM kiln.bucket_grant g WHERE g.bucket = b.name), '{}'),
		b.publish_policy, b.sign_packages, b.keep_snapshots, b.build_against
		FROM kiln.bucket b ORDER BY b.name`)
	if err != nil {
		return nil, fmt.Errorf("listing buckets: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Bucket, error) {
		var b Bucket
		err := r.Scan(&b.Name, &b.Description, &b.Private, &b.Open, &b.RetentionSeconds, &b.Grantees,
			&b.PublishPolicy, &b.SignPackages, &b.KeepSnapshots, &b.BuildAgainst)
		return b, err
	})
}

// GrantBucket lets role submit to bucket.
func GrantBucket(ctx context.Context, db *pgxpool.Pool, bucket, role string) error {
	var exists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		return fmt.Errorf("looking up role %q: %w", role, err)
	}
	if !exists {
		return kinded(ErrNotFound, "database role %q does not exist (add the person first: kiln admin person add %s)", role, role)
	}
	_, err := db.Exec(ctx, "INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ($1, $2) ON CONFLICT DO NOTHING", bucket, role)
	return explain(err, "bucket", bucket)
}

// RevokeBucket withdraws a grant.
func RevokeBucket(ctx context.Context, db *pgxpool.Pool, bucket, role string) error {
	tag, err := db.Exec(ctx, "DELETE FROM kiln.bucket_grant WHERE bucket = $1 AND grantee = $2", bucket, role)
	if err != nil {
		return explain(err, "bucket", bucket)
	}
	if tag.RowsAffected() == 0 {
		return kinded(ErrNotFound, "%q has no grant on bucket %q (kiln admin bucket list shows the grants)", role, bucket)
	}
	return nil
}

// SetBuilderEnabled switches a builder on or off for new work.
func SetBuilderEnabled(ctx context.Context, db *pgxpool.Pool, name string, enabled bool) error {
	tag, err := db.Exec(ctx, "UPDATE kiln.builder SET enabled = $2 WHERE name = $1", name, enabled)
	if err != nil {
		return explain(err, "builder", name)
	}
	if tag.RowsAffected() == 0 {
		return kinded(ErrNotFound, "builder %q does not exist (kiln admin builder list shows the builders)", name)
	}
	return nil
}

// explain turns constraint and permission errors into messages naming the
// thing and what to do.
func explain(err error, what, name string) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505":
			return because(err, ErrExists, "%s %q already exists", what, name)
		case "23514":
			return because(err, ErrInvalid, "%s %q: a value breaks rule %s (%s)", what, name, pgErr.ConstraintName, pgErr.Message)
		case "23503":
			return because(err, ErrNotFound, "%s %q does not exist (kiln admin %s list shows them)", what, name, what)
		case "42501":
			return because(err, ErrPermission, "permission denied for %s %q: your database role needs kiln_admin (%s; ask a kiln admin)", what, name, pgErr.Message)
		}
	}
	return fmt.Errorf("%s %q: %w", what, name, err)
}
