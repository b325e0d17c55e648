package repo

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// File is one file of a repository: its path below the repository's root
// and its content.
type File struct {
	Path string
	Data []byte
}

// Entry is a package in a repository's view.
type Entry struct {
	Package
	Sum   [32]byte
	Size  int64
	JobID int64
	// repoPlatform is the repository (platform) the entry belongs to.
	repoPlatform string
}

// sortEntries orders a repository's packages as its indexes list them.
func sortEntries(es []Entry) {
	sort.Slice(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Arch < b.Arch
	})
}

// PackagesIndex is the APT Packages file of es: the stored stanzas with
// the fields that locate each file appended. Deterministic: the same
// packages give the same bytes.
func PackagesIndex(es []Entry) []byte {
	sortEntries(es)
	var b bytes.Buffer
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Stanza)
		fmt.Fprintf(&b, "Filename: %s\nSize: %d\nSHA256: %x\n", e.Path(), e.Size, e.Sum)
	}
	return b.Bytes()
}

// aptSigner signs an APT Release file.
type aptSigner interface {
	ClearSign(ctx context.Context, fingerprint string, data []byte) ([]byte, error)
	DetachSign(ctx context.Context, fingerprint string, data []byte) ([]byte, error)
}

// APTMetadata makes the metadata files of an APT repository of one suite
// (the bucket) for one architecture: dists/SUITE/main/binary-ARCH/Packages
// and dists/SUITE/main/source/Sources (plain, .gz, .xz, each also by-hash),
// Release, InRelease and Release.gpg, signed with fingerprint.
func APTMetadata(ctx context.Context, s aptSigner, fingerprint, suite, arch string, es []Entry, srcs []SourceEntry, now time.Time) ([]File, error) {
	type result struct {
		files []File
		err   error
	}
	srcDone := make(chan result, 1)
	go func() {
		f, err := compressed(ctx, "main/source/Sources", SourcesIndex(srcs))
		srcDone <- result{f, err}
	}()
	packages, err := compressed(ctx, "main/binary-"+arch+"/Packages", PackagesIndex(es))
	sources := <-srcDone
	if err := errors.Join(err, sources.err); err != nil {
		return nil, err
	}
	indexes := append(packages, sources.files...)

	var rel strings.Builder
	fmt.Fprintf(&rel, "Origin: kiln\nLabel: kiln %s\nSuite: %s\nCodename: %s\nDate: %s\nArchitectures: %s\nComponents: main\nAcquire-By-Hash: yes\nSHA256:\n",
		suite, suite, suite, now.UTC().Format(time.RFC1123Z), arch)
	var files []File
	for _, f := range indexes {
		sum := sha256.Sum256(f.Data)
		fmt.Fprintf(&rel, " %x %d %s\n", sum, len(f.Data), f.Path)
		files = append(files, File{"dists/" + suite + "/" + f.Path, f.Data},
			File{"dists/" + suite + "/" + f.Path[:strings.LastIndexByte(f.Path, '/')] + "/by-hash/SHA256/" + hex.EncodeToString(sum[:]), f.Data})
	}
	release := []byte(rel.String())
	inRelease, err := s.ClearSign(ctx, fingerprint, release)
	if err != nil {
		return nil, err
	}
	sig, err := s.DetachSign(ctx, fingerprint, release)
	if err != nil {
		return nil, err
	}
	return append(files,
		File{"dists/" + suite + "/Release", release},
		File{"dists/" + suite + "/InRelease", inRelease},
		File{"dists/" + suite + "/Release.gpg", sig}), nil
}

// compressed is an index as path, path.gz and path.xz. xz runs while gzip
// compresses here: the two compressions are most of the time a big
// repository's publication takes.
func compressed(ctx context.Context, path string, plain []byte) ([]File, error) {
	type result struct {
		data []byte
		err  error
	}
	xzDone := make(chan result, 1)
	go func() {
		data, err := xzCompress(ctx, plain)
		xzDone <- result{data, err}
	}()
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	zw.Write(plain) //nolint:errcheck // writes to a bytes.Buffer do not fail
	zerr := zw.Close()
	x := <-xzDone
	if err := errors.Join(zerr, x.err); err != nil {
		return nil, err
	}
	return []File{{path, plain}, {path + ".gz", gz.Bytes()}, {path + ".xz", x.data}}, nil
}

func xzCompress(ctx context.Context, data []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "xz", "--compress", "--stdout", "-1", "--threads=1")
	cmd.Stdin = bytes.NewReader(data)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("xz: %w: %s", err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}
