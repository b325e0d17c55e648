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
