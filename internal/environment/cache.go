package environment

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/blob"
)

// Cache keeps environment tarballs on a builder, by SHA-256: Dir/<sha256>.tar.zst.
// A tarball is fetched from the database the first time a build needs it;
// Evict removes the least recently used ones beyond Keep files or MaxBytes
// bytes, never one that a build is using.
type Cache struct {
	// Dir holds the tarballs; it is created when missing.
	Dir string
	// Keep is how many tarballs to keep at most (0: no limit by count).
	Keep int
	// MaxBytes is how many bytes of tarballs to keep at most (0: no limit
	// by size).
	MaxBytes int64

	mu    sync.Mutex
	inUse map[blob.Sum]int
}

// Path is where the tarball of sum lies in the cache.
func (c *Cache) Path(sum blob.Sum) string {
	return filepath.Join(c.Dir, sum.String()+".tar.zst")
}

// Entry is a tarball in use from the cache.
type Entry struct {
	// Path is where the tarball lies.
	Path string
	// Fetched says this use fetched it from the database (it was not
	// cached).
	Fetched bool
	// Release lets the cache evict it again.
	Release func()
}

// Use returns the tarball of sum, fetching it from db when it is not
// cached, and keeps it from eviction until its Release is called. The file
// is readable by everyone (builds run as the build user).
func (c *Cache) Use(ctx context.Context, db blob.DB, sum blob.Sum) (Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := Entry{Path: c.Path(sum)}
	if _, err := os.Stat(e.Path); err != nil {
		if !os.IsNotExist(err) {
			return Entry{}, fmt.Errorf("environment cache: %w", err)
		}
		if err := c.fetch(ctx, db, sum, e.Path); err != nil {
			return Entry{}, err
		}
		e.Fetched = true
	}
	now := time.Now()
	if err := os.Chtimes(e.Path, now, now); err != nil {
		return Entry{}, fmt.Errorf("environment cache: marking %s used: %w", e.Path, err)
	}
	if c.inUse == nil {
		c.inUse = map[blob.Sum]int{}
	}
	c.inUse[sum]++
	var once sync.Once
	e.Release = func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.inUse[sum]--; c.inUse[sum] <= 0 {
				delete(c.inUse, sum)
			}
		})
	}
	return e, nil
}

// fetch writes the blob sum to path through a temporary file, so that a
// cached file is always whole; blob.WriteFile checks the bytes against sum.
func (c *Cache) fetch(ctx context.Context, db blob.DB, sum blob.Sum, path string) error {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("environment cache: %w", err)
	}
	tmp := filepath.Join(c.Dir, ".fetch-"+sum.String())
	// A fetch that an earlier run did not finish.
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("environment cache: %w", err)
	}
	if err := blob.WriteFile(ctx, db, sum, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fetching environment %s: %w", sum, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("environment cache: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("environment cache: %w", err)
	}
	return nil
}

// Evict removes the least recently used tarballs until at most Keep remain
// and they take at most MaxBytes, skipping those in use. It returns the
// SHA-256s it removed.
func (c *Cache) Evict() ([]blob.Sum, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	entries, err := os.ReadDir(c.Dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("environment cache: %w", err)
	}
	type file struct {
		sum  blob.Sum
		size int64
		used time.Time
	}
	var files []file
	var total int64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".tar.zst")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		sum, err := blob.ParseSum(name)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("environment cache: %w", err)
		}
		files = append(files, file{sum, fi.Size(), fi.ModTime()})
		total += fi.Size()
	}
	sort.Slice(files, func(i, j int) bool { return files[i].used.Before(files[j].used) })
	var removed []blob.Sum
	count := len(files)
	for _, f := range files {
		over := (c.Keep > 0 && count > c.Keep) || (c.MaxBytes > 0 && total > c.MaxBytes)
		if !over {
			break
		}
		if c.inUse[f.sum] > 0 {
			continue
		}
		if err := os.Remove(c.Path(f.sum)); err != nil {
			return removed, fmt.Errorf("environment cache: %w", err)
		}
		removed = append(removed, f.sum)
		count--
		total -= f.size
	}
	return removed, nil
}
