// Package soak runs kiln under faults and checks that nothing is lost: real
// kiln-builder, kiln-splitter and kiln-janitor processes work a stream of
// jobs on a private PostgreSQL cluster while builders are killed with
// SIGKILL and restarted, one builder is paused with SIGSTOP past the
// janitor's heartbeat horizon, PostgreSQL itself is restarted (or fails
// over to its standby, with kiln-web and kiln-publisher running too) and
// jobs are cancelled mid-build. At the end Check verifies what the farm
// promises (docs/reliability.md). cmd/kiln-soak is its command.
package soak

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/roles"
)

// Config is one soak run.
type Config struct {
	// Tasks is how many tasks the run submits, at least.
	Tasks int
	// Builders is the number of kiln-builder processes, each with Slots.
	Builders, Slots int
	// BuildTime is how long a noop build sleeps (the noop backend's sleep).
	BuildTime time.Duration
	// RPMEvery makes every RPMEvery-th job build on an rpmbuild platform
	// too (a real rpmbuild in the sandbox); 0 builds noop only.
	RPMEvery int
	// Kills is how many times a builder is killed with SIGKILL (and
	// restarted); Cancels how many jobs are cancelled while they build.
	Kills, Cancels int
	// Pause pauses one builder with SIGSTOP past the horizon, then resumes it.
	Pause bool
	// RestartDB restarts PostgreSQL (pg_ctl restart -m fast) once mid-run.
	RestartDB bool
	// Horizon and Interval are the janitor's --horizon and --interval.
	Horizon, Interval time.Duration
	// Seed seeds the choice of moments and victims (0: random).
	Seed uint64
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Bin is the directory holding kiln, kiln-builder, kiln-splitter and
	// kiln-janitor.
	Bin string
	// Keep keeps the database and the work directory afterwards.
	Keep bool
	// ViaPgBouncer connects the builders through the cluster's PgBouncer
	// (Cluster.PgBouncerURL, transaction pooling) with --listen-db straight
	// to the primary, River polling every PollInterval.
	ViaPgBouncer bool
	PollInterval time.Duration
	// Failover kills the primary (pg_ctl stop -m immediate) once mid-run
	// and promotes the synchronous standby (pg_ctl promote); every daemon
	// connects with a multi-host URL (primary, standby) and
	// target_session_attrs=read-write, and carries on. kiln-web and
	// kiln-publisher run too, and after the run each daemon must still
	// work without having been restarted (checkDaemonsAfterFailover).
	Failover bool
	// Out receives the progress and the report.
	Out io.Writer
}

// Cluster is the private PostgreSQL cluster the soak may restart.
type Cluster struct {
	// URL is the superuser URL (KILN_TEST_PGURL).
	URL string
	// Dir is the cluster's directory (.ci/pgcluster's DIR, holding data/).
	Dir string
	// BinDir holds pg_ctl.
	BinDir string
	// PgBouncerURL is the URL of a PgBouncer in front of the primary
	// (KILN_TEST_PGBOUNCER_URL; empty: none).
	PgBouncerURL string
	// StandbyURL and StandbyDir are the hot standby's URL and data
	// directory (KILN_TEST_STANDBY_URL, KILN_PG_STANDBY_DIR; empty: none).
	StandbyURL, StandbyDir string
}

// ClusterFromEnv reads the cluster .ci/with-cluster started. It refuses to
// run without one: the soak restarts the server it is given.
func ClusterFromEnv() (Cluster, error) {
	c := Cluster{URL: os.Getenv("KILN_TEST_PGURL"), Dir: os.Getenv("KILN_PGCLUSTER_DIR"), BinDir: os.Getenv("KILN_PG_BINDIR"),
		PgBouncerURL: os.Getenv("KILN_TEST_PGBOUNCER_URL"), StandbyURL: os.Getenv("KILN_TEST_STANDBY_URL"), StandbyDir: os.Getenv("KILN_PG_STANDBY_DIR")}
	if c.URL == "" || c.Dir == "" || c.BinDir == "" {
		return c, errors.New("no private cluster: run the soak inside .ci/with-cluster (make soak), which sets KILN_TEST_PGURL, KILN_PGCLUSTER_DIR and KILN_PG_BINDIR; it restarts the server it is given, so it never runs against another")
	}
	return c, nil
}

// Report is what a run did and found.
type Report struct {
	Seed       uint64
	Duration   time.Duration
	Jobs       int
	Tasks      map[string]int // tasks by final status
	Attempts   map[string]int // attempts by status
	Janitor    map[string]int // janitor events by kind
	Faults     Faults
	Violations []Violation
}

// Faults counts the faults injected.
type Faults struct {
	Kills, KillsMidBuild  int
	Pauses, PausedLost    int
	DBRestarts, Failovers int
	Cancels, CancelsLate  int
	SubmitRetries         int
	BuilderRestartsFailed int
}

// Run sets up a farm in a new database of cl, runs it under faults and
// checks it. The error is for a run that could not be carried out; broken
// promises are in the report's Violations.
func Run(ctx context.Context, cfg Config, cl Cluster) (*Report, error) {
	if cfg.Tasks < 1 || cfg.Builders < 1 || cfg.Slots < 1 {
		return nil, errors.New("tasks, builders and slots must be at least 1")
	}
	if cfg.Kills > 0 && cfg.Builders < 2 || cfg.Pause && cfg.Builders < 2 {
		return nil, errors.New("killing or pausing builders needs at least two of them")
	}
	if cfg.ViaPgBouncer && cl.PgBouncerURL == "" {
		return nil, errors.New("builders through PgBouncer: the cluster has none (KILN_TEST_PGBOUNCER_URL; .ci/pgcluster starts one)")
	}
	if cfg.ViaPgBouncer && cfg.PollInterval < 100*time.Millisecond {
		return nil, errors.New("builders through PgBouncer need a poll interval of at least 100ms (River's FetchCooldown)")
	}
	if cfg.Failover && (cl.StandbyURL == "" || cl.StandbyDir == "") {
		return nil, errors.New("failover: the cluster has no standby (KILN_TEST_STANDBY_URL, KILN_PG_STANDBY_DIR; .ci/pgcluster starts one)")
	}
	if cfg.Failover && (cfg.RestartDB || cfg.ViaPgBouncer) {
		return nil, errors.New("failover cannot go with --restart-db (it would restart the old primary) nor --via-pgbouncer (the harness's PgBouncer serves the old primary only)")
	}
	if cfg.Seed == 0 {
		cfg.Seed = mrand.Uint64()
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	began := time.Now()

	s, err := newSoak(ctx, cfg, cl)
	if err != nil {
		return nil, err
	}
	defer s.cleanup()
	s.say("soak: seed %d, database %s, work directory %s", cfg.Seed, s.dbName, s.root)
	if err := s.setUp(ctx); err != nil {
		return nil, err
	}
	if err := s.startDaemons(ctx); err != nil {
		return nil, err
	}
	runErr := s.run(ctx)
	if runErr == nil && cfg.Failover {
		s.checkDaemonsAfterFailover(ctx)
	}
	s.stopDaemons()
	if runErr != nil {
		return nil, runErr
	}
	// The checks run with a fresh deadline: a run that timed out is still checked.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer ccancel()
	rep := &Report{Seed: cfg.Seed, Faults: s.faults}
	if rep.Violations, err = Check(cctx, s.admin, []string{s.root}); err != nil {
		return nil, err
	}
	var jobs int64
	if err := s.admin.QueryRow(cctx, "SELECT count(*) FROM kiln.job").Scan(&jobs); err != nil {
		return nil, fmt.Errorf("counting jobs: %w", err)
	}
	// A submit cut off after its commit may be in the database without
	// having been counted; one that was acknowledged must be there.
	if n := s.submitted.Load(); jobs < n {
		s.violate("every committed submission kept", "%d submits acknowledged, only %d jobs in the database", n, jobs)
	}
	rep.Violations = append(s.violations, rep.Violations...)
	if len(rep.Violations) > 0 {
		s.cfg.Keep = true // for a look at the logs and the rows
	}
	if err := s.tally(cctx, rep); err != nil {
		return nil, err
	}
	rep.Duration = time.Since(began)
	return rep, nil
}

// soak is a run in progress.
type soak struct {
	cfg    Config
	cl     Cluster
	rngMu  sync.Mutex
	rng    *mrand.Rand
	id     string // short random id naming the database and the roles
	dbName string
	dbURL  string
	root   string
	admin  *pgxpool.Pool

	person    string
	builders  []*proc
	splitter  *proc
	janitor   *proc
	web       *proc // with Failover only, as is publisher
	publisher *proc
	webURL    string
	gnupg     string // the publisher's GnuPG home
	srpm      string

	mu         sync.Mutex
	faults     Faults
	violations []Violation
	restarts   sync.WaitGroup
	submitted  atomic.Int64 // jobs submitted
	submitDone atomic.Bool
	// failedOverAt is when the primary was killed (zero: not yet).
	failedOverAt time.Time
}

func newSoak(ctx context.Context, cfg Config, cl Cluster) (*soak, error) {
	id := make([]byte, 3)
	_, _ = rand.Read(id)
	s := &soak{cfg: cfg, cl: cl, rng: mrand.New(mrand.NewPCG(cfg.Seed, cfg.Seed^0x5eed)), id: hex.EncodeToString(id)}
	s.dbName = "kiln_soak_" + s.id
	s.dbURL = withDB(cl.URL, s.dbName)
	if cfg.Failover {
		var err error
		if s.dbURL, err = bothHosts(s.dbURL, cl.StandbyURL); err != nil {
			return nil, err
		}
		if err := checkSynchronous(ctx, cl.URL); err != nil {
			return nil, err
		}
	}
	root, err := os.MkdirTemp("", "kiln-soak-")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	// Builds run as an unprivileged user, who must reach the work directories.
	if err := os.Chmod(root, 0o755); err != nil {
		return nil, err
	}
	s.root = root
	admin, err := pgxpool.New(ctx, cl.URL)
	if err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE "+s.dbName)
	admin.Close()
	if err != nil {
		return nil, fmt.Errorf("creating database %s: %w", s.dbName, err)
	}
	if s.admin, err = pgxpool.New(ctx, s.dbURL); err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", s.dbName, err)
	}
	return s, nil
}

// cleanup drops what the run created, unless asked to keep it.
func (s *soak) cleanup() {
	if s.admin != nil {
		s.admin.Close()
	}
	if s.cfg.Keep {
		s.say("soak: kept database %s and %s", s.dbName, s.root)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if admin, err := pgxpool.New(ctx, s.cl.URL); err == nil {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+s.dbName+" WITH (FORCE)")
		for _, r := range s.roles() {
			_, _ = admin.Exec(ctx, fmt.Sprintf(`DROP ROLE IF EXISTS "%s"`, r))
		}
		admin.Close()
	}
	_ = os.RemoveAll(s.root)
}

// roles are the login roles the run creates.
func (s *soak) roles() []string {
	r := []string{s.person, "splitter_s" + s.id, "janitor_s" + s.id}
	if s.cfg.Failover {
		r = append(r, "web_s"+s.id, s.publisherRole())
	}
	for i := range s.cfg.Builders {
		r = append(r, "builder_"+s.builderHost(i))
	}
	return r
}

func (s *soak) builderHost(i int) string { return fmt.Sprintf("s%sb%d", s.id, i+1) }

// publisherRole is kiln-publisher's login role (kiln admin daemon-host
// knows no publisher: a DBA creates its role, roles/README.md).
func (s *soak) publisherRole() string { return "publisher_s" + s.id }

func (s *soak) say(format string, args ...any) {
	fmt.Fprintf(s.cfg.Out, format+"\n", args...)
}

func (s *soak) violate(check, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, Violation{Check: check, Detail: fmt.Sprintf(format, args...)})
}

// withDB returns url with its database (and optionally user) replaced.
func withDB(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + db
	return u.String()
}

// pooledAs returns the database URL for role through the cluster's
// PgBouncer.
func (s *soak) pooledAs(role string) string {
	u, _ := url.Parse(s.as(role))
	via, _ := url.Parse(s.cl.PgBouncerURL)
	u.Host = via.Host
	return u.String()
}

// as returns the database URL for role.
func (s *soak) as(role string) string {
	u, _ := url.Parse(s.dbURL)
	u.User = url.User(role)
	return u.String()
}

// platforms of the run: two noop platforms every job builds on, and an
// rpmbuild platform some jobs build on too.
const (
	platformA   = "soak-noop-a"
	platformB   = "soak-noop-b"
	platformRPM = "soak-rpmbuild"
)

// noopLines is how many numbered lines each noop build prints over its
// sleep (the noop backend's lines setting); Check counts them in the
// stored logs.
const noopLines = 10

// setUp migrates the database, applies the roles and creates the logins,
// the platforms, the bucket and a source package, all with kiln's own
// commands.
func (s *soak) setUp(ctx context.Context) error {
	s.person = "soak_" + s.id
	settings := fmt.Sprintf(`{"sleep": %q, "lines": %d}`, s.cfg.BuildTime.String(), noopLines)
	cmds := [][]string{
		{"admin", "migrate"},
		{"admin", "roles", "apply"},
		{"admin", "platform", "add", "--arch", "x86_64", "--backend", "noop", "--format", "rpm", "--settings", settings, "--timeout", "10m", platformA},
		{"admin", "platform", "add", "--arch", "x86_64", "--backend", "noop", "--format", "rpm", "--settings", settings, "--timeout", "10m", platformB},
		{"admin", "platform", "add", "--arch", "x86_64", "--backend", "rpmbuild", "--timeout", "10m", platformRPM},
		{"admin", "bucket", "add", "--open", "devel"},
		{"admin", "person", "add", "--bucket", "devel", s.person},
		// One person submits every job within minutes: far more than the
		// default quota of a real person's hour (docs/quotas.md).
		{"admin", "quota", "set", "--jobs-per-hour", "1000000", s.person},
		{"admin", "daemon-host", "add", "splitter", "s" + s.id},
		{"admin", "daemon-host", "add", "janitor", "s" + s.id},
	}
	for i := range s.cfg.Builders {
		cmds = append(cmds, []string{"admin", "builder-host", "add", s.builderHost(i)})
	}
	if s.cfg.Failover {
		cmds = append(cmds, []string{"admin", "daemon-host", "add", "web", "s" + s.id})
	}
	// The group roles come first (roles/00-groups.sql): migrations grant to them.
	if _, err := s.admin.Exec(ctx, roles.Groups()); err != nil {
		return fmt.Errorf("creating the group roles: %w", err)
	}
	if s.cfg.Failover {
		if _, err := s.admin.Exec(ctx, fmt.Sprintf(`CREATE ROLE "%s" LOGIN IN ROLE kiln_publisher`, s.publisherRole())); err != nil {
			return fmt.Errorf("creating the publisher's role: %w", err)
		}
	}
	for _, c := range cmds {
		if out, err := s.kiln(ctx, s.dbURL, c...); err != nil {
			return fmt.Errorf("kiln %s: %w\n%s", strings.Join(c, " "), err, out)
		}
	}
	var err error
	s.srpm, err = makeSRPM(ctx, filepath.Join(s.root, "srpm"), "soakpkg")
	return err
}

// run submits the jobs, injects the faults and waits until every task has
// ended (or the run's deadline passes).
func (s *soak) run(ctx context.Context) error {
	sub, err := pgxpool.New(ctx, s.as(s.person))
	if err != nil {
		return fmt.Errorf("connecting as %s: %w", s.person, err)
	}
	defer sub.Close()
	client, err := submit.New(sub)
	if err != nil {
		return err
	}
	jobs, perJob := s.plan()
	s.say("soak: %d jobs (%d tasks), %d builders x %d slots, builds of %s, %d kills, %d cancels, pause %v, database restart %v",
		jobs, perJob, s.cfg.Builders, s.cfg.Slots, s.cfg.BuildTime, s.cfg.Kills, s.cfg.Cancels, s.cfg.Pause, s.cfg.RestartDB)

	subCtx, stopSubmitting := context.WithCancel(ctx)
	defer stopSubmitting()
	var wg sync.WaitGroup
	wg.Go(func() { s.submitAll(subCtx, client, jobs) })
	err = s.drive(ctx, perJob)
	stopSubmitting()
	wg.Wait()
	s.restarts.Wait()
	if err != nil {
		return err
	}
	// The janitor repairs what dead builders left (River jobs still
	// running for ended tasks) a horizon after the fact: give it the time
	// it promises, then check.
	settle := s.cfg.Horizon + 2*s.cfg.Interval + time.Second
	s.say("soak: letting the janitor settle for %s", settle)
	sleep(ctx, settle)
	return nil
}

// plan returns how many jobs to submit and how many tasks they make.
func (s *soak) plan() (jobs, tasks int) {
	for tasks < s.cfg.Tasks {
		jobs++
		tasks += len(s.platformsOf(jobs))
	}
	return jobs, tasks
}

// platformsOf is the platforms job number n (from 1) builds on.
func (s *soak) platformsOf(n int) []string {
	p := []string{platformA, platformB}
	if s.cfg.RPMEvery > 0 && n%s.cfg.RPMEvery == 0 {
		p = append(p, platformRPM)
	}
	return p
}

// submitAll submits the jobs as the person, keeping the queue a few slots
// deep so that submitting, splitting and building overlap for the whole
// run. A failed submit (the database restarting) is retried with the same
// key, which makes it idempotent.
func (s *soak) submitAll(ctx context.Context, client *submit.Client, jobs int) {
	defer s.submitDone.Store(true)
	deep := int64(4 * s.cfg.Builders * s.cfg.Slots)
	for n := 1; n <= jobs; n++ {
		for ctx.Err() == nil {
			var waiting int64
			err := s.admin.QueryRow(ctx, `SELECT (SELECT count(*) FROM kiln.task WHERE status = 'pending')
				+ (SELECT count(*) FROM kiln.job WHERE status = 'submitted')`).Scan(&waiting)
			if err == nil && waiting < deep {
				break
			}
			sleep(ctx, 50*time.Millisecond)
		}
		req := submit.Request{Bucket: "devel", Platforms: s.platformsOf(n), Files: []string{s.srpm}, Key: fmt.Sprintf("soak-%s-%d", s.id, n)}
		for ctx.Err() == nil {
			_, err := client.Submit(ctx, req)
			if err == nil {
				s.submitted.Add(1)
				break
			}
			s.mu.Lock()
			s.faults.SubmitRetries++
			s.mu.Unlock()
			sleep(ctx, 200*time.Millisecond)
		}
	}
}

// progress is the farm's state as the driver sees it.
type progress struct {
	finished, building, waiting int
}

func (s *soak) progress(ctx context.Context) (progress, error) {
	var p progress
	err := s.admin.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE finished_at IS NOT NULL),
			count(*) FILTER (WHERE status = 'building'),
			count(*) FILTER (WHERE status = 'pending') + (SELECT count(*) FROM kiln.job WHERE status = 'submitted')
		FROM kiln.task`).Scan(&p.finished, &p.building, &p.waiting)
	return p, err
}

// fault is an injection due once the run has finished a share of its tasks.
type fault struct {
	at   float64
	name string
	do   func(context.Context)
}

// schedule places the faults at random points of the run's progress.
func (s *soak) schedule() []fault {
	var fs []fault
	for range s.cfg.Kills {
		fs = append(fs, fault{at: 0.05 + 0.85*s.rng.Float64(), name: "kill", do: s.killBuilder})
	}
	for range s.cfg.Cancels {
		fs = append(fs, fault{at: 0.05 + 0.8*s.rng.Float64(), name: "cancel", do: s.cancelJob})
	}
	if s.cfg.Pause {
		fs = append(fs, fault{at: 0.2 + 0.2*s.rng.Float64(), name: "pause", do: func(ctx context.Context) {
			s.restarts.Go(func() { s.pauseBuilder(ctx) })
		}})
	}
	if s.cfg.RestartDB {
		fs = append(fs, fault{at: 0.45 + 0.2*s.rng.Float64(), name: "restart PostgreSQL", do: s.restartDB})
	}
	if s.cfg.Failover {
		fs = append(fs, fault{at: 0.35 + 0.3*s.rng.Float64(), name: "fail over to the standby", do: s.failover})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].at < fs[j].at })
	return fs
}

// drive injects the faults as the run progresses and returns once every
// job is submitted and every task has ended.
func (s *soak) drive(ctx context.Context, total int) error {
	faults := s.schedule()
	lastSaid := time.Now()
	for {
		p, err := s.progress(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return s.timedOut(total)
			}
			sleep(ctx, 200*time.Millisecond) // the database may be restarting
			continue
		}
		done := float64(p.finished) / float64(total)
		for len(faults) > 0 && done >= faults[0].at {
			f := faults[0]
			faults = faults[1:]
			s.say("soak: %4.0f%% done: %s", 100*done, f.name)
			f.do(ctx)
		}
		if s.submitDone.Load() && p.waiting == 0 && p.building == 0 && len(faults) == 0 {
			s.say("soak: all %d tasks ended", p.finished)
			return nil
		}
		if time.Since(lastSaid) > 10*time.Second {
			s.say("soak: %d of %d tasks ended, %d building, %d waiting", p.finished, total, p.building, p.waiting)
			lastSaid = time.Now()
		}
		if ctx.Err() != nil {
			return s.timedOut(total)
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// timedOut records a run that did not end in time; the checks still run
// and say what was left.
func (s *soak) timedOut(total int) error {
	s.violate("every task final", "the run did not end within %s (%d tasks planned, %d jobs submitted)",
		s.cfg.Timeout, total, s.submitted.Load())
	return nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// tally fills the report's counts.
func (s *soak) tally(ctx context.Context, rep *Report) error {
	count := func(sql string) (map[string]int, error) {
		rows, err := s.admin.Query(ctx, sql)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		m := map[string]int{}
		for rows.Next() {
			var k string
			var n int
			if err := rows.Scan(&k, &n); err != nil {
				return nil, err
			}
			m[k] = n
		}
		return m, rows.Err()
	}
	var err error
	if rep.Tasks, err = count("SELECT status, count(*) FROM kiln.task GROUP BY 1"); err != nil {
		return fmt.Errorf("counting tasks: %w", err)
	}
	if rep.Attempts, err = count("SELECT status, count(*) FROM kiln.attempt GROUP BY 1"); err != nil {
		return fmt.Errorf("counting attempts: %w", err)
	}
	if rep.Janitor, err = count(`SELECT kind || coalesce(':' || (detail->>'action'), ''), count(*) FROM kiln.event
		WHERE kind LIKE 'janitor.%' GROUP BY 1`); err != nil {
		return fmt.Errorf("counting janitor events: %w", err)
	}
	return s.admin.QueryRow(ctx, "SELECT count(*) FROM kiln.job").Scan(&rep.Jobs)
}

// Print writes the report: what was done, what the farm ended with, and
// each check's verdict.
func (r *Report) Print(w io.Writer) {
	f := r.Faults
	fmt.Fprintf(w, "\nsoak report (seed %d, %s)\n", r.Seed, r.Duration.Round(time.Second))
	fmt.Fprintf(w, "  jobs            %d\n", r.Jobs)
	fmt.Fprintf(w, "  tasks           %s\n", counts(r.Tasks))
	fmt.Fprintf(w, "  attempts        %s\n", counts(r.Attempts))
	fmt.Fprintf(w, "  janitor repairs %s\n", counts(r.Janitor))
	fmt.Fprintf(w, "  faults          %d builder kills (%d mid-build), %d pauses past the horizon (%d attempts declared lost), %d database restarts, %d failovers, %d jobs cancelled mid-run (%d too late), %d submits retried\n",
		f.Kills, f.KillsMidBuild, f.Pauses, f.PausedLost, f.DBRestarts, f.Failovers, f.Cancels, f.CancelsLate, f.SubmitRetries)
	byCheck := map[string][]Violation{}
	for _, v := range r.Violations {
		byCheck[v.Check] = append(byCheck[v.Check], v)
	}
	for _, c := range Checks {
		verdict := "ok"
		if n := len(byCheck[c]); n > 0 {
			verdict = fmt.Sprintf("FAILED (%d)", n)
		} else if c == checkAfterFailover && f.Failovers == 0 {
			verdict = "not run (no failover)"
		}
		fmt.Fprintf(w, "  %-52s %s\n", c, verdict)
		for _, v := range byCheck[c] {
			fmt.Fprintf(w, "      %s\n", v.Detail)
		}
	}
}

// counts formats a map of counts in a stable order.
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
