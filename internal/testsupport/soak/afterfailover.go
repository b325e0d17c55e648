package soak

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// checkDaemonsAfterFailover checks, at the end of a run with a failover and
// before the daemons stop, that every daemon still works on the promoted
// standby without having been restarted (builders killed by the soak
// itself excepted): the builds in flight at the failover finished (their
// logs are counted line by line by Check), the splitter split and the
// builders built jobs submitted after it, kiln-web serves the newest job's
// page, and kiln-publisher handled publication requests of jobs that ended
// after it, leaving none pending.
func (s *soak) checkDaemonsAfterFailover(ctx context.Context) {
	const check = checkAfterFailover
	s.mu.Lock()
	at := s.failedOverAt
	s.mu.Unlock()
	if at.IsZero() {
		s.violate(check, "the run ended before the failover")
		return
	}
	for _, p := range []*proc{s.splitter, s.janitor, s.web, s.publisher} {
		if !p.running() {
			s.violate(check, "%s is not running (log %s):\n%s", p.name, p.log, tail(p.log))
		}
	}
	var inFlight, inFlightLines, after, newest int64
	err := s.admin.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM kiln.attempt WHERE status = 'succeeded' AND started_at < $1 AND finished_at > $1),
			(SELECT count(*) FROM kiln.attempt a JOIN kiln.task t ON t.id = a.task_id JOIN kiln.platform p ON p.name = t.platform
			 WHERE a.status = 'succeeded' AND a.started_at < $1 AND a.finished_at > $1 AND p.backend_settings ? 'lines'),
			(SELECT count(*) FROM kiln.job WHERE submitted_at > $1 AND status = 'succeeded'),
			(SELECT coalesce(max(id), 0) FROM kiln.job WHERE submitted_at > $1 AND status = 'succeeded')`, at).Scan(&inFlight, &inFlightLines, &after, &newest)
	if err != nil {
		s.violate(check, "reading what happened after the failover: %v", err)
		return
	}
	if inFlight == 0 {
		s.violate(check, "no build that was running at the failover finished")
	}
	if after == 0 {
		s.violate(check, "no job submitted after the failover succeeded")
	}
	s.say("soak: after the failover: %d builds in flight at the failover finished (%d with counted log lines), %d jobs submitted after it succeeded",
		inFlight, inFlightLines, after)

	if newest > 0 {
		if err := s.servesJob(ctx, newest); err != nil {
			s.violate(check, "kiln-web: %v", err)
		} else {
			s.say("soak: kiln-web serves job %d's page", newest)
		}
	}

	// The publisher handles each request within its coalescing delay of
	// the notification, or at its next poll.
	var done, pending int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE done_at > $1), count(*) FILTER (WHERE done_at IS NULL)
			FROM kiln.publication_request`, at).Scan(&done, &pending)
		if err != nil {
			s.violate(check, "reading publication requests: %v", err)
			return
		}
		if pending == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleep(ctx, 500*time.Millisecond)
	}
	if done == 0 {
		s.violate(check, "kiln-publisher handled no publication request after the failover")
	}
	if pending > 0 {
		s.violate(check, "%d publication requests still pending 30 s after the last job ended (log %s)", pending, s.publisher.log)
	}
	s.say("soak: kiln-publisher handled %d publication requests after the failover", done)
}

// servesJob fetches job id's page from kiln-web and checks that it shows
// the job.
func (s *soak) servesJob(ctx context.Context, id int64) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("%s/jobs/%d", s.webURL, id)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if !strings.Contains(string(body), fmt.Sprint(id)) || !strings.Contains(string(body), "succeeded") {
		return fmt.Errorf("GET %s: the page does not show job %d as succeeded", url, id)
	}
	return nil
}
