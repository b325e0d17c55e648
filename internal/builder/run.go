package builder

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/dbconn"
)

// RunConfig is what kiln-builder's main hands to Run.
type RunConfig struct {
	// DB is the connection, as a member of kiln_builder.
	DB dbconn.Config
	// ListenDB, when set, is a direct (session) connection for LISTEN and
	// the builder's name lock; DB is then taken to go through a
	// transaction pooler such as PgBouncer, and River polls
	// (docs/scaling.md).
	ListenDB string
	// HealthAddr serves GET /healthz when not empty.
	HealthAddr string
	// Builder configures the builder itself. An empty Hide means
	// DefaultHide. The keytab in DB is always added to what builds
	// cannot see.
	Builder Config
}

// Run connects, registers the builder and works its queues until ctx ends.
func Run(ctx context.Context, cfg RunConfig) error {
	bc := cfg.Builder
	cfg.DB.Pooled = cfg.ListenDB != ""
	db, err := dbconn.Open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer db.Close()
	if cfg.ListenDB != "" {
		scfg := cfg.DB
		scfg.URL, scfg.Pooled, scfg.MaxConns = cfg.ListenDB, false, 1
		if bc.Session, err = dbconn.Open(ctx, scfg); err != nil {
			return fmt.Errorf("--listen-db: %w", err)
		}
		defer bc.Session.Close()
		bc.PollOnly = true
	}
	if len(bc.Hide) == 0 {
		bc.Hide = DefaultHide()
	}
	if kt := cfg.DB.Keytab; kt != "" {
		// The builder's own keytab is never visible to builds.
		bc.Hide = append(bc.Hide, strings.TrimPrefix(kt, "FILE:"))
	}
	b, err := New(ctx, db, bc)
	if err != nil {
		return err
	}
	if err := daemon.ServeHealth(ctx, bc.Logger, cfg.HealthAddr, b.Health); err != nil {
		return err
	}
	return b.Run(ctx)
}

// DefaultHide are the paths hidden from builds unless the configuration
// names its own: the builder's configuration, the usual keytab locations
// and the files the Kerberos environment variables point at.
func DefaultHide() []string {
	hide := []string{"/etc/kiln", "/etc/krb5.keytab", "/var/lib/kiln-builder/keytab"}
	for _, v := range []string{"KRB5_CLIENT_KTNAME", "KRB5_KTNAME", "KRB5CCNAME"} {
		if p := os.Getenv(v); p != "" {
			_, path, found := strings.Cut(p, ":")
			if !found {
				path = p
			}
			if strings.HasPrefix(path, "/") {
				hide = append(hide, path)
			}
		}
	}
	return hide
}

// ParseUIDRange reads FIRST-LAST (as --build-uids gives it); empty is the
// zero range, which means the default.
func ParseUIDRange(s string) (UIDRange, error) {
	if s == "" {
		return UIDRange{}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.ParseUint(a, 10, 32)
	last, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil || first == 0 || last < first || last >= 1<<32-1 {
		return UIDRange{}, fmt.Errorf("--build-uids must be FIRST-LAST, two uids above 0 with FIRST <= LAST, not %q", s)
	}
	return UIDRange{First: uint32(first), Count: uint32(last - first + 1)}, nil
}
