package builder

import (
	"context"
	"fmt"
	"io"
	neturl "net/url"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/backend"
)

// repositoryRef is a bucket's repository snapshot a build installed build
// dependencies from, as its build info records it.
type repositoryRef struct {
	Bucket   string `json:"bucket"`
	Snapshot int32  `json:"snapshot"`
	URL      string `json:"url"`
	// Key is the fingerprint of the bucket's key the snapshot is signed
	// with, Index the snapshot's signed index (dists/BUCKET/InRelease for
	// APT, repodata/repomd.xml for rpm-md) and IndexSHA256 its sha256.
	Key         string `json:"key"`
	Index       string `json:"index"`
	IndexSHA256 string `json:"index_sha256"`
}

// repositoryClients are the backends that install build dependencies from
// the buckets' repositories, and the package manager that reads them.
var repositoryClients = map[string]string{"sbuild": "apt", "mock": "dnf"}

// hostBackends are the backends that build with the builder host's own
// packages and install no build dependencies, and the kind of platform
// that builds against the buckets' repositories instead.
var hostBackends = map[string]string{"rpmbuild": "a mock", "dpkg": "an sbuild"}

// repositories returns the buckets' repositories a build of job on plat
// installs build dependencies from (kiln.build_repository_snapshots: the
// served snapshot of the job's bucket, then of its build_against buckets;
// APT repositories for sbuild platforms, rpm-md ones for mock platforms),
// each pinned to its snapshot number so that every package of the attempt
// sees the same files, says so in the log and records them in info. Only
// sbuild and mock platforms use them, and only when the builder knows
// kiln-web's address (Config.RepoURL); the host backends (rpmbuild, dpkg)
// install no build dependencies, and the log says that they use no
// bucket. A private bucket's repository is read with a token of the
// attempt's own (kiln.build_repository_token: that bucket only, read-only,
// while the attempt builds), given to apt or dnf as the URL's password and
// never written to the log or the build info.
func (b *Builder) repositories(ctx context.Context, plat *loadedPlatform, info *buildInfo, live io.Writer) ([]backend.Repository, error) {
	name := plat.backend.Name()
	if instead, ok := hostBackends[name]; ok {
		fmt.Fprintf(live, "kiln: the %s backend builds with the packages installed on this host and installs no build dependencies: "+
			"it uses no bucket's repository (to build against the buckets' repositories, use %s platform)\n", name, instead)
		return nil, nil
	}
	client, ok := repositoryClients[name]
	if !ok {
		return nil, nil
	}
	if b.cfg.RepoURL == "" {
		fmt.Fprintln(live, "kiln: no repository URL is configured (kiln-builder --repo-url): the build uses no bucket's repository")
		return nil, nil
	}
	rows, err := b.db.Query(ctx, `SELECT bucket, seq, fingerprint, public_key, index_path, index_sha256
		FROM kiln.build_repository_snapshots($1, $2)`, info.Job, plat.Name)
	if err != nil {
		return nil, fmt.Errorf("reading the buckets' repositories: %w", err)
	}
	type row struct {
		ref repositoryRef
		key string
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.ref.Bucket, &x.ref.Snapshot, &x.ref.Key, &x.key, &x.ref.Index, &x.ref.IndexSHA256)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the buckets' repositories: %w", err)
	}
	base := strings.TrimRight(b.cfg.RepoURL, "/")
	var repos []backend.Repository
	for _, x := range got {
		x.ref.URL = fmt.Sprintf("%s/repos/%s/snapshots/%d/%s", base, x.ref.Bucket, x.ref.Snapshot, plat.Name)
		fmt.Fprintf(live, "kiln: build dependencies also from bucket %s, snapshot %d (%s, key %s, %s sha256 %s)\n",
			x.ref.Bucket, x.ref.Snapshot, x.ref.URL, x.ref.Key, x.ref.Index, x.ref.IndexSHA256)
		var token *string
		if err := b.db.QueryRow(ctx, `SELECT kiln.build_repository_token($1, $2, $3, $4)`,
			b.cfg.Name, info.Task, info.Attempt, x.ref.Bucket).Scan(&token); err != nil {
			return nil, fmt.Errorf("a token for bucket %s's repository: %w", x.ref.Bucket, err)
		}
		url := x.ref.URL
		if token != nil {
			u, err := neturl.Parse(url)
			if err != nil {
				return nil, fmt.Errorf("repository URL %s: %w", url, err)
			}
			u.User = neturl.UserPassword("kiln-build", *token)
			url = u.String()
			fmt.Fprintf(live, "kiln: bucket %s is private: %s reads it with a token of this attempt's own\n", x.ref.Bucket, client)
		}
		repos = append(repos, backend.Repository{URL: url, Suite: x.ref.Bucket, Fingerprint: x.ref.Key, Key: x.key})
		info.Repositories = append(info.Repositories, x.ref)
	}
	return repos, nil
}
