package web

import (
	"context"
	"net/http"
	"testing"
)

// The platforms page shows a platform's current build environment: its
// id, age, size, SHA-256 and package list.
func TestPlatformsShowEnvironment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	db := b.f.DB.Pool
	for _, sql := range []string{
		`INSERT INTO kiln.blob (sha256, size, chunk_size, verified_at) VALUES (sha256('env'), 3, 1048576, now())`,
		`INSERT INTO kiln.environment (platform, blob_sha256, size, spec, packages, builder, created_at)
		 VALUES ('bookworm-amd64', sha256('env'), 143935308, '{"dist": "bookworm"}', '{"dpkg": "1.21.22", "debhelper": "13.11.4"}', 'b1', now() - interval '2 hours')`,
		`INSERT INTO kiln.platform_environment (platform, environment, spec)
		 SELECT 'bookworm-amd64', max(id), '{"dist": "bookworm"}' FROM kiln.environment`,
	} {
		if _, err := db.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	page := b.get(t, "/platforms", http.StatusOK)
	contains(t, "platforms", page, "143935308 bytes, 2 packages", "2h00m", "<li>debhelper 13.11.4</li>", "<li>dpkg 1.21.22</li>",
		"sha256 <code>b77349bf1fa9b26d45d545d7d64dad96737e9cfbb3cbb5f5d10fb77b0fcc44ad</code>")
}
