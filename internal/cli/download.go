package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/names"
	"github.com/kiln-build/kiln/internal/report"
)

func downloadCommand() *cli.Command {
	return &cli.Command{
		Name:      "download",
		Usage:     "fetch a job's artifacts into DIR/PLATFORM/, checking each against its SHA-256",
		ArgsUsage: "JOB",
		Description: "Fetches the artifacts of each task's current attempt. Nothing is written outside DIR: names are " +
			"checked, DIR is opened as a root symlinks cannot leave, and no existing file is overwritten (a file " +
			"already there with the right content is skipped). A file whose bytes do not match is removed and the " +
			"command fails with exit status 7.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "platform", Usage: "only this platform's artifacts"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "directory to write into (created if missing)", Value: "."},
			jsonFlag,
		},
		Action: withDB(runDownload),
	}
}

// downloaded is one line of kiln download --json.
type downloaded struct {
	File     string `json:"file"`
	Path     string `json:"path"`
	Platform string `json:"platform"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Skipped  bool   `json:"skipped"`
}

func runDownload(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	id, err := oneID(c, "job id", parseJobID)
	if err != nil {
		return err
	}
	arts, err := report.Downloadable(ctx, db, id, c.String("platform"))
	if err != nil {
		return notFoundHint(err, "kiln jobs lists jobs")
	}
	if len(arts) == 0 {
		what := "job " + fmt.Sprint(id)
		if p := c.String("platform"); p != "" {
			what += " on " + p
		}
		return cli.Exit(what+" has no artifacts to download (kiln show "+fmt.Sprint(id)+" says how its tasks went)", ExitNotFound)
	}
	dir := c.String("output")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer root.Close()
	w := stdout(c)
	var done []downloaded
	for _, a := range arts {
		d, err := fetch(ctx, db, root, a)
		if err != nil {
			return err
		}
		d.Path = filepath.Join(dir, d.File)
		done = append(done, d)
		if !c.Bool("json") {
			verb := "wrote"
			if d.Skipped {
				verb = "have "
			}
			fmt.Fprintf(w, "%s %s (%s, sha256 %s)\n", verb, d.Path, format.Size(d.Size), d.SHA256[:16])
		}
	}
	if c.Bool("json") {
		return printJSON(w, done)
	}
	return nil
}

// fetch writes one artifact to <platform>/<file name> inside root. The
// name is checked first (the database enforces the same rule; this does
// not trust it); the file is created with O_EXCL, written while hashing, and
// removed again when its bytes do not match.
func fetch(ctx context.Context, db blob.DB, root *os.Root, a report.Artifact) (downloaded, error) {
	d := downloaded{File: filepath.Join(a.Platform, a.FileName), Platform: a.Platform, Size: a.Size}
	if err := safeTarget(a.Platform, a.FileName); err != nil {
		return d, err
	}
	if a.SHA256 == nil {
		return d, cli.Exit(fmt.Sprintf("%s was pruned by retention; it can no longer be downloaded", d.File), ExitNotFound)
	}
	d.SHA256 = *a.SHA256
	sum, err := blob.ParseSum(*a.SHA256)
	if err != nil {
		return d, err
	}
	if err := root.Mkdir(a.Platform, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return d, &integrityError{fmt.Sprintf("cannot create directory %s: %v", a.Platform, err)}
	}
	f, err := root.OpenFile(d.File, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		if same, _ := sameContent(root, d.File, sum); same {
			d.Skipped = true
			return d, nil
		}
		return d, &integrityError{fmt.Sprintf("%s is in the way: kiln never overwrites a file (remove it, or download into another directory with -o)", d.File)}
	}
	if err != nil {
		return d, &integrityError{fmt.Sprintf("cannot create %s: %v", d.File, err)}
	}
	_, err = blob.WriteTo(ctx, db, sum, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = root.Remove(d.File)
		if errors.Is(err, blob.ErrCorrupt) {
			return d, fmt.Errorf("%s: the stored bytes do not match their SHA-256 %s; the file was removed (tell a kiln admin): %w", d.File, d.SHA256, err)
		}
		return d, fmt.Errorf("downloading %s: %w", d.File, err)
	}
	return d, nil
}

// safeTarget checks the two parts of an artifact's path.
func safeTarget(platform, file string) error {
	if err := names.CheckName("platform", platform); err != nil {
		return &integrityError{"refusing to download: " + err.Error()}
	}
	if err := names.CheckFileName(file); err != nil {
		return &integrityError{"refusing to download: " + err.Error()}
	}
	return nil
}

// sameContent reports whether the regular file at name (not a symlink)
// already holds the bytes with digest sum.
func sameContent(root *os.Root, name string, sum blob.Sum) (bool, error) {
	st, err := root.Lstat(name)
	if err != nil || !st.Mode().IsRegular() {
		return false, err
	}
	f, err := root.Open(name)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return hex.EncodeToString(h.Sum(nil)) == sum.String(), nil
}
