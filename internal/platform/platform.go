// Package platform reads kiln's build platforms (kiln.platform): one type,
// Platform, for every role that needs one. Creating and changing platforms
// is kiln admin's (internal/admin); a builder's loaded platform with its
// backend is internal/builder's; the backend itself is made from the part
// of a platform it needs (backend.Platform).
package platform

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/sandbox"
)

// DB is what the reads need: a pool, a connection or a transaction.
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Platform is a build target: a row of kiln.platform.
type Platform struct {
	Name          string `json:"name"`
	Arch          string `json:"arch"`
	PackageFormat string `json:"package_format"` // rpm or deb
	Backend       string `json:"backend"`
	// BackendSettings are the backend's settings (a JSON object); read
	// only where the backend is made or the platform administered.
	BackendSettings map[string]any `json:"backend_settings,omitempty"`
	Timeout         time.Duration  `json:"-"`
	TimeoutSeconds  float64        `json:"timeout_seconds"`
	Active          bool           `json:"active"`
	Description     string         `json:"description"`
	// MaxProcesses, MaxMemory and MaxDisk bound each build (nil: the
	// sandbox's defaults); see Limits.
	MaxProcesses *int32 `json:"max_processes,omitempty"`
	MaxMemory    *int64 `json:"max_memory,omitempty"`
	MaxDisk      *int64 `json:"max_disk,omitempty"`
}

// ErrNotFound is wrapped by Get's error for a platform that does not exist.
var ErrNotFound = errors.New("platform not found")

// columns are the columns read, in the order scan takes them.
const columns = `name, arch, package_format, backend, backend_settings, extract(epoch FROM timeout)::float8,
	active, description, max_processes, max_memory, max_disk`

func scan(r pgx.Row) (Platform, error) {
	var p Platform
	err := r.Scan(&p.Name, &p.Arch, &p.PackageFormat, &p.Backend, &p.BackendSettings, &p.TimeoutSeconds,
		&p.Active, &p.Description, &p.MaxProcesses, &p.MaxMemory, &p.MaxDisk)
	p.Timeout = time.Duration(p.TimeoutSeconds * float64(time.Second))
	return p, err
}

// List returns every platform by name.
func List(ctx context.Context, db DB) ([]Platform, error) {
	rows, err := db.Query(ctx, `SELECT `+columns+` FROM kiln.platform ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing platforms: %w", err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Platform, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("listing platforms: %w", err)
	}
	return ps, nil
}

// Get returns the platform name; lock takes its row FOR UPDATE (in a
// transaction).
func Get(ctx context.Context, db DB, name string, lock bool) (Platform, error) {
	q := `SELECT ` + columns + ` FROM kiln.platform WHERE name = $1`
	if lock {
		q += ` FOR UPDATE`
	}
	p, err := scan(db.QueryRow(ctx, q, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Platform{}, fmt.Errorf("platform %q does not exist (kiln admin platform list)%.0w", name, ErrNotFound)
	}
	if err != nil {
		return Platform{}, fmt.Errorf("reading platform %s: %w", name, err)
	}
	return p, nil
}

// LongestTimeout is the longest build timeout of any platform (0 without
// platforms). River must not rescue a River job sooner than this after it
// started: its build may still run.
func LongestTimeout(ctx context.Context, db DB) (time.Duration, error) {
	var secs float64
	if err := db.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM max(timeout)), 0)::float8 FROM kiln.platform`).Scan(&secs); err != nil {
		return 0, fmt.Errorf("reading platform timeouts: %w", err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// Limits are the bounds of one build on p: its own, or the sandbox's
// defaults where it sets none.
func (p Platform) Limits() sandbox.Limits {
	l := sandbox.Limits{Processes: sandbox.DefaultProcesses, Memory: sandbox.DefaultMemory, Disk: sandbox.DefaultDisk}
	if p.MaxProcesses != nil {
		l.Processes = int(*p.MaxProcesses)
	}
	if p.MaxMemory != nil {
		l.Memory = *p.MaxMemory
	}
	if p.MaxDisk != nil {
		l.Disk = *p.MaxDisk
	}
	return l
}
