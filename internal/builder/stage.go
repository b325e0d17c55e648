package builder

import (
	"errors"
	"io/fs"
	"os/exec"
	"syscall"

	"github.com/kiln-build/kiln/internal/backend"
	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/internal/task"
)

// minFreeBytes is the free space below which a failed build is taken to
// have failed because the builder's work directory is full (the farm's
// fault, retried elsewhere), not because of the package.
const minFreeBytes = 64 << 20

// failureStage is the failure stage the task protocol records for the
// attempt (kiln.failure_stage): "" unless it failed; unsatisfiable build
// dependencies are their own stage; a failure no stage was named for is the
// package's build.
func (i *buildInfo) failureStage() string {
	switch {
	case i.Status != string(task.Failed):
		return ""
	case i.Unsatisfiable:
		return task.StageUnsatisfiable
	case i.Stage == "":
		return task.StageBuild
	}
	return i.Stage
}

// stageOf is the stage of a failure err that happened where fallback says
// (a backend.Stage constant), unless err shows it was the farm's: the work
// directory ran out of space (ENOSPC, or almost no space left in dir when
// dir is not ""), or the sandbox or tool could not even be started. A
// build that passed a limit of the platform stays the package's.
func stageOf(err error, dir, fallback string) string {
	var limit *sandbox.LimitError
	if errors.As(err, &limit) {
		return fallback
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || (dir != "" && lowOnSpace(dir)) {
		return task.StageOutOfDisk
	}
	var se *backend.StageError
	if errors.As(err, &se) {
		return se.Stage
	}
	var (
		execErr *exec.Error
		pathErr *fs.PathError
	)
	if errors.As(err, &execErr) || (errors.As(err, &pathErr) && pathErr.Op == "fork/exec") ||
		errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOMEM) {
		return task.StagePrepareEnvironment
	}
	return fallback
}

// lowOnSpace reports whether the file system of dir has almost no space
// left for unprivileged writers.
func lowOnSpace(dir string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Bavail*uint64(st.Bsize) < minFreeBytes
}
