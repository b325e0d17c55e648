package builder

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/riverqueue/river"

	"github.com/kiln-build/kiln/internal/environment"
	"github.com/kiln-build/kiln/internal/sandbox"
)

// environmentMaker is the jobs.EnvironmentMaker of one feed: it makes a
// platform's next environment (environment.Maker) in one of the builder's
// slots, so an environment River job counts as a build while it runs.
type environmentMaker struct {
	b *Builder
	f *feed
}

// MakeEnvironment implements jobs.EnvironmentMaker.
func (m environmentMaker) MakeEnvironment(ctx context.Context, platform string) error {
	b := m.b
	if b.platform(platform) == nil {
		return river.JobCancel(fmt.Errorf("builder %s does not build platform %q", b.cfg.Name, platform))
	}
	select {
	case b.slots <- struct{}{}:
	case <-b.stopping:
		return river.JobSnooze(0)
	case <-m.f.quit:
		return river.JobSnooze(0)
	case <-ctx.Done():
		return river.JobSnooze(0)
	}
	defer func() { <-b.slots }()
	log := b.log.With("platform", platform)
	log.Info("making the platform's next environment")
	b.status("making the environment of " + platform)
	out := &tail{max: 8 << 10}
	mk := &environment.Maker{DB: b.db, Builder: b.cfg.Name, User: b.buildUser, WorkDir: b.cfg.WorkDir, Log: out,
		Runner: &sandbox.Plain{Home: "/tmp", User: b.buildUser}}
	if err := mk.MakeEnvironment(ctx, platform); err != nil {
		if errors.Is(err, environment.ErrNone) {
			return river.JobCancel(err)
		}
		log.Warn("making the environment failed", "err", err, "output", out.String())
		return fmt.Errorf("%w; mmdebstrap's last output:\n%s", err, out.String())
	}
	log.Info("environment made and installed")
	return nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string { return strings.TrimSpace(string(t.buf)) }
