package janitor

import (
	"testing"
)

// Without a max_age of its own a platform's environment is refreshed once
// it is a week old (kiln.platform_environment.max_age's default): not at
// six days, at eight; kiln admin environment create --max-age sets another.
func TestEnvironmentRefreshDefaultAge(t *testing.T) {
	b := setup(t, testConfig())
	b.exec(t, `INSERT INTO kiln.platform (name, arch, package_format, backend, backend_settings)
		VALUES ('bookworm-amd64', 'amd64', 'deb', 'sbuild', '{"dist": "bookworm"}')`)
	b.exec(t, `INSERT INTO kiln.platform_environment (platform, spec) VALUES ('bookworm-amd64', '{"dist": "bookworm"}')`)
	b.exec(t, `INSERT INTO kiln.blob (sha256, size, chunk_size, verified_at) VALUES (sha256('env'), 3, 1048576, now())`)
	b.exec(t, `INSERT INTO kiln.environment (platform, blob_sha256, size, spec, packages, builder, created_at)
		VALUES ('bookworm-amd64', sha256('env'), 3, '{}', '{}', 'b1', now() - interval '6 days')`)
	b.exec(t, `UPDATE kiln.platform_environment SET environment = (SELECT max(id) FROM kiln.environment)`)
	var maxAge string
	if err := b.db.Pool.QueryRow(b.ctx, `SELECT max_age::text FROM kiln.platform_environment`).Scan(&maxAge); err != nil || maxAge != "7 days" {
		t.Fatalf("the default max_age is %q (%v), want 7 days", maxAge, err)
	}
	if c, err := b.jan.Round(b.ctx, Upkeep); err != nil || c.EnvironmentsQueued != 0 {
		t.Fatalf("a six-day-old environment: queued %d (%v)", c.EnvironmentsQueued, err)
	}
	b.exec(t, `UPDATE kiln.environment SET created_at = now() - interval '8 days'`)
	if c, err := b.jan.Round(b.ctx, Upkeep); err != nil || c.EnvironmentsQueued != 1 {
		t.Fatalf("an eight-day-old environment: queued %d (%v)", c.EnvironmentsQueued, err)
	}
	var queue string
	if err := b.db.Pool.QueryRow(b.ctx, `SELECT queue FROM river.river_job WHERE kind = 'environment'`).Scan(&queue); err != nil || queue != "build-bookworm-amd64" {
		t.Fatalf("the refresh's River job is in %q (%v), want the platform's build queue", queue, err)
	}
}
