package janitor

import (
	"testing"
)

// The janitor queues an environment River job for a platform with a spec
// but no environment, and for one whose environment is older than its
// max_age; never a second one while the first waits, and none for a fresh
// environment.
func TestScheduleEnvironmentRefreshes(t *testing.T) {
	b := setup(t, testConfig())
	b.exec(t, `INSERT INTO kiln.platform (name, arch, package_format, backend, backend_settings)
		VALUES ('bookworm-amd64', 'amd64', 'deb', 'sbuild', '{"dist": "bookworm"}'),
		       ('trixie-amd64', 'amd64', 'deb', 'sbuild', '{"dist": "trixie"}')`)
	b.exec(t, `INSERT INTO kiln.platform_environment (platform, spec) VALUES ('bookworm-amd64', '{"dist": "bookworm"}'),
		('trixie-amd64', '{"dist": "trixie"}')`)
	// trixie has a fresh environment (played by the superuser: a blob and
	// the row kiln.environment_install would write).
	b.exec(t, `INSERT INTO kiln.blob (sha256, size, chunk_size, verified_at) VALUES (sha256('env'), 3, 1048576, now())`)
	b.exec(t, `INSERT INTO kiln.environment (platform, blob_sha256, size, spec, packages, builder)
		VALUES ('trixie-amd64', sha256('env'), 3, '{}', '{}', 'b1')`)
	b.exec(t, `UPDATE kiln.platform_environment SET environment = (SELECT max(id) FROM kiln.environment) WHERE platform = 'trixie-amd64'`)

	queued := func() map[string]int {
		rows, err := b.db.Pool.Query(b.ctx, `SELECT queue, count(*) FROM river.river_job WHERE kind = 'environment' GROUP BY queue`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		m := map[string]int{}
		for rows.Next() {
			var q string
			var n int
			if err := rows.Scan(&q, &n); err != nil {
				t.Fatal(err)
			}
			m[q] = n
		}
		return m
	}
	c, err := b.jan.Round(b.ctx, Upkeep)
	if err != nil {
		t.Fatal(err)
	}
	if got := queued(); c.EnvironmentsQueued != 1 || len(got) != 1 || got["build-bookworm-amd64"] != 1 {
		t.Fatalf("first round queued %d: %v", c.EnvironmentsQueued, got)
	}
	if c, err = b.jan.Round(b.ctx, Upkeep); err != nil || c.EnvironmentsQueued != 0 {
		t.Fatalf("second round queued %d (%v): %v", c.EnvironmentsQueued, err, queued())
	}
	// trixie's environment passes its max_age.
	b.exec(t, `UPDATE kiln.platform_environment SET max_age = '1 hour' WHERE platform = 'trixie-amd64'`)
	b.exec(t, `UPDATE kiln.environment SET created_at = now() - interval '2 hours' WHERE platform = 'trixie-amd64'`)
	if c, err = b.jan.Round(b.ctx, Upkeep); err != nil || c.EnvironmentsQueued != 1 {
		t.Fatalf("after max_age: queued %d (%v): %v", c.EnvironmentsQueued, err, queued())
	}
	if got := queued(); got["build-trixie-amd64"] != 1 || got["build-bookworm-amd64"] != 1 {
		t.Fatalf("queued %v", got)
	}
}
