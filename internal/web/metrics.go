package web

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/report"
)

// metricsCache keeps the last rendering of /metrics for a few seconds, so
// several scrapers (or a scraper and a person) cost one round of queries.
type metricsCache struct {
	mu   sync.Mutex
	at   time.Time
	body []byte
}

const metricsTTL = 5 * time.Second

// serveMetrics writes the Prometheus text exposition format (version
// 0.0.4), by hand.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	s.metrics.mu.Lock()
	defer s.metrics.mu.Unlock()
	if time.Since(s.metrics.at) > metricsTTL {
		body, err := s.gatherMetrics(r)
		if err != nil {
			s.log.Error("gathering metrics", "err", err)
			http.Error(w, "gathering metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		s.metrics.at, s.metrics.body = time.Now(), body
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(s.metrics.body)
}

// metricWriter writes metric families; each family's HELP and TYPE once.
type metricWriter struct {
	b bytes.Buffer
}

func (m *metricWriter) family(name, typ, help string) {
	fmt.Fprintf(&m.b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// sample writes one sample; labels alternate names and values.
func (m *metricWriter) sample(name string, value float64, labels ...string) {
	m.b.WriteString(name)
	if len(labels) > 0 {
		m.b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				m.b.WriteByte(',')
			}
			fmt.Fprintf(&m.b, "%s=\"%s\"", labels[i], labelEscaper.Replace(labels[i+1]))
		}
		m.b.WriteByte('}')
	}
	fmt.Fprintf(&m.b, " %g\n", value)
}

// labelEscaper escapes a label value as the exposition format requires.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func (s *Server) gatherMetrics(r *http.Request) ([]byte, error) {
	ctx := r.Context()
	ps, err := report.ListPlatforms(ctx, s.reads.For(ctx, ""))
	if err != nil {
		return nil, err
	}
	counts, err := report.GetCounts(ctx, s.reads.For(ctx, ""), s.cfg.MetricsWindow)
	if err != nil {
		return nil, err
	}
	recent, err := report.RecentBuilds(ctx, s.reads.For(ctx, ""), s.cfg.MetricsWindow)
	if err != nil {
		return nil, err
	}
	var m metricWriter
	perPlatform := []struct {
		name, help string
		value      func(report.Platform) float64
	}{
		{"kiln_queue_pending", "Tasks waiting for a builder.", func(p report.Platform) float64 { return float64(p.Pending) }},
		{"kiln_queue_building", "Tasks being built.", func(p report.Platform) float64 { return float64(p.Building) }},
		{"kiln_queue_oldest_wait_seconds", "How long the oldest waiting task has waited (0 when none waits).", func(p report.Platform) float64 {
			if p.OldestWaitSeconds == nil {
				return 0
			}
			return *p.OldestWaitSeconds
		}},
		{"kiln_platform_builders_online", "Builders online, enabled and not draining that build the platform.", func(p report.Platform) float64 { return float64(p.BuildersOnline) }},
		{"kiln_platform_active", "1 when the platform takes new jobs.", func(p report.Platform) float64 {
			if p.Active {
				return 1
			}
			return 0
		}},
	}
	for _, f := range perPlatform {
		m.family(f.name, "gauge", f.help)
		for _, p := range ps {
			m.sample(f.name, f.value(p), "platform", p.Name)
		}
	}
	window := fmt.Sprintf("%g", s.cfg.MetricsWindow.Seconds())
	for _, c := range []struct {
		name, label, help string
		m                 map[string]int
		extra             []string
	}{
		{"kiln_jobs", "status", "Unfinished jobs by status.", counts.Jobs, nil},
		{"kiln_jobs_finished_recent", "status", "Jobs that reached a final status within the last window_seconds.", counts.JobsFinished, []string{"window_seconds", window}},
		{"kiln_tasks_unfinished", "status", "Tasks pending or building.", counts.Tasks, nil},
		{"kiln_builders", "state", "Builders by state.", counts.Builders, nil},
	} {
		m.family(c.name, "gauge", c.help)
		keys := make([]string, 0, len(c.m))
		for k := range c.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			m.sample(c.name, float64(c.m[k]), append([]string{c.label, k}, c.extra...)...)
		}
	}
	m.family("kiln_builds_recent", "gauge", "Build attempts that ended within the last window_seconds, by platform and outcome (view kiln.build_duration).")
	for _, b := range recent {
		m.sample("kiln_builds_recent", float64(b.Count), "platform", b.Platform, "status", b.Status, "window_seconds", window)
	}
	m.family("kiln_build_duration_seconds", "summary", "Duration of the build attempts that ended within the last window_seconds (view kiln.build_duration); _count and _sum cover the same window.")
	for _, b := range recent {
		for _, q := range []struct {
			q string
			v float64
		}{{"0.5", b.P50Seconds}, {"0.9", b.P90Seconds}, {"0.99", b.P99Seconds}} {
			m.sample("kiln_build_duration_seconds", q.v, "platform", b.Platform, "status", b.Status, "window_seconds", window, "quantile", q.q)
		}
		m.sample("kiln_build_duration_seconds_sum", b.SumSeconds, "platform", b.Platform, "status", b.Status, "window_seconds", window)
		m.sample("kiln_build_duration_seconds_count", float64(b.Count), "platform", b.Platform, "status", b.Status, "window_seconds", window)
	}
	return m.b.Bytes(), nil
}
