package farmtest

import (
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// Farm is a seeded farm: who submitted what and the ids of jobs and tasks
// in every state.
type Farm struct {
	DB    *pgtest.DB
	Alice string // a submitter
	Bob   string // another submitter
	Admin string // a member of kiln_admin

	// Jobs by the status Seed leaves them in: submitted, invalid, queued,
	// building, succeeded, failed, partially_failed, cancelled.
	Jobs map[string]int64
	// Tasks by "<job status>/<platform>", for example "failed/el9-x86_64".
	Tasks map[string]int64
}

// Platforms Seed creates: el9-x86_64 and bookworm-amd64 are built by
// builder b1 (online, 2 slots); b2 builds el9-x86_64 too and is offline
// (the janitor found it silent, see Seed);
// el8-aarch64 has no builder and is made inactive after its task exists.
const (
	EL9      = "el9-x86_64"
	Bookworm = "bookworm-amd64"
	EL8      = "el8-aarch64"
)

// Seed builds a farm with one job in every job status and tasks in every
// task status, through the real transitions:
//
//	submitted         alice  hello-1.0-1.src.rpm, not split yet
//	invalid           alice  broken-1-1.src.rpm, rejected by the splitter
//	queued            bob    tools-2.0-1.src.rpm; el9 and el8 pending (el8 inactive, no builder)
//	building          alice  hello-1.1-1.src.rpm; el9 building on b1 (2 log batches), bookworm pending
//	succeeded         alice  hello-1.0-1.src.rpm + lib-3-1.src.rpm; el9 lost once on b2 then succeeded on b1
//	                         (artifacts: an RPM and build.log), bookworm succeeded (a .deb)
//	failed            bob    tools-1.9-1.src.rpm; el9 failed (log ends in an error), bookworm skipped
//	partially_failed  alice  hello-0.9-1.src.rpm; el9 succeeded, bookworm timed out
//	cancelled         alice  hello-0.8-1.src.rpm; cancelled by alice while el9 was building
//
// The ids increase in that order.
func Seed(t testing.TB, db *pgtest.DB) *Farm {
	t.Helper()
	p := db.Pool
	f := &Farm{DB: db, Jobs: map[string]int64{}, Tasks: map[string]int64{}}
	f.Alice = Person(t, db, "alice", "kiln_submitter")
	f.Bob = Person(t, db, "bob", "kiln_submitter")
	f.Admin = Person(t, db, "ada", "kiln_admin")
	Platform(t, p, EL9, "x86_64")
	Platform(t, p, Bookworm, "amd64")
	Platform(t, p, EL8, "aarch64")
	Bucket(t, p, "devel")
	Builder(t, p, "b1", 2, true, EL9, Bookworm)
	Builder(t, p, "b2", 1, true, EL9)

	srpm := func(name string) File { return File{Name: name, Data: []byte("source of " + name)} }
	both := []string{EL9, Bookworm}

	f.Jobs["submitted"] = Submit(t, p, f.Alice, "devel", []string{"all"}, srpm("hello-1.0-1.src.rpm"))

	f.Jobs["invalid"] = Submit(t, p, f.Alice, "devel", both, srpm("broken-1-1.src.rpm"))
	Invalidate(t, p, f.Jobs["invalid"], "broken-1-1.src.rpm: not an RPM file")

	f.Jobs["queued"] = Submit(t, p, f.Bob, "devel", []string{EL9, EL8}, srpm("tools-2.0-1.src.rpm"))
	ids := Split(t, p, f.Jobs["queued"], EL9, EL8)
	f.Tasks["queued/"+EL9], f.Tasks["queued/"+EL8] = ids[0], ids[1]
	exec(t, p, "UPDATE kiln.platform SET active = false WHERE name = $1", EL8)

	f.Jobs["building"] = Submit(t, p, f.Alice, "devel", both, srpm("hello-1.1-1.src.rpm"))
	ids = Split(t, p, f.Jobs["building"], EL9, Bookworm)
	f.Tasks["building/"+EL9], f.Tasks["building/"+Bookworm] = ids[0], ids[1]

	f.Jobs["succeeded"] = Submit(t, p, f.Alice, "devel", both, srpm("hello-1.0-1.src.rpm"), srpm("lib-3-1.src.rpm"))
	ids = Split(t, p, f.Jobs["succeeded"], EL9, Bookworm)
	f.Tasks["succeeded/"+EL9], f.Tasks["succeeded/"+Bookworm] = ids[0], ids[1]
	a := Take(t, p, ids[0], "b2")
	Log(t, p, ids[0], a, 0, "building on b2\n")
	Lose(t, p, ids[0])
	a = Take(t, p, ids[0], "b1")
	Log(t, p, ids[0], a, 0, "+ rpmbuild --rebuild hello-1.0-1.src.rpm\n")
	Log(t, p, ids[0], a, 1, "Wrote: hello-1.0-1.x86_64.rpm\n")
	Finish(t, p, ids[0], a, "succeeded", "",
		Artifact{Kind: "package", Name: "hello-1.0-1.x86_64.rpm", Data: []byte("binary rpm of hello")},
		Artifact{Kind: "log", Name: "build.log", Data: []byte("+ rpmbuild --rebuild hello-1.0-1.src.rpm\nWrote: hello-1.0-1.x86_64.rpm\n")})
	a = Take(t, p, ids[1], "b1")
	Log(t, p, ids[1], a, 0, "dpkg-buildpackage -b\n")
	Finish(t, p, ids[1], a, "succeeded", "",
		Artifact{Kind: "package", Name: "hello_1.0-1_amd64.deb", Data: []byte("binary deb of hello")})

	f.Jobs["failed"] = Submit(t, p, f.Bob, "devel", both, srpm("tools-1.9-1.src.rpm"))
	ids = Split(t, p, f.Jobs["failed"], EL9)
	f.Tasks["failed/"+EL9] = ids[0]
	f.Tasks["failed/"+Bookworm] = Skip(t, p, f.Jobs["failed"], Bookworm, "ExclusiveArch: x86_64 aarch64")
	a = Take(t, p, ids[0], "b1")
	Log(t, p, ids[0], a, 0, "+ rpmbuild --rebuild tools-1.9-1.src.rpm\nchecking for gcc... gcc\n")
	Log(t, p, ids[0], a, 1, "tools.c:3:1: error: expected ';'\nmake: *** [all] Error 1\nerror: Bad exit status from /var/tmp/rpm-tmp (%build)\n")
	Finish(t, p, ids[0], a, "failed", "rpmbuild exited with status 1")

	f.Jobs["partially_failed"] = Submit(t, p, f.Alice, "devel", both, srpm("hello-0.9-1.src.rpm"))
	ids = Split(t, p, f.Jobs["partially_failed"], EL9, Bookworm)
	f.Tasks["partially_failed/"+EL9], f.Tasks["partially_failed/"+Bookworm] = ids[0], ids[1]
	a = Take(t, p, ids[0], "b1")
	Finish(t, p, ids[0], a, "succeeded", "", Artifact{Kind: "package", Name: "hello-0.9-1.x86_64.rpm", Data: []byte("binary rpm of hello 0.9")})
	a = Take(t, p, ids[1], "b1")
	Log(t, p, ids[1], a, 0, "dpkg-buildpackage -b\nrunning tests...\n")
	Finish(t, p, ids[1], a, "timed_out", "build ran longer than 2h0m0s")

	f.Jobs["cancelled"] = Submit(t, p, f.Alice, "devel", []string{EL9}, srpm("hello-0.8-1.src.rpm"))
	ids = Split(t, p, f.Jobs["cancelled"], EL9)
	f.Tasks["cancelled/"+EL9] = ids[0]
	Take(t, p, ids[0], "b1")
	Cancel(t, p, f.Alice, f.Jobs["cancelled"])

	// Last, so b1 holds it at the end: the building job's el9 task.
	a = Take(t, p, f.Tasks["building/"+EL9], "b1")
	Log(t, p, f.Tasks["building/"+EL9], a, 0, "+ rpmbuild --rebuild hello-1.1-1.src.rpm\n")
	Log(t, p, f.Tasks["building/"+EL9], a, 1, "compiling hello.c\n")
	return f
}
