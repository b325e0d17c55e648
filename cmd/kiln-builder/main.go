// Command kiln-builder is kiln's builder daemon: it works the build queues
// of its platforms and builds each task in a sandbox. See docs/builder.md.
package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/backend"
	"github.com/kiln-build/kiln/internal/builder"
	kcli "github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/environment"
	"github.com/kiln-build/kiln/internal/sandbox"
)

func main() { daemon.Main(app()) }

func app() *cli.App {
	return daemon.App("kiln-builder", "build kiln tasks of some platforms on this host", kcli.Version,
		[]cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "builder name (lower case, digits, - and _)", EnvVars: []string{"KILN_BUILDER_NAME"}, Required: true},
			&cli.StringSliceFlag{Name: "platform", Usage: "platform to build (repeat for several)", EnvVars: []string{"KILN_BUILDER_PLATFORMS"}, Required: true},
			&cli.IntFlag{Name: "slots", Usage: "most tasks built at once", EnvVars: []string{"KILN_BUILDER_SLOTS"}, Value: 1},
			&cli.StringFlag{Name: "workdir", Usage: "directory for builds (owned by the builder; emptied at start)", EnvVars: []string{"KILN_BUILDER_WORKDIR"}, Value: "/var/lib/kiln-builder/work"},
			&cli.DurationFlag{Name: "grace", Usage: "on SIGTERM, how long running builds may go on before they are given back", EnvVars: []string{"KILN_BUILDER_GRACE"}, Value: builder.DefaultGrace},
			&cli.DurationFlag{Name: "heartbeat", Usage: "heartbeat interval", EnvVars: []string{"KILN_BUILDER_HEARTBEAT"}, Value: 5 * time.Second},
			&cli.Int64Flag{Name: "log-limit", Usage: "bytes of log stored per attempt; later output is dropped with a note", EnvVars: []string{"KILN_BUILDER_LOG_LIMIT"}, Value: builder.DefaultLogLimit},
			&cli.StringSliceFlag{Name: "hide", Usage: "path builds must not see (repeat; default: /etc/kiln, the keytabs and the credential cache)", EnvVars: []string{"KILN_BUILDER_HIDE"}},
			&cli.StringFlag{Name: "build-uids", Usage: "FIRST-LAST: host uids builds run as when the builder runs as root, one per running build (default 1000000000-1000065535)", EnvVars: []string{"KILN_BUILDER_BUILD_UIDS"}},
			&cli.StringFlag{Name: "uid-lock-dir", Usage: "where the builders of this host claim build uids (root only)", EnvVars: []string{"KILN_BUILDER_UID_LOCK_DIR"}, Value: sandbox.DefaultLockDir},
			&cli.StringFlag{Name: "bwrap", Usage: "bubblewrap program", EnvVars: []string{"KILN_BUILDER_BWRAP"}, Value: "bwrap"},
			&cli.StringFlag{Name: "mock", Usage: "mock program (backend mock)", EnvVars: []string{"KILN_BUILDER_MOCK"}, Value: "mock"},
			&cli.StringFlag{Name: "sbuild", Usage: "sbuild program (backend sbuild)", EnvVars: []string{"KILN_BUILDER_SBUILD"}, Value: "sbuild"},
			&cli.StringFlag{Name: "repo-url", Usage: "kiln-web's base URL as builds reach it: sbuild builds install build dependencies from the buckets' repositories there (docs/repositories.md)", EnvVars: []string{"KILN_BUILDER_REPO_URL"}},
			&cli.StringFlag{Name: "createrepo", Usage: "createrepo_c program (backend mock)", EnvVars: []string{"KILN_BUILDER_CREATEREPO"}, Value: "createrepo_c"},
			&cli.StringFlag{Name: "environment-cache", Usage: "directory caching sbuild platforms' build environments (readable by the build user)", EnvVars: []string{"KILN_BUILDER_ENVIRONMENT_CACHE"}, Value: "/var/cache/kiln-builder/environments"},
			&cli.IntFlag{Name: "environment-keep", Usage: "most environment tarballs kept in the cache (least recently used go first)", EnvVars: []string{"KILN_BUILDER_ENVIRONMENT_KEEP"}, Value: 4},
			&cli.StringFlag{Name: "build-user", Usage: "account sbuild and mmdebstrap run as when the builder runs as root (needs subordinate uid and gid ranges)", EnvVars: []string{"KILN_BUILDER_BUILD_USER"}, Value: builder.DefaultBuildUser},
			&cli.StringFlag{Name: "listen-db", Usage: "direct connection to the primary for LISTEN and the builder's name lock; set it when --db goes through PgBouncer in transaction pooling mode (River then polls instead of listening)", EnvVars: []string{"KILN_BUILDER_LISTEN_DB"}},
			&cli.DurationFlag{Name: "poll-interval", Usage: "with --listen-db, how often River looks for new River jobs", EnvVars: []string{"KILN_BUILDER_POLL_INTERVAL"}, Value: builder.DefaultPollInterval},
			&cli.DurationFlag{Name: "listen-idle", Usage: "with no build running for this long, stop listening for notifications (every notifying commit of the farm wakes a listening session) until the next task; meanwhile the heartbeat reads the builder's row", EnvVars: []string{"KILN_BUILDER_LISTEN_IDLE"}, Value: builder.DefaultListenIdle},
			daemon.HealthFlag("builder"),
		}, run)
}

func run(c *cli.Context) error {
	slots := c.Int("slots")
	common, err := daemon.Common(c, int32(2*slots+6))
	if err != nil {
		return err
	}
	uids, err := builder.ParseUIDRange(c.String("build-uids"))
	if err != nil {
		return err
	}
	return builder.Run(c.Context, builder.RunConfig{DB: common.DB, ListenDB: c.String("listen-db"), HealthAddr: common.HealthAddr, Builder: builder.Config{
		Name:         c.String("name"),
		Platforms:    c.StringSlice("platform"),
		Slots:        slots,
		WorkDir:      c.String("workdir"),
		Version:      kcli.Version,
		Grace:        c.Duration("grace"),
		Heartbeat:    c.Duration("heartbeat"),
		LogLimit:     c.Int64("log-limit"),
		Hide:         c.StringSlice("hide"),
		BuildUIDs:    uids,
		UIDLockDir:   c.String("uid-lock-dir"),
		Bwrap:        c.String("bwrap"),
		Backend:      backend.Options{Mock: c.String("mock"), Sbuild: c.String("sbuild"), Createrepo: c.String("createrepo")},
		Logger:       common.Logger,
		BuildUser:    c.String("build-user"),
		Environments: &environment.Cache{Dir: c.String("environment-cache"), Keep: c.Int("environment-keep")},
		RepoURL:      c.String("repo-url"),
		PollInterval: c.Duration("poll-interval"),
		ListenIdle:   c.Duration("listen-idle"),
	}})
}
