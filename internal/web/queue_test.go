package web

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// TestQueuePage: /queue shows what kiln queue knows, each platform's queue
// with why it does not move and the pending tasks with why they wait.
func TestQueuePage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	queued := b.f.Tasks["queued/"+farmtest.EL8]
	page := b.get(t, "/queue", http.StatusOK)
	contains(t, "queue", page, `aria-current="page">Queue`, "why it does not move", farmtest.EL8, "is inactive",
		fmt.Sprintf(`href="/tasks/%d"`, queued), "job(s) wait for the splitter")
	// A platform filter narrows the tasks, not the platforms.
	page = b.get(t, "/queue?platform="+farmtest.EL9, http.StatusOK)
	lacks(t, "queue of el9", page, fmt.Sprintf(`href="/tasks/%d"`, queued))
}

// TestNotFoundPages: an unknown address and a static directory are the
// styled 404 page; no directory is listed.
func TestNotFoundPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, path := range []string{"/nosuch", "/jobs/1/nosuch", "/static/", "/static/nosuch.css", "/queue/x"} {
		page := b.get(t, path, http.StatusNotFound)
		contains(t, path, page, `<link rel="stylesheet" href="/static/style.css">`, "There is no page at this address.")
		lacks(t, path, page, `<a href="style.css">`, "404 page not found")
	}
	b.get(t, "/static/style.css", http.StatusOK)
}
