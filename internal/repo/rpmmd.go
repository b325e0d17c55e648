package repo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/blob"
)

// rpmMetadata makes an rpm-md repository's repodata with createrepo_c in
// the publisher's own tree for the repository (WorkDir/rpm/BUCKET/PLATFORM):
// the tree is brought to exactly the entries (new files written from their
// blobs, gone ones removed), createrepo_c --update reuses what it read
// before, and repomd.xml is signed (repomd.xml.asc).
func (p *Publisher) rpmMetadata(ctx context.Context, tx pgx.Tx, bucket, platform, fingerprint string, entries []Entry) ([]File, error) {
	root := filepath.Join(p.WorkDir, "rpm", bucket, platform)
	want := map[string]bool{}
	for _, e := range entries {
		rel := e.Path()
		want[rel] = true
		path := filepath.Join(root, rel)
		if st, err := os.Lstat(path); err == nil && st.Mode().IsRegular() && st.Size() == e.Size {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		os.Remove(path)
		if err := blob.WriteFile(ctx, tx, e.Sum, path); err != nil {
			return nil, fmt.Errorf("writing %s: %w", rel, err)
		}
	}
	pkgDir := filepath.Join(root, "Packages")
	err := filepath.WalkDir(pkgDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if !want[filepath.ToSlash(rel)] {
			return os.Remove(path)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(pkgDir, 0o755); err != nil {
		return nil, err
	}
	if _, err := run(ctx, "createrepo_c", "--update", "--no-database", "--workers", "2", "--quiet", root); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "repodata")
	list, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []File
	var repomd []byte
	for _, d := range list {
		if !d.Type().IsRegular() || strings.HasSuffix(d.Name(), ".asc") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, d.Name()))
		if err != nil {
			return nil, err
		}
		if d.Name() == "repomd.xml" {
			repomd = data
		}
		files = append(files, File{"repodata/" + d.Name(), data})
	}
	if repomd == nil {
		return nil, errors.New("createrepo_c wrote no repomd.xml")
	}
	sig, err := p.Keys.DetachSign(ctx, fingerprint, repomd)
	if err != nil {
		return nil, err
	}
	return append(files, File{"repodata/repomd.xml.asc", sig}), nil
}
