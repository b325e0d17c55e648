package backend

import "fmt"

// Stages of a build, as a StageError names them. The values are the
// failure stages of the task protocol (kiln.failure_stage, internal/task),
// so that the builder passes them on as they are.
const (
	StageFetch       = "fetch-sources"       // unpacking the submitted sources
	StageEnvironment = "prepare-environment" // setting up the chroot or sandbox
	StageBuildDeps   = "install-build-deps"  // installing the build dependencies
	StageBuild       = "build"               // the package's own build
	StageCollect     = "collect-artifacts"   // finding the results
)

// stageText is how a stage reads in a message.
var stageText = map[string]string{
	StageFetch:       "fetching sources",
	StageEnvironment: "preparing the environment",
	StageBuildDeps:   "installing build dependencies",
	StageBuild:       "building",
	StageCollect:     "collecting results",
}

// StageError is a failed build that says where it failed. Unsatisfiable is
// its own outcome, distinct from a failed build: the build dependencies
// cannot be installed at all (not a broken mirror, not a failing build),
// and Detail names what could not be installed and why.
type StageError struct {
	// Stage is one of the Stage constants.
	Stage string
	// Unsatisfiable is true when the build dependencies cannot be met.
	Unsatisfiable bool
	// Detail is the tool's own word on it: for sbuild its Fail-Stage and,
	// for unsatisfiable build dependencies, dose3's explanation
	// ("kiln-base:amd64 (>= 1.2)").
	Detail string
	// Err is the underlying error (the tool's exit status), if any.
	Err error
}

func (e *StageError) Error() string {
	msg, ok := stageText[e.Stage]
	if !ok {
		msg = e.Stage
	}
	if e.Unsatisfiable {
		msg += ": unsatisfiable build dependencies"
	} else {
		msg += " failed"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg = fmt.Sprintf("%s (%v)", msg, e.Err)
	}
	return msg
}

func (e *StageError) Unwrap() error { return e.Err }
