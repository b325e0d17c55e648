package task

import (
	"fmt"
	"slices"
	"strings"
)

// Status is the status of a task (kiln.task.status) or of an attempt
// (kiln.attempt.status, which also has Returned).
type Status string

// The statuses.
const (
	Pending   Status = "pending"
	Building  Status = "building"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	TimedOut  Status = "timed_out"
	Cancelled Status = "cancelled"
	Skipped   Status = "skipped"
	Lost      Status = "lost"
	// Returned is for attempts only: given back on shutdown, not counted
	// as lost.
	Returned Status = "returned"
)

// Final reports whether nothing changes a task (or attempt) in this status
// any more.
func (s Status) Final() bool {
	switch s {
	case Succeeded, Failed, TimedOut, Cancelled, Skipped, Lost, Returned:
		return true
	}
	return false
}

// String implements fmt.Stringer.
func (s Status) String() string { return string(s) }

// Statuses are the statuses a task can have (not Returned), in the order of
// its life.
func Statuses() []Status {
	return []Status{Pending, Building, Succeeded, Failed, TimedOut, Cancelled, Skipped, Lost}
}

// JobStatus is the status of a job (kiln.job.status). The database sets it:
// kiln.job_status_from_tasks derives it from the job's tasks.
type JobStatus string

// The statuses of a job.
const (
	JobSubmitted       JobStatus = "submitted"
	JobInvalid         JobStatus = "invalid"
	JobQueued          JobStatus = "queued"
	JobBuilding        JobStatus = "building"
	JobSucceeded       JobStatus = "succeeded"
	JobFailed          JobStatus = "failed"
	JobPartiallyFailed JobStatus = "partially_failed"
	JobCancelled       JobStatus = "cancelled"
)

// JobStatuses are the statuses a job can have, in the order of its life.
func JobStatuses() []JobStatus {
	return []JobStatus{JobSubmitted, JobInvalid, JobQueued, JobBuilding, JobSucceeded, JobFailed, JobPartiallyFailed, JobCancelled}
}

// Final reports whether nothing changes a job in this status any more.
func (s JobStatus) Final() bool {
	switch s {
	case JobInvalid, JobSucceeded, JobFailed, JobPartiallyFailed, JobCancelled:
		return true
	}
	return false
}

// Valid reports whether s is a status a job can have.
func (s JobStatus) Valid() bool { return slices.Contains(JobStatuses(), s) }

// String implements fmt.Stringer.
func (s JobStatus) String() string { return string(s) }

// ParseJobStatus returns the job status named s, or an error naming the
// known ones.
func ParseJobStatus(s string) (JobStatus, error) {
	if st := JobStatus(s); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("unknown job status %q (known: %s)", s, JobStatusNames())
}

// JobStatusNames are the names of the job statuses, joined by ", " (for
// help texts and errors).
func JobStatusNames() string {
	names := make([]string, 0, 8)
	for _, s := range JobStatuses() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}
