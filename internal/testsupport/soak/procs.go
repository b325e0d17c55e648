package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a daemon the soak runs: started, killed, paused and restarted.
type proc struct {
	name string
	prog string
	args []string
	env  []string
	log  string // file receiving its output, appended to across restarts

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

// start starts the process; it must not be running.
func (p *proc) start() error {
	f, err := os.OpenFile(p.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== soak: starting %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.prog, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group keeps a Ctrl-C of the soak away from it (the
	// soak stops it); it dies with the soak.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited, p.paused = cmd, exited, false
	p.mu.Unlock()
	return nil
}

// running reports whether the process runs (paused or not).
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) isPaused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// signal sends sig to the process itself (not its group: its builds are
// in groups of their own and must fend for themselves).
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return errors.New("not started")
	}
	switch sig {
	case syscall.SIGSTOP:
		p.paused = true
	case syscall.SIGCONT:
		p.paused = false
	}
	return p.cmd.Process.Signal(sig)
}

// wait waits up to d for the process to exit and reports whether it did.
func (p *proc) wait(d time.Duration) bool {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited == nil {
		return true
	}
	select {
	case <-exited:
		return true
	case <-time.After(d):
		return false
	}
}

// startDaemons starts the splitter, the janitor and the builders, each as
// its own login role.
func (s *soak) startDaemons(ctx context.Context) error {
	logs := filepath.Join(s.root, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	daemon := func(name, prog string, role string, args ...string) *proc {
		return &proc{name: name, prog: filepath.Join(s.cfg.Bin, prog), args: args, log: filepath.Join(logs, name+".log"),
			env: []string{"KILN_DB=" + s.as(role), "KILN_LOG_LEVEL=info"}}
	}
	s.splitter = daemon("splitter", "kiln-splitter", "splitter_s"+s.id, "--workers", "2")
	s.janitor = daemon("janitor", "kiln-janitor", "janitor_s"+s.id,
		"--horizon", s.cfg.Horizon.String(), "--interval", s.cfg.Interval.String())
	for i := range s.cfg.Builders {
		host := s.builderHost(i)
		b := daemon(fmt.Sprintf("builder%d", i+1), "kiln-builder", "builder_"+host,
			"--name", fmt.Sprintf("soak-%s-b%d", s.id, i+1),
			"--platform", platformA, "--platform", platformB, "--platform", platformRPM,
			"--slots", fmt.Sprint(s.cfg.Slots), "--workdir", filepath.Join(s.root, "work", host),
			"--heartbeat", (s.cfg.Horizon / 6).String(), "--grace", "1s")
		if s.cfg.ViaPgBouncer {
			b.env[0] = "KILN_DB=" + s.pooledAs("builder_"+host)
			b.args = append(b.args, "--listen-db", s.as("builder_"+host), "--poll-interval", s.cfg.PollInterval.String())
		}
		s.builders = append(s.builders, b)
	}
	others := []*proc{s.janitor, s.splitter}
	if s.cfg.Failover {
		s.gnupg = filepath.Join(s.root, "gnupg")
		if err := os.MkdirAll(s.gnupg, 0o700); err != nil {
			return err
		}
		s.web = daemon("web", "kiln-web", "web_s"+s.id, "--listen", "127.0.0.1:0")
		s.publisher = daemon("publisher", "kiln-publisher", s.publisherRole(),
			"--gnupghome", s.gnupg, "--workdir", filepath.Join(s.root, "publisher"), "--poll", "5s")
		others = append(others, s.web, s.publisher)
	}
	for _, p := range append(others, s.builders...) {
		if err := p.start(); err != nil {
			return err
		}
	}
	if s.web != nil {
		var err error
		if s.webURL, err = s.web.address(ctx); err != nil {
			return err
		}
	}
	// Every builder registers before the first job; a builder that cannot
	// start (bubblewrap missing, a bad flag) fails the run here.
	deadline := time.Now().Add(time.Minute)
	for {
		var online int
		err := s.admin.QueryRow(ctx, "SELECT count(*) FROM kiln.builder WHERE state = 'online'").Scan(&online)
		if err == nil && online == len(s.builders) {
			return nil
		}
		for _, p := range append(others, s.builders...) {
			if !p.running() {
				return fmt.Errorf("%s exited at start; see %s:\n%s", p.name, p.log, tail(p.log))
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d of %d builders came online within a minute (logs in %s)", online, len(s.builders), logs)
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// stopDaemons stops every daemon with SIGTERM, as systemd would; one that
// does not stop within its grace is a violation (and is killed).
func (s *soak) stopDaemons() {
	all := append([]*proc{s.splitter}, s.builders...)
	all = append(all, s.janitor)
	if s.web != nil {
		all = append(all, s.web, s.publisher)
	}
	for _, p := range all {
		if p == nil || !p.running() {
			continue
		}
		if p.isPaused() {
			_ = p.signal(syscall.SIGCONT)
		}
		_ = p.signal(syscall.SIGTERM)
	}
	for _, p := range all {
		if p == nil || p.wait(30*time.Second) {
			continue
		}
		s.violate("no build process left running", "%s did not stop within 30 s of SIGTERM; killed (log %s)", p.name, p.log)
		_ = p.signal(syscall.SIGKILL)
		p.wait(10 * time.Second)
	}
	if s.gnupg != "" {
		// The publisher's gpg started an agent for its home, which outlives
		// it as it would on a publisher host.
		if out, err := exec.Command("gpgconf", "--homedir", s.gnupg, "--kill", "all").CombinedOutput(); err != nil {
			s.violate("no build process left running", "stopping the publisher's gpg-agent: %v: %s", err, out)
		}
	}
}

// webAddress is how kiln-web logs the address it serves on.
var webAddress = regexp.MustCompile(`kiln-web listening.*url=(http://127\.0\.0\.1:\d+)`)

// address waits for kiln-web to log its address and returns it.
func (p *proc) address(ctx context.Context) (string, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		b, _ := os.ReadFile(p.log)
		if m := webAddress.FindSubmatch(b); m != nil {
			return string(m[1]), nil
		}
		if !p.running() || time.Now().After(deadline) || ctx.Err() != nil {
			return "", fmt.Errorf("%s logged no address; see %s:\n%s", p.name, p.log, tail(p.log))
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// kiln runs the kiln command with the database URL.
func (s *soak) kiln(ctx context.Context, db string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.cfg.Bin, "kiln"), append([]string{"--db", db, "--color", "never"}, args...)...)
	cmd.Env = append(os.Environ(), "KILN_CONFIG=/dev/null")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// makeSRPM makes a tiny source RPM with rpmbuild -bs.
func makeSRPM(ctx context.Context, top, name string) (string, error) {
	for _, d := range []string{"SPECS", "SOURCES", "SRPMS"} {
		if err := os.MkdirAll(filepath.Join(top, d), 0o755); err != nil {
			return "", err
		}
	}
	spec := filepath.Join(top, "SPECS", name+".spec")
	text := fmt.Sprintf(`Name: %[1]s
Version: 1.0
Release: 1
Summary: a package for kiln's soak
License: MIT

%%description
Built over and over by kiln's soak.

%%prep

%%build
echo built %[1]s > %[1]s.txt

%%install
mkdir -p %%{buildroot}/usr/share/%[1]s
cp %[1]s.txt %%{buildroot}/usr/share/%[1]s/

%%files
/usr/share/%[1]s
`, name)
	if err := os.WriteFile(spec, []byte(text), 0o644); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, "rpmbuild", "-bs", "--define", "_topdir "+top, spec).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("rpmbuild -bs: %w\n%s", err, out)
	}
	m, _ := filepath.Glob(filepath.Join(top, "SRPMS", "*.src.rpm"))
	if len(m) != 1 {
		return "", fmt.Errorf("rpmbuild -bs made %d source packages", len(m))
	}
	return m[0], nil
}

// tail returns the last lines of a file.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}
