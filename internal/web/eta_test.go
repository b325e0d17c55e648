package web

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// TestPagesShowEstimates: the job page says where its pending task stands
// and when its building task should end, and the queue page gives every
// pending task its place in River's order and its estimated start. Carol's
// task in a private bucket, queued ahead of bob's, is counted in bob's
// place but never shown: kiln-web reads as kiln_web (the attack: a page
// must not tell of a task the web may not read).
func TestPagesShowEstimates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.f.DB.Pool
	carol := farmtest.Person(t, b.f.DB, "carol", "kiln_submitter")
	if _, err := p.Exec(t.Context(), `INSERT INTO kiln.bucket (name, private) VALUES ('secret', true)`); err != nil {
		t.Fatal(err)
	}
	job := farmtest.Submit(t, p, carol, "secret", []string{farmtest.EL9}, farmtest.File{Name: "secret-1-1.src.rpm", Data: []byte("carol's")})
	hidden := farmtest.Split(t, p, job, farmtest.EL9)[0]
	farmtest.Enqueue(t, p, hidden)

	page := b.get(t, fmt.Sprintf("/jobs/%d", b.f.Jobs["building"]), http.StatusOK)
	contains(t, "building job", page, "Why it waits, and when it builds", "building; ", "from its last builds",
		farmtest.Bookworm+"</a>: ")

	queued := b.f.Tasks["queued/"+farmtest.EL9]
	page = b.get(t, "/queue?platform="+farmtest.EL9, http.StatusOK)
	contains(t, "queue of el9", page, fmt.Sprintf(`href="/tasks/%d"`, queued), "<th>starts</th>",
		"1 task is ahead of it on "+farmtest.EL9)
	lacks(t, "queue of el9", page, fmt.Sprintf(`href="/tasks/%d"`, hidden), "secret-1-1", carol)

	// The JSON API says the same, and no more.
	page = b.get(t, "/api/queue?platform="+farmtest.EL9, http.StatusOK)
	contains(t, "/api/queue", page, fmt.Sprintf(`"task_id": %d,`, queued), `"position": 2`, `"ahead": 1`)
	lacks(t, "/api/queue", page, fmt.Sprintf(`"task_id": %d,`, hidden), carol)
	b.get(t, fmt.Sprintf("/api/tasks/%d", hidden), http.StatusNotFound)

	page = b.get(t, fmt.Sprintf("/jobs/%d", b.f.Jobs["queued"]), http.StatusOK)
	contains(t, "queued job", page, "1 task is ahead of it on "+farmtest.EL9)
}
