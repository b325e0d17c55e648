package soak

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// busyBuilders returns the indexes of running, unpaused builders, those
// holding a building task first (shuffled within each group).
func (s *soak) busyBuilders(ctx context.Context) (busy, idle []int) {
	var holding []string
	rows, err := s.admin.Query(ctx, "SELECT DISTINCT builder FROM kiln.task WHERE status = 'building'")
	if err == nil {
		holding, _ = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	for i, b := range s.builders {
		if !b.running() || b.isPaused() {
			continue
		}
		if slices.Contains(holding, fmt.Sprintf("soak-%s-b%d", s.id, i+1)) {
			busy = append(busy, i)
		} else {
			idle = append(idle, i)
		}
	}
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	s.rng.Shuffle(len(busy), func(i, j int) { busy[i], busy[j] = busy[j], busy[i] })
	s.rng.Shuffle(len(idle), func(i, j int) { idle[i], idle[j] = idle[j], idle[i] })
	return busy, idle
}

// killBuilder kills a builder with SIGKILL, preferably one that is
// building, and starts it again after a moment, as systemd would.
func (s *soak) killBuilder(ctx context.Context) {
	busy, idle := s.busyBuilders(ctx)
	victims := append(busy, idle...)
	if len(victims) == 0 {
		return
	}
	b := s.builders[victims[0]]
	if err := b.signal(syscall.SIGKILL); err != nil {
		return
	}
	b.wait(10 * time.Second)
	s.mu.Lock()
	s.faults.Kills++
	if len(busy) > 0 {
		s.faults.KillsMidBuild++
	}
	s.mu.Unlock()
	s.rngMu.Lock()
	delay := time.Duration(s.rng.Int64N(int64(time.Second)))
	s.rngMu.Unlock()
	s.restarts.Go(func() {
		sleep(ctx, delay)
		if err := b.start(); err != nil {
			s.mu.Lock()
			s.faults.BuilderRestartsFailed++
			s.mu.Unlock()
			s.violate("every task final", "restarting %s: %v", b.name, err)
		}
	})
}

// pauseBuilder stops a building builder with SIGSTOP for three horizons:
// the janitor must declare its attempts lost and requeue them, and the
// builder, resumed, must find itself fenced off (Check then finds one
// success per task).
func (s *soak) pauseBuilder(ctx context.Context) {
	var i int
	for {
		busy, _ := s.busyBuilders(ctx)
		if len(busy) > 0 {
			i = busy[0]
			break
		}
		if ctx.Err() != nil {
			return
		}
		sleep(ctx, 50*time.Millisecond)
	}
	b := s.builders[i]
	name := fmt.Sprintf("soak-%s-b%d", s.id, i+1)
	if err := b.signal(syscall.SIGSTOP); err != nil {
		return
	}
	var held []int64
	if rows, err := s.admin.Query(ctx, "SELECT id FROM kiln.task WHERE builder = $1", name); err == nil {
		held, _ = pgx.CollectRows(rows, pgx.RowTo[int64])
	}
	s.say("soak: paused %s (holding tasks %v) for %s", b.name, held, 3*s.cfg.Horizon)
	sleep(ctx, 3*s.cfg.Horizon)
	var still, lost int
	err := s.admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'building'), count(*) FILTER (WHERE status = 'lost')
		FROM kiln.attempt WHERE builder = $1 AND task_id = ANY($2)`, name, held).Scan(&still, &lost)
	_ = b.signal(syscall.SIGCONT)
	s.mu.Lock()
	s.faults.Pauses++
	s.faults.PausedLost += lost
	s.mu.Unlock()
	switch {
	case err != nil:
		s.violate("no attempt still building", "checking the paused builder: %v", err)
	case still > 0:
		s.violate("no attempt still building", "%d attempts of %s were still building after %s paused (horizon %s)",
			still, b.name, 3*s.cfg.Horizon, s.cfg.Horizon)
	}
	s.say("soak: resumed %s; %d of the %d attempts it held had been declared lost (the others ended before the janitor came)", b.name, lost, len(held))
}

// restartDB restarts PostgreSQL (pg_ctl restart -m fast): every connection
// of every process breaks at once.
func (s *soak) restartDB(ctx context.Context) {
	args := []string{filepath.Join(s.cl.BinDir, "pg_ctl"), "-D", filepath.Join(s.cl.Dir, "data"),
		"-l", filepath.Join(s.cl.Dir, "postgres.log"), "-m", "fast", "-w", "-t", "120", "restart"}
	if os.Geteuid() == 0 {
		// .ci/pgcluster runs the cluster as kiln-test when root.
		args = append([]string{"runuser", "-u", "kiln-test", "--"}, args...)
	}
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		s.violate("every task final", "restarting PostgreSQL: %v\n%s", err, out)
		return
	}
	s.mu.Lock()
	s.faults.DBRestarts++
	s.mu.Unlock()
}

// failover kills the primary as a crash would (pg_ctl stop -m immediate:
// no shutdown checkpoint, every connection cut) and promotes the standby.
// With synchronous replication everything committed is on the standby;
// the daemons' multi-host URLs find the new primary once it accepts
// writes.
func (s *soak) failover(ctx context.Context) {
	run := func(args ...string) error {
		if os.Geteuid() == 0 {
			// .ci/pgcluster runs the cluster as kiln-test when root.
			args = append([]string{"runuser", "-u", "kiln-test", "--"}, args...)
		}
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	pgctl := filepath.Join(s.cl.BinDir, "pg_ctl")
	s.mu.Lock()
	s.failedOverAt = time.Now()
	s.mu.Unlock()
	if err := run(pgctl, "-D", filepath.Join(s.cl.Dir, "data"), "-m", "immediate", "-w", "stop"); err != nil {
		s.violate("every task final", "killing the primary: %v", err)
		return
	}
	if err := run(pgctl, "-D", s.cl.StandbyDir, "-w", "-t", "120", "promote"); err != nil {
		s.violate("every task final", "promoting the standby: %v", err)
		return
	}
	s.mu.Lock()
	s.faults.Failovers++
	s.mu.Unlock()
}

// bothHosts returns primary's URL with the standby's host added and
// target_session_attrs=read-write: a connection goes to whichever of the
// two accepts writes.
func bothHosts(primary, standby string) (string, error) {
	p, err := url.Parse(primary)
	if err != nil {
		return "", fmt.Errorf("primary URL: %w", err)
	}
	sb, err := url.Parse(standby)
	if err != nil {
		return "", fmt.Errorf("standby URL: %w", err)
	}
	p.Host += "," + sb.Host
	q := p.Query()
	q.Set("target_session_attrs", "read-write")
	p.RawQuery = q.Encode()
	return p.String(), nil
}

// checkSynchronous makes sure the primary waits for its standby on commit
// (.ci/pgcluster with KILN_PG_SYNC_STANDBY=1): without it a failover may
// lose what was committed, and the run would prove nothing.
func checkSynchronous(ctx context.Context, admin string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connecting to the cluster: %w", err)
	}
	defer conn.Close(ctx)
	var sync int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'`).Scan(&sync); err != nil {
		return fmt.Errorf("reading pg_stat_replication: %w", err)
	}
	var commit string
	if err := conn.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&commit); err != nil {
		return err
	}
	if sync == 0 || commit == "off" || commit == "local" {
		return fmt.Errorf("failover needs a synchronous standby (found %d, synchronous_commit %s): start the cluster with KILN_PG_SYNC_STANDBY=1", sync, commit)
	}
	return nil
}

// cancelJob cancels, with kiln cancel as the submitter, a job that has a
// task building (or else one still waiting).
func (s *soak) cancelJob(ctx context.Context) {
	var job int64
	err := s.admin.QueryRow(ctx, `SELECT job_id FROM kiln.task WHERE status IN ('building', 'pending')
		ORDER BY status = 'building' DESC, random() LIMIT 1`).Scan(&job)
	if err != nil {
		return
	}
	out, err := s.kiln(ctx, s.as(s.person), "cancel", fmt.Sprint(job))
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// It finished between the choice and the cancel.
		s.faults.CancelsLate++
		s.say("soak: kiln cancel %d: %v: %s", job, err, out)
		return
	}
	s.faults.Cancels++
}
