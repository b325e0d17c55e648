package task

import "testing"

func TestStatusFinal(t *testing.T) {
	for s, want := range map[Status]bool{
		Pending: false, Building: false,
		Succeeded: true, Failed: true, TimedOut: true, Cancelled: true, Skipped: true, Lost: true, Returned: true,
	} {
		if got := s.Final(); got != want {
			t.Errorf("%s.Final() = %v, want %v", s, got, want)
		}
	}
}

func TestJobStatusFinal(t *testing.T) {
	final := map[JobStatus]bool{JobSubmitted: false, JobQueued: false, JobBuilding: false,
		JobInvalid: true, JobSucceeded: true, JobFailed: true, JobPartiallyFailed: true, JobCancelled: true}
	if len(final) != len(JobStatuses()) {
		t.Fatalf("the test knows %d job statuses, JobStatuses has %d", len(final), len(JobStatuses()))
	}
	for _, s := range JobStatuses() {
		want, ok := final[s]
		if !ok {
			t.Fatalf("job status %s unknown to the test", s)
		}
		if got := s.Final(); got != want {
			t.Errorf("%s.Final() = %v, want %v", s, got, want)
		}
	}
	if _, err := ParseJobStatus("pending"); err == nil {
		t.Error("ParseJobStatus accepted a task status")
	}
	if s, err := ParseJobStatus("partially_failed"); err != nil || s != JobPartiallyFailed {
		t.Errorf("ParseJobStatus(partially_failed) = %q, %v", s, err)
	}
}
