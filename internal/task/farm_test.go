package task_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// protocolFarm is what this package's database tests start from: a fresh
// database with a submitter (alice), the platform el9-x86_64, the bucket
// devel and the builder b1, online on that platform.
type protocolFarm struct {
	db    *pgtest.DB
	pool  *pgxpool.Pool
	alice string
}

// newProtocolFarm makes a protocolFarm whose builder has slots slots.
func newProtocolFarm(t *testing.T, slots int) *protocolFarm {
	t.Helper()
	db := pgtest.New(t)
	f := &protocolFarm{db: db, pool: db.Pool, alice: farmtest.Person(t, db, "alice", "kiln_submitter")}
	farmtest.Platform(t, f.pool, "el9-x86_64", "x86_64")
	farmtest.Bucket(t, f.pool, "devel")
	farmtest.Builder(t, f.pool, "b1", slots, true, "el9-x86_64")
	return f
}

// submit submits a job of one source package as alice to devel for
// el9-x86_64 and returns its id.
func (f *protocolFarm) submit(t *testing.T) int64 {
	t.Helper()
	return farmtest.Submit(t, f.pool, f.alice, "devel", []string{"el9-x86_64"}, farmtest.File{Name: "x.src.rpm", Data: []byte("x")})
}

// pendingTask submits a job, splits it and links its task's River job; it
// returns the job and the task, pending.
func (f *protocolFarm) pendingTask(t *testing.T) (job, id int64) {
	t.Helper()
	job = f.submit(t)
	id = farmtest.Split(t, f.pool, job, "el9-x86_64")[0]
	farmtest.Enqueue(t, f.pool, id)
	return job, id
}
