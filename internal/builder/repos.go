package builder

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/backend"
)

// repositories returns the buckets' APT repositories a build of job on plat
// installs build dependencies from (kiln.build_repositories: the served
// snapshot of the job's bucket, then of its build_against buckets), each
// pinned to its snapshot number so that every package of the attempt sees
// the same files, and says so in the log. Only sbuild platforms use them,
// and only when the builder knows kiln-web's address (Config.RepoURL).
func (b *Builder) repositories(ctx context.Context, job int64, plat *loadedPlatform, live io.Writer) ([]backend.Repository, error) {
	if plat.backend.Name() != "sbuild" {
		return nil, nil
	}
	if b.cfg.RepoURL == "" {
		fmt.Fprintln(live, "kiln: no repository URL is configured (kiln-builder --repo-url): the build uses no bucket's repository")
		return nil, nil
	}
	rows, err := b.db.Query(ctx, `SELECT bucket, seq, fingerprint, public_key FROM kiln.build_repositories($1, $2)`, job, plat.name)
	if err != nil {
		return nil, fmt.Errorf("reading the buckets' repositories: %w", err)
	}
	type row struct {
		bucket      string
		seq         int32
		fingerprint string
		key         string
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.bucket, &x.seq, &x.fingerprint, &x.key)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the buckets' repositories: %w", err)
	}
	base := strings.TrimRight(b.cfg.RepoURL, "/")
	var repos []backend.Repository
	for _, x := range got {
		url := fmt.Sprintf("%s/repos/%s/snapshots/%d/%s", base, x.bucket, x.seq, plat.name)
		fmt.Fprintf(live, "kiln: build dependencies also from bucket %s, snapshot %d (%s, key %s)\n", x.bucket, x.seq, url, x.fingerprint)
		repos = append(repos, backend.Repository{URL: url, Suite: x.bucket, Fingerprint: x.fingerprint, Key: x.key})
	}
	return repos, nil
}
