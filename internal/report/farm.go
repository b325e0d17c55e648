package report

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Builder is one builder daemon as listings show it.
type Builder struct {
	Name     string `json:"name"`
	Host     string `json:"host"`
	State    string `json:"state"`
	Enabled  bool   `json:"enabled"`
	Draining bool   `json:"draining"`
	Slots    int    `json:"slots"`
	// Busy is the number of tasks it holds now.
	Busy                int        `json:"busy"`
	HeartbeatAt         *time.Time `json:"heartbeat_at"`
	HeartbeatAgeSeconds *float64   `json:"heartbeat_age_seconds"`
	Version             string     `json:"version"`
	Platforms           []string   `json:"platforms"`
	// Tasks are the ids of the tasks it holds.
	Tasks        []int64    `json:"tasks"`
	StartedAt    *time.Time `json:"started_at"`
	RegisteredAt time.Time  `json:"registered_at"`
}

// ListBuilders returns every builder by name (view kiln.builder_status).
func ListBuilders(ctx context.Context, db DB) ([]Builder, error) {
	rows, err := db.Query(ctx, `SELECT s.builder, s.host, s.state, s.enabled, s.draining, s.slots, s.busy,
		s.heartbeat_at, extract(epoch FROM s.heartbeat_age)::float8, s.version, s.platforms, s.tasks,
		b.started_at, b.registered_at
		FROM kiln.builder_status s JOIN kiln.builder b ON b.name = s.builder ORDER BY s.builder`)
	if err != nil {
		return nil, wrap(err, "listing builders")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Builder])
	if err != nil {
		return nil, wrap(err, "listing builders")
	}
	if out == nil {
		out = []Builder{}
	}
	return out, nil
}

// Platform is a build platform with its current load.
type Platform struct {
	Name           string  `json:"name"`
	Arch           string  `json:"arch"`
	PackageFormat  string  `json:"package_format"`
	Backend        string  `json:"backend"`
	TimeoutSeconds float64 `json:"timeout_seconds"`
	Active         bool    `json:"active"`
	Description    string  `json:"description"`
	Pending        int     `json:"pending"`
	Building       int     `json:"building"`
	// OldestWaitSeconds is how long the oldest pending task has waited;
	// null when none waits.
	OldestWaitSeconds *float64 `json:"oldest_wait_seconds"`
	BuildersOnline    int      `json:"builders_online"`
	SlotsOnline       int      `json:"slots_online"`
	// The platform's current build environment (sbuild platforms,
	// kiln.platform_environment); null when it has none.
	EnvironmentID         *int64            `json:"environment_id"`
	EnvironmentSHA256     *string           `json:"environment_sha256"`
	EnvironmentSize       *int64            `json:"environment_size"`
	EnvironmentAgeSeconds *float64          `json:"environment_age_seconds"`
	EnvironmentPackages   map[string]string `json:"environment_packages"`
}

// ListPlatforms returns every platform by name with its queue (view
// kiln.queue_depth).
func ListPlatforms(ctx context.Context, db DB) ([]Platform, error) {
	rows, err := db.Query(ctx, `SELECT p.name, p.arch, p.package_format, p.backend, extract(epoch FROM p.timeout)::float8,
		p.active, p.description, q.pending, q.building, extract(epoch FROM q.oldest_wait)::float8,
		q.builders_online, q.slots_online,
		e.id, encode(e.blob_sha256, 'hex'), e.size, extract(epoch FROM now() - e.created_at)::float8, e.packages
		FROM kiln.platform p JOIN kiln.queue_depth q ON q.platform = p.name
		LEFT JOIN kiln.platform_environment pe ON pe.platform = p.name
		LEFT JOIN kiln.environment e ON e.id = pe.environment
		ORDER BY p.name`)
	if err != nil {
		return nil, wrap(err, "listing platforms")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Platform])
	if err != nil {
		return nil, wrap(err, "listing platforms")
	}
	if out == nil {
		out = []Platform{}
	}
	return out, nil
}
