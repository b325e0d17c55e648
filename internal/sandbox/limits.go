package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/internal/beneath"
)

// Default limits of one build, for platforms that set none
// (kiln.platform.max_processes, max_memory, max_disk).
const (
	DefaultProcesses = 1024
	DefaultMemory    = 8 << 30
	DefaultDisk      = 20 << 30
)

// Limits bound one build. Zero fields are not bounded.
type Limits struct {
	// Processes is the most processes and threads the build may run at
	// once: RLIMIT_NPROC inside its user namespace (fork fails past it),
	// and the build is killed when it is seen at the limit (counted four
	// times a second), as a fork bomb or a make that retries is.
	Processes int
	// Memory is the most resident anonymous memory (RssAnon) its
	// processes may use together, in bytes, measured four times a second.
	Memory int64
	// Disk is the most disk space its work directory (the private /tmp
	// included) may use, in bytes, measured about every second (less often
	// for a large tree) and when each command ends; it is also the largest file it may write
	// (RLIMIT_FSIZE). The build is also killed when the work directory's
	// file system runs out of space, before the builder's own writes fail.
	Disk int64
	// Reserve is the free space the work directory's file system keeps
	// (the builder still writes logs there); DefaultReserve when zero.
	Reserve int64
}

// DefaultReserve is the free space a build leaves on its work directory's
// file system: 64 MiB, or a tenth of the file system when that is less.
const DefaultReserve = 64 << 20

// watchInterval is how often processes, memory and the file system's free
// space are measured. The work directory is walked at most every second,
// and at most a tenth of the time (a walk of 50,000 entries takes about
// 0.7 s on a busy two-core machine), so a build with many files is
// measured less often rather than costing the builder a core.
const (
	watchInterval = 250 * time.Millisecond
	walkInterval  = time.Second
	walkShare     = 10
)

// LimitError is a build killed because it passed a limit.
type LimitError struct {
	// Limit names the limit: "processes", "memory", "disk" or "disk full".
	Limit string
	// Max is the limit, Used what was measured.
	Max, Used int64
}

// Describe says what happened, naming the limit's owner (a platform).
func (e *LimitError) Describe(owner string) string {
	of := ""
	if owner != "" {
		of = " (limit of " + owner + ")"
	}
	switch e.Limit {
	case "processes":
		return fmt.Sprintf("the build reached its limit of %d processes%s; it was killed", e.Max, of)
	case "memory":
		return fmt.Sprintf("the build used more than %s of memory%s; it was killed", Bytes(e.Max), of)
	case "disk":
		return fmt.Sprintf("the build used more than %s of disk in its work directory%s; it was killed", Bytes(e.Max), of)
	default:
		return fmt.Sprintf("the disk of the work directory is full (%s free); the build was killed", Bytes(e.Used))
	}
}

func (e *LimitError) Error() string { return e.Describe("") }

// Bytes formats n bytes for people: 20 GiB, 64 MiB, 512 KiB, 100 bytes.
func Bytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size {
			v := float64(n) / float64(u.size)
			if n%u.size == 0 {
				return fmt.Sprintf("%d %s", n/u.size, u.name)
			}
			return fmt.Sprintf("%.1f %s", v, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// watch measures one command's build against its limits.
type watch struct {
	limits   Limits
	work     string
	nextWalk time.Time
}

func (w *watch) active() bool {
	return w != nil && (w.limits.Processes > 0 || w.limits.Memory > 0 || w.limits.Disk > 0)
}

// check measures everything once; it returns the first limit passed.
func (w *watch) check(pid int) *LimitError {
	if w.limits.Processes > 0 || w.limits.Memory > 0 {
		tasks, mem := treeUsage(pid)
		if w.limits.Processes > 0 && tasks >= int64(w.limits.Processes) {
			return &LimitError{Limit: "processes", Max: int64(w.limits.Processes), Used: tasks}
		}
		if w.limits.Memory > 0 && mem > w.limits.Memory {
			return &LimitError{Limit: "memory", Max: w.limits.Memory, Used: mem}
		}
	}
	if w.limits.Disk <= 0 {
		return nil
	}
	if le := w.checkFree(); le != nil {
		return le
	}
	if time.Now().Before(w.nextWalk) {
		return nil
	}
	start := time.Now()
	le := w.checkUsage()
	w.nextWalk = time.Now().Add(max(walkInterval, walkShare*time.Since(start)))
	return le
}

// checkDisk measures the work directory and its file system's free space.
func (w *watch) checkDisk() *LimitError {
	if w.limits.Disk <= 0 {
		return nil
	}
	if le := w.checkFree(); le != nil {
		return le
	}
	return w.checkUsage()
}

// checkFree measures the free space of the work directory's file system.
func (w *watch) checkFree() *LimitError {
	var st unix.Statfs_t
	if err := unix.Statfs(w.work, &st); err == nil {
		free := int64(st.Bavail) * st.Bsize
		reserve := w.limits.Reserve
		if reserve <= 0 {
			reserve = min(DefaultReserve, int64(st.Blocks)*st.Bsize/10)
		}
		if free < reserve {
			return &LimitError{Limit: "disk full", Max: reserve, Used: free}
		}
	}
	return nil
}

// checkUsage walks the work directory.
func (w *watch) checkUsage() *LimitError {
	root, err := beneath.OpenRoot(w.work)
	if err != nil {
		return nil
	}
	defer root.Close()
	used, err := root.Usage()
	if err == nil && used > w.limits.Disk {
		return &LimitError{Limit: "disk", Max: w.limits.Disk, Used: used}
	}
	return nil
}

// treeUsage returns the threads and the resident anonymous memory of pid
// and all its descendants. Processes that leave the build's process group
// (setsid) are still its descendants: orphans are reparented to the init of
// the build's PID namespace, which is one of them.
func treeUsage(pid int) (tasks, mem int64) {
	procs := processes()
	for _, p := range procs.descendants([]int{pid}) {
		t, m := status(p)
		tasks += t
		mem += m
	}
	return tasks, mem
}

// CheckProc checks that /proc is of this process's PID namespace: the
// builder finds, measures and kills a build's processes by the pids /proc
// shows, which in a container with another namespace's /proc mounted are
// not the pids its signals reach.
func CheckProc() error {
	self, err := os.Readlink("/proc/self")
	if err != nil {
		return fmt.Errorf("reading /proc/self: %w", err)
	}
	if self != strconv.Itoa(os.Getpid()) {
		return fmt.Errorf("/proc is not of this process's PID namespace (/proc/self is %s, this process %d): mount a /proc of its own, "+
			"as the builder finds, measures and kills builds by the pids /proc shows", self, os.Getpid())
	}
	return nil
}

// processTable is what /proc says of every process: its children and its
// process group.
type processTable struct {
	children map[int][]int
	group    map[int]int
}

// processes reads the process table.
func processes() processTable {
	t := processTable{children: map[int][]int{}, group: map[int]int{}}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return t
	}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, pg := statOf(p); pp > 0 {
			t.children[pp] = append(t.children[pp], p)
			t.group[p] = pg
		}
	}
	return t
}

// descendants is roots and every process beneath them.
func (t processTable) descendants(roots []int) []int {
	var out []int
	seen := map[int]bool{}
	queue := roots
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
		queue = append(queue, t.children[p]...)
	}
	return out
}

// inGroup is every process of process group pgid.
func (t processTable) inGroup(pgid int) []int {
	var out []int
	for p, g := range t.group {
		if g == pgid {
			out = append(out, p)
		}
	}
	return out
}

// statOf reads the parent pid and the process group from /proc/PID/stat
// (0 when gone).
func statOf(pid int) (ppid, pgrp int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 3 {
		return 0, 0
	}
	ppid, _ = strconv.Atoi(fields[1])
	pgrp, _ = strconv.Atoi(fields[2])
	return ppid, pgrp
}

// killBuild kills a build: its process group and every descendant of the
// group's processes, those that left it included (setsid): sbuild's
// unshare mode runs the build in a session and PID namespace of its own,
// which a kill of the group alone leaves running. The processes are
// stopped first, until a look finds no new one, so that none forks out of
// reach between the look and the kill; then they are killed. A process
// that left the group after its parent had died is no one's descendant
// any more and is out of reach; so is a build whose processes all left
// the group.
func killBuild(pgid int) {
	if unix.Kill(-pgid, unix.SIGSTOP) == unix.ESRCH {
		// No process joins a group that does not exist: nothing to
		// kill, and no look at /proc after every build that ended well.
		return
	}
	found := map[int]bool{}
	for range 50 {
		t := processes()
		fresh := false
		for _, p := range t.descendants(t.inGroup(pgid)) {
			if !found[p] {
				found[p], fresh = true, true
				_ = unix.Kill(p, unix.SIGSTOP)
			}
		}
		if !fresh {
			break
		}
	}
	_ = unix.Kill(-pgid, unix.SIGKILL)
	for p := range found {
		_ = unix.Kill(p, unix.SIGKILL)
	}
}

// status reads the threads and RssAnon (bytes) of a process.
func status(pid int) (threads, rss int64) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		key, value, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch key {
		case "Threads":
			threads = n
		case "RssAnon":
			rss = n << 10 // kB
		}
	}
	return threads, rss
}

// IDPool hands out the host uids builds run as when the builder runs as
// root, one per build at a time, so that no two builds (of this builder or
// of another on the same host) ever share a uid. Each uid is claimed with
// a lock file (flock) in a host-wide directory for as long as the builder
// runs; uids of existing accounts are skipped.
type IDPool struct {
	free  chan ID
	locks []*os.File
}

// DefaultIDFirst and DefaultIDCount are the range of host uids builds of a
// root builder run as unless configured (--build-uids).
const (
	DefaultIDFirst = 1_000_000_000
	DefaultIDCount = 65536
)

// DefaultLockDir is where builders of a host claim their build uids.
const DefaultLockDir = "/run/kiln-builder/uids"

// ClaimIDs claims n uids (each with the same number as gid) from the range
// first..first+count-1, locking each in lockDir.
func ClaimIDs(lockDir string, first, count uint32, n int) (*IDPool, error) {
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("build uids: %w", err)
	}
	p := &IDPool{free: make(chan ID, n)}
	for id := uint64(first); id < uint64(first)+uint64(count) && len(p.locks) < n; id++ {
		if id == 0 || id >= 1<<32-1 || accountExists(uint32(id)) {
			continue
		}
		f, err := os.OpenFile(fmt.Sprintf("%s/%d", lockDir, id), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("build uids: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				continue // another builder's
			}
			p.Close()
			return nil, fmt.Errorf("build uids: locking %d: %w", id, err)
		}
		p.locks = append(p.locks, f)
		p.free <- ID{UID: uint32(id), GID: uint32(id)}
	}
	if len(p.locks) < n {
		p.Close()
		return nil, fmt.Errorf("build uids: only %d of the %d uids needed are free in %d-%d (other builders of this host hold the rest; give this builder its own range with --build-uids)",
			len(p.locks), n, first, uint64(first)+uint64(count)-1)
	}
	return p, nil
}

// Get takes a uid for a build; Put gives it back once the build's
// processes are gone and its files removed.
func (p *IDPool) Get() ID   { return <-p.free }
func (p *IDPool) Put(id ID) { p.free <- id }

// Close releases the claimed uids.
func (p *IDPool) Close() {
	for _, f := range p.locks {
		f.Close()
	}
	p.locks = nil
}

// accountExists reports whether /etc/passwd names uid.
func accountExists(uid uint32) bool {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return false
	}
	want := strconv.FormatUint(uint64(uid), 10)
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Split(line, ":"); len(f) > 2 && f[2] == want {
			return true
		}
	}
	return false
}
