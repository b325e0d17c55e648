package environment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/sandbox"
)

// Maker makes a platform's next environment on a builder and installs it:
// the work of an environment River job (riverjob.EnvironmentWorker).
type Maker struct {
	// DB is the builder's connection (its role registered Builder).
	DB blob.DB
	// Builder is the builder's name.
	Builder string
	// Runner runs mmdebstrap, as User.
	Runner sandbox.Runner
	// User is the build user (nil when the builder is not root).
	User *sandbox.User
	// WorkDir is where the tarball is made and copied to (two directories
	// below it, removed afterwards).
	WorkDir string
	// Log receives mmdebstrap's output.
	Log io.Writer
}

// MakeEnvironment makes platform's next environment from the spec in
// kiln.platform_environment and makes it the platform's current one. The
// previous one stays in use until then.
func (m *Maker) MakeEnvironment(ctx context.Context, platform string) error {
	var raw []byte
	err := m.DB.QueryRow(ctx, `SELECT spec FROM kiln.platform_environment WHERE platform = $1`, platform).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("platform %s has no environment spec (kiln admin environment create): %w", platform, ErrNone)
	}
	if err != nil {
		return fmt.Errorf("reading platform %s's environment spec: %w", platform, err)
	}
	var spec Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return fmt.Errorf("platform %s's environment spec: %w", platform, err)
	}
	dir, err := os.MkdirTemp(m.WorkDir, "environment-")
	if err != nil {
		return fmt.Errorf("making platform %s's environment: %w", platform, err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("making platform %s's environment: %w", platform, err)
	}
	if err := m.User.Chown(dir); err != nil {
		return fmt.Errorf("making platform %s's environment: %w", platform, err)
	}
	// The builder's own directory, which the build user cannot write: the
	// tarball is copied there before it is read.
	into, err := os.MkdirTemp(m.WorkDir, "environment-made-")
	if err != nil {
		return fmt.Errorf("making platform %s's environment: %w", platform, err)
	}
	defer os.RemoveAll(into)
	log := m.Log
	if log == nil {
		log = io.Discard
	}
	made, err := Create(ctx, m.Runner, spec, dir, into, log)
	if err != nil {
		return err
	}
	if _, err := Install(ctx, m.DB, m.Builder, platform, made); err != nil {
		return err
	}
	return nil
}
