// Package beneath opens files a build may have written without following
// anything the build planted there. A Root is a directory the builder made
// itself; every path below it is resolved with openat2 and RESOLVE_BENEATH,
// RESOLVE_NO_SYMLINKS and RESOLVE_NO_MAGICLINKS, so a symbolic link (or a
// ".." or an absolute link) anywhere in the path is refused rather than
// followed, and only regular files are handed out for reading. The builder
// reads, copies and measures build output only through this package.
package beneath

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// resolve are the openat2 resolve flags of every lookup below a Root.
const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// ErrNotRegular is returned when a path names something other than a
// regular file (a directory, a device, a FIFO, a socket).
var ErrNotRegular = errors.New("not a regular file")

// Root is an open directory below which paths are resolved.
type Root struct {
	f    *os.File
	path string
}

// OpenRoot opens the directory at path, which the builder made (a path the
// build cannot have changed); its last component must not be a symbolic
// link.
func OpenRoot(path string) (*Root, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return &Root{f: os.NewFile(uintptr(fd), path), path: filepath.Clean(path)}, nil
}

// OpenPath opens the directory at the absolute path, refusing a symbolic
// link in any of its components: for a directory below a work directory
// whose own path holds none (the builder resolves its work directory once).
func OpenPath(path string) (*Root, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("open %s: an absolute path is expected", path)
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			err = fmt.Errorf("%w (a symbolic link in the path is refused)", err)
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return &Root{f: os.NewFile(uintptr(fd), path), path: filepath.Clean(path)}, nil
}

// Path is the directory's path as it was opened.
func (r *Root) Path() string { return r.path }

// Close closes the directory.
func (r *Root) Close() error { return r.f.Close() }

// rel turns name (relative, or absolute below the root's path) into a path
// relative to the root.
func (r *Root) rel(name string) (string, error) {
	if filepath.IsAbs(name) {
		rel, err := filepath.Rel(r.path, name)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("not below %s", r.path)}
		}
		return rel, nil
	}
	return name, nil
}

func (r *Root) openat2(name string, flags uint64, mode uint64) (int, error) {
	rel, err := r.rel(name)
	if err != nil {
		return -1, err
	}
	for {
		fd, err := unix.Openat2(int(r.f.Fd()), rel, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Mode: mode, Resolve: resolve})
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue // EAGAIN: a rename raced the lookup; try again
		}
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
				err = fmt.Errorf("%w (a symbolic link or a path leaving %s is refused)", err, r.path)
			}
			return -1, &fs.PathError{Op: "open", Path: filepath.Join(r.path, rel), Err: err}
		}
		return fd, nil
	}
}

// Open opens the regular file name for reading. A symbolic link anywhere in
// name, a path leaving the root and anything but a regular file are refused.
func (r *Root) Open(name string) (*os.File, error) {
	// O_NONBLOCK: opening a FIFO the build left must not block the builder.
	fd, err := r.openat2(name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), filepath.Join(r.path, name))
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: f.Name(), Err: ErrNotRegular}
	}
	return f, nil
}

// OpenDir opens the directory name below the root as a Root of its own.
func (r *Root) OpenDir(name string) (*Root, error) {
	fd, err := r.openat2(name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	rel, _ := r.rel(name)
	p := filepath.Join(r.path, rel)
	return &Root{f: os.NewFile(uintptr(fd), p), path: p}, nil
}

// Mkdir makes the directory name (a single component) in the root and
// opens it. It fails when anything of that name exists.
func (r *Root) Mkdir(name string, perm os.FileMode) (*Root, error) {
	if strings.Contains(name, "/") {
		return nil, fmt.Errorf("mkdir %s: a single name is expected", name)
	}
	if err := unix.Mkdirat(int(r.f.Fd()), name, uint32(perm.Perm())); err != nil {
		return nil, &fs.PathError{Op: "mkdir", Path: filepath.Join(r.path, name), Err: err}
	}
	return r.OpenDir(name)
}

// Create makes the regular file name (a single component) in the root for
// writing. It fails when anything of that name exists.
func (r *Root) Create(name string, perm os.FileMode) (*os.File, error) {
	if strings.Contains(name, "/") {
		return nil, fmt.Errorf("create %s: a single name is expected", name)
	}
	fd, err := r.openat2(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, uint64(perm.Perm()))
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), filepath.Join(r.path, name)), nil
}

// Chown gives the root directory itself to uid and gid, through its
// descriptor.
func (r *Root) Chown(uid, gid int) error {
	// An O_PATH descriptor cannot be fchown'ed; AT_EMPTY_PATH works on both.
	if err := unix.Fchownat(int(r.f.Fd()), "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		return &fs.PathError{Op: "chown", Path: r.path, Err: err}
	}
	return nil
}

// Stat describes the root directory itself, through its descriptor.
func (r *Root) Stat() (fs.FileInfo, error) {
	return r.f.Stat()
}

// Remove removes the file name (a single component, never a directory) from
// the root; a symbolic link of that name is removed, not followed.
func (r *Root) Remove(name string) error {
	if strings.Contains(name, "/") {
		return fmt.Errorf("remove %s: a single name is expected", name)
	}
	if err := unix.Unlinkat(int(r.f.Fd()), name, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: filepath.Join(r.path, name), Err: err}
	}
	return nil
}

// CopyFile copies the regular file name below the root into the new file
// dst (a single name) of the directory to, and returns its size.
func (r *Root) CopyFile(name string, to *Root, dst string, perm os.FileMode) (int64, error) {
	in, err := r.Open(name)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := to.Create(dst, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("copying %s: %w", in.Name(), err)
	}
	return n, nil
}

// Entry is one entry of a directory walk.
type Entry struct {
	// Path is the entry's path relative to the walked root.
	Path string
	// Mode is its type and permissions (symbolic links are not followed).
	Mode fs.FileMode
	// Size is its length in bytes; Blocks the 512-byte blocks it occupies.
	Size, Blocks int64
	// Dev and Ino identify it (hard links share them).
	Dev, Ino uint64
	// Nlink is its number of hard links.
	Nlink uint64
}

// SkipDir, returned by a Walk function for a directory, skips its contents.
var SkipDir = fs.SkipDir

// Walk calls fn for every entry below the root, depth first in directory
// order, never following a symbolic link: directories are entered through
// descriptors opened beneath the root. Entries that vanish during the walk
// (a build still running) are skipped; fn's error stops the walk.
func (r *Root) Walk(fn func(Entry) error) error {
	return r.walk("", fn)
}

func (r *Root) walk(prefix string, fn func(Entry) error) error {
	// Reading needs a real descriptor, not the O_PATH one of OpenRoot.
	fd, err := unix.Openat2(int(r.f.Fd()), ".", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolve})
	if err != nil {
		return &fs.PathError{Op: "open", Path: r.path, Err: err}
	}
	dir := os.NewFile(uintptr(fd), r.path)
	defer dir.Close()
	for {
		names, err := dir.Readdirnames(1024)
		for _, name := range names {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue
				}
				return &fs.PathError{Op: "stat", Path: filepath.Join(r.path, name), Err: err}
			}
			e := Entry{Path: filepath.Join(prefix, name), Mode: fileMode(st.Mode), Size: st.Size, Blocks: st.Blocks,
				Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink}
			err := fn(e)
			if errors.Is(err, SkipDir) && e.Mode.IsDir() {
				continue
			}
			if err != nil {
				return err
			}
			if !e.Mode.IsDir() {
				continue
			}
			sub, err := r.OpenDir(name)
			if err != nil {
				if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
					continue // replaced while walking
				}
				return err
			}
			err = sub.walk(e.Path, fn)
			sub.Close()
			if err != nil {
				return err
			}
		}
		if err == io.EOF || (err == nil && len(names) == 0) {
			return nil
		}
		if err != nil {
			return &fs.PathError{Op: "readdir", Path: r.path, Err: err}
		}
	}
}

// Unlock gives the owner read, write and search permission on every
// directory below the root, through descriptors, so that a tree a build
// left (with directories it made unreadable to itself and so to a builder
// of the same uid) can be removed. Directories the caller does not own are
// left as they are.
func (r *Root) Unlock() error {
	fd, err := unix.Openat2(int(r.f.Fd()), ".", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolve})
	if err != nil {
		return &fs.PathError{Op: "open", Path: r.path, Err: err}
	}
	dir := os.NewFile(uintptr(fd), r.path)
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return &fs.PathError{Op: "readdir", Path: r.path, Err: err}
	}
	for _, name := range names {
		var st unix.Stat_t
		if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if st.Mode&0o700 != 0o700 {
			// Known to be a directory, not a link, and nothing of the build
			// runs any more to swap it.
			_ = unix.Fchmodat(fd, name, st.Mode&0o7777|0o700, 0)
		}
		sub, err := r.OpenDir(name)
		if err != nil {
			continue
		}
		err = sub.Unlock()
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Usage is the disk space the tree below the root occupies, in bytes: the
// allocated blocks of every entry, hard links counted once.
func (r *Root) Usage() (int64, error) {
	seen := map[[2]uint64]bool{}
	var total int64
	err := r.Walk(func(e Entry) error {
		if e.Nlink > 1 {
			key := [2]uint64{e.Dev, e.Ino}
			if seen[key] {
				return nil
			}
			seen[key] = true
		}
		total += e.Blocks * 512
		return nil
	})
	return total, err
}

func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	}
	return mode
}
