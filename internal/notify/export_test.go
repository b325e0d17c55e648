package notify

// SetAfterSend sets the hook that runs once a recipient accepted a report
// and before that is recorded (a crash there is the at-least-once window).
func (r *Reporter) SetAfterSend(f func() error) { r.afterSend = f }
