package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/dbconn"
)

// writtenFile is where kiln keeps the primary's WAL position after the
// person's last command that used the primary, one file per db setting:
// $XDG_STATE_HOME/kiln/written-HASH (default ~/.local/state).
func writtenFile(c *cli.Context) (string, error) {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding where to keep the last write's position: %w", err)
		}
		dir = filepath.Join(home, ".local", "state")
	}
	sum := sha256.Sum256([]byte(settingsOf(c).get("db")))
	return filepath.Join(dir, "kiln", "written-"+hex.EncodeToString(sum[:8])), nil
}

// rememberWritten keeps the primary's current WAL position in writtenFile.
func rememberWritten(c *cli.Context, db *pgxpool.Pool) error {
	lsn, err := dbconn.Reads{Primary: db}.Written(c.Context)
	if err != nil {
		return err
	}
	path, err := writtenFile(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keeping the last write's position: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(lsn+"\n"), 0o600); err != nil {
		return fmt.Errorf("keeping the last write's position: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("keeping the last write's position: %w", err)
	}
	return nil
}

// lastWritten reads writtenFile ("" when there is none).
func lastWritten(c *cli.Context) (string, error) {
	path, err := writtenFile(c)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the last write's position: %w", err)
	}
	lsn := strings.TrimSpace(string(b))
	if err := dbconn.CheckPosition(lsn); err != nil {
		return "", fmt.Errorf("%s: %w (remove the file)", path, err)
	}
	return lsn, nil
}
