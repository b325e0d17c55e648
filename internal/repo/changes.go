package repo

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/blob"
)

// ChangesName is the pool name of the .changes the publisher makes for a
// source package in a repository of architecture arch.
func (s Source) ChangesName(arch string) string {
	return s.Name + "_" + noEpoch(s.Version) + "_" + arch + ".changes"
}

// changesFile is one file a .changes lists.
type changesFile struct {
	FileSums
	section, priority string
}

// changesData is what a .changes says, before it is signed.
type changesData struct {
	Source       Source
	Distribution string // the bucket
	Arch         string // the repository's architecture
	JobID        int64
	Date         time.Time
	// Binaries are the binary packages of the upload, as published.
	Binaries []Entry
	files    []changesFile
}

// Text is the .changes (format 1.8, as dpkg-genchanges writes it) of the
// upload: the source package and the binaries, every file with the hashes
// of the bytes the repository serves.
func (c changesData) Text() []byte {
	archs := map[string]bool{}
	var names, descs []string
	for _, e := range c.Binaries {
		archs[e.Arch] = true
		names = append(names, e.Name)
		descs = append(descs, fmt.Sprintf(" %s - %s", e.Name, controlField(e.Stanza, "Description")))
	}
	archList := []string{"source"}
	for a := range archs {
		archList = append(archList, a)
	}
	sort.Strings(archList[1:])
	maint := controlField(c.Source.Stanza, "Maintainer")
	var b bytes.Buffer
	fmt.Fprintf(&b, "Format: 1.8\nDate: %s\nSource: %s\n", c.Date.UTC().Format(time.RFC1123Z), c.Source.Name)
	if len(names) > 0 {
		fmt.Fprintf(&b, "Binary: %s\n", strings.Join(names, " "))
	}
	fmt.Fprintf(&b, "Architecture: %s\nVersion: %s\nDistribution: %s\nUrgency: medium\nMaintainer: %s\nChanged-By: %s\n",
		strings.Join(archList, " "), c.Source.Version, c.Distribution, maint, maint)
	if len(descs) > 0 {
		fmt.Fprintf(&b, "Description:\n%s\n", strings.Join(descs, "\n"))
	}
	fmt.Fprintf(&b, "Changes:\n %s (%s) %s; urgency=medium\n .\n   * Built by kiln job %d and published into bucket %s.\n",
		c.Source.Name, c.Source.Version, c.Distribution, c.JobID, c.Distribution)
	b.WriteString("Checksums-Sha256:\n")
	for _, f := range c.files {
		fmt.Fprintf(&b, " %x %d %s\n", f.SHA256, f.Size, f.Name)
	}
	b.WriteString("Files:\n")
	for _, f := range c.files {
		fmt.Fprintf(&b, " %x %d %s %s %s\n", f.MD5, f.Size, f.section, f.priority, f.Name)
	}
	return b.Bytes()
}

// signChanges makes, for every source package the running publication added
// to a Debian repository, the .changes of its upload (the source and the
// job's binaries of that source the repository now serves), clear-signed
// with the bucket's key, as debsign signs one. Everything in it comes from
// what the repository serves and the publisher's own reading of it: no file
// a build wrote (a build's own .changes artifact is never read).
func (p *Publisher) signChanges(ctx context.Context, tx pgx.Tx, bucket string, views map[string]*repoView) error {
	var fpr string
	now := time.Now()
	for _, v := range views {
		if v.format != "deb" {
			continue
		}
		for name, s := range v.sources {
			if !s.added {
				continue
			}
			if fpr == "" {
				var err error
				if fpr, err = p.signingKey(ctx, tx, bucket); err != nil {
					return err
				}
			}
			c := changesData{Source: s.Source, Distribution: bucket, Arch: v.arch, JobID: s.JobID, Date: now}
			for _, e := range v.entries {
				if e.JobID == s.JobID && e.Source == s.Name && e.Format == "deb" {
					c.Binaries = append(c.Binaries, e)
				}
			}
			sortEntries(c.Binaries)
			for _, f := range s.Files {
				m, sum, n, err := sumBlob(ctx, tx, f.Sum)
				if err != nil {
					return fmt.Errorf(".changes of %s: %w", s.Name, err)
				}
				c.files = append(c.files, changesFile{FileSums{Name: f.Name, Size: n, MD5: m, SHA256: sum}, "misc", "optional"})
			}
			for _, e := range c.Binaries {
				m, sum, n, err := sumBlob(ctx, tx, e.Sum)
				if err != nil {
					return fmt.Errorf(".changes of %s: %w", s.Name, err)
				}
				section, priority := stanzaField(e.Stanza, "Section", "misc"), stanzaField(e.Stanza, "Priority", "optional")
				c.files = append(c.files, changesFile{FileSums{Name: e.Path()[strings.LastIndexByte(e.Path(), '/')+1:], Size: n, MD5: m, SHA256: sum}, section, priority})
			}
			signed, err := p.Keys.ClearSign(ctx, fpr, c.Text())
			if err != nil {
				return fmt.Errorf("signing the .changes of %s: %w", s.Name, err)
			}
			info, err := blob.Put(ctx, tx, bytes.NewReader(signed), true)
			if err != nil {
				return fmt.Errorf("storing the .changes of %s: %w", s.Name, err)
			}
			s.Changes = &SourceFile{Name: s.ChangesName(v.arch), Sum: info.Sum, Size: info.Size}
			v.sources[name] = s
		}
	}
	return nil
}

// controlField is the first line of a field of a control stanza ("" when it
// has none).
func controlField(stanza, name string) string {
	for _, line := range strings.Split(stanza, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// stanzaField is a one-line field of a control stanza, or def when it has
// none or one with characters a .changes Files line may not carry.
func stanzaField(stanza, name, def string) string {
	if v := controlField(stanza, name); v != "" && validName.MatchString(strings.ReplaceAll(v, "/", "-")) {
		return v
	}
	return def
}
