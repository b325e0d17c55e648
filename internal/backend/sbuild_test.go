package backend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/environment/envtest"
	"github.com/kiln-build/kiln/internal/sandbox"
)

// The tests below are real: sbuild 0.85 in unshare mode, as the
// unprivileged build user, in a clean bookworm environment made by
// mmdebstrap (envtest.Shared, once per day and machine), installing build
// dependencies from the host's Debian mirror.

// sbuildWork is a directory for one build, owned by the build user, and a
// real sbuild backend building in the shared environment.
func sbuildWork(t *testing.T) (Backend, *sandbox.Plain, string) {
	t.Helper()
	if _, err := exec.LookPath("sbuild"); err != nil {
		t.Fatal("sbuild is not installed (run .ci/setup-debian as root)")
	}
	chroot, spec := envtest.Shared(t)
	r, u := envtest.Runner(t)
	work := filepath.Join(r.Home, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := u.Chown(work); err != nil {
		t.Fatal(err)
	}
	b, err := New(Platform{Backend: "sbuild", Arch: spec.Arch, Settings: map[string]any{
		"dist": spec.Dist, "chroot": chroot, "chroot_mode": "unshare"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b, r, work
}

// sourcesDir makes work/src, owned by the build user, for debhelperDSC.
func sourcesDir(t *testing.T, r *sandbox.Plain, work string) string {
	t.Helper()
	srcs := filepath.Join(work, "src")
	if err := os.Mkdir(srcs, 0o755); err != nil {
		t.Fatal(err)
	}
	owned(t, r, srcs)
	return srcs
}

// debhelperDSC makes a Debian source package (3.0 (native), dh $@,
// debhelper-compat 13) in dir, whose binary package installs one file, and
// returns its .dsc. buildDepends are added to debhelper-compat; rules is
// added to debian/rules.
func debhelperDSC(t *testing.T, r sandbox.Runner, dir, name, version, buildDepends, rules string) string {
	t.Helper()
	src := filepath.Join(dir, name+"-"+version)
	bd := "debhelper-compat (= 13)"
	if buildDepends != "" {
		bd += ", " + buildDepends
	}
	files := map[string]string{
		"debian/source/format": "3.0 (native)\n",
		"debian/changelog": fmt.Sprintf("%s (%s) bookworm; urgency=medium\n\n  * Test package.\n\n -- kiln tests <kiln@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n",
			name, version),
		"debian/control": fmt.Sprintf("Source: %s\nSection: misc\nPriority: optional\nMaintainer: kiln tests <kiln@example.org>\n"+
			"Build-Depends: %s\nStandards-Version: 4.6.2\nRules-Requires-Root: no\n\n"+
			"Package: %s\nArchitecture: all\nDescription: kiln test package %s\n A package made by kiln's tests.\n", name, bd, name, name),
		"debian/rules":   "#!/usr/bin/make -f\n%:\n\tdh $@\n" + rules,
		"debian/install": name + ".txt usr/share/" + name + "\n",
		name + ".txt":    "data of " + name + " " + version + "\n",
	}
	for f, body := range files {
		p := filepath.Join(src, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if f == "debian/rules" {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := r.Run(context.Background(), sandbox.Command{Dir: dir, Args: []string{"dpkg-source", "-b", filepath.Base(src)}, Output: &out}); err != nil {
		// As root the files are root's; dpkg-source runs as the build user.
		t.Fatalf("dpkg-source -b: %v\n%s", err, out.String())
	}
	return filepath.Join(dir, name+"_"+version+".dsc")
}

// sbuildRequest is the build of dsc in its own directory below work (the
// builder's layout: the package's directory holds the .dsc and its files).
func sbuildRequest(t *testing.T, work, dsc, repo string, log io.Writer) Request {
	t.Helper()
	dir := filepath.Join(work, strings.TrimSuffix(filepath.Base(dsc), ".dsc"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(dsc), strings.SplitN(filepath.Base(dsc), "_", 2)[0]+"_*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Request{Source: filepath.Join(dir, filepath.Base(dsc)), Dir: dir, Repo: repo, Log: log}
}

// owned gives the tree at dir to the build user of r.
func owned(t *testing.T, r *sandbox.Plain, dir string) {
	t.Helper()
	envtest.GiveTree(t, r.User, dir)
}

// checksums reads the Checksums-Sha256 field of a .changes or .buildinfo
// file: file name to hex digest.
func checksums(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "Checksums-Sha256:"):
			in = true
		case in && strings.HasPrefix(line, " "):
			if f := strings.Fields(line); len(f) == 3 {
				out[f[2]] = f[0]
			}
		default:
			in = false
		}
	}
	return out
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func outputNamed(out []Output, kind, suffix string) string {
	for _, o := range out {
		if o.Kind == kind && strings.HasSuffix(o.Path, suffix) {
			return o.Path
		}
	}
	return ""
}

// Debian's own hello, fetched from the archive now, builds in the clean
// environment although its build dependencies are not on the host: sbuild
// installs them from the mirror in the environment, and the .buildinfo
// names their exact versions.
func TestSbuildBuildsDebianHello(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"help2man", "texinfo"} {
		if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", p).Output(); err == nil && strings.Contains(string(out), "install ok installed") {
			t.Fatalf("%s is installed on the host; this test proves the environment provides it", p)
		}
		if _, err := exec.LookPath(p); err == nil {
			t.Fatalf("%s is on the host's PATH", p)
		}
	}
	b, r, work := sbuildWork(t)
	src := filepath.Join(work, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	owned(t, r, src)
	var out bytes.Buffer
	if err := r.Run(context.Background(), sandbox.Command{Dir: src, Args: []string{"apt-get", "source", "--download-only", "hello"}, Output: &out}); err != nil {
		t.Fatalf("apt-get source hello (needs the deb-src entry .ci/setup-debian adds): %v\n%s", err, out.String())
	}
	dscs, _ := filepath.Glob(filepath.Join(src, "hello_*.dsc"))
	if len(dscs) != 1 {
		t.Fatalf("apt-get source left %v", dscs)
	}
	var log bytes.Buffer
	req := sbuildRequest(t, work, dscs[0], "", &log)
	owned(t, r, req.Dir)
	files, err := b.Build(context.Background(), r, req)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	version := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(dscs[0]), "hello_"), ".dsc")
	deb := outputNamed(files, KindPackage, "/hello_"+version+"_amd64.deb")
	buildinfo := outputNamed(files, KindBuildInfo, ".buildinfo")
	if deb == "" || buildinfo == "" {
		t.Fatalf("outputs %v lack hello's .deb or .buildinfo", files)
	}
	if got, want := checksums(t, buildinfo)[filepath.Base(deb)], fileSum(t, deb); got != want {
		t.Fatalf(".buildinfo says %s has SHA-256 %q; the artifact has %s", filepath.Base(deb), got, want)
	}
	info, _ := os.ReadFile(buildinfo)
	for _, p := range []string{" help2man (= ", " texinfo (= "} {
		if !strings.Contains(string(info), p) {
			t.Errorf(".buildinfo does not list the installed build dependency%s...)", strings.TrimSuffix(p, " (= "))
		}
	}
	if !strings.Contains(log.String(), "Status: successful") {
		t.Errorf("the build log lacks sbuild's summary:\n%s", log.String())
	}
}

// The second package of a job build-depends (with a version constraint) on
// a binary package only the first produces: offered the first one's .deb,
// it builds; alone, its build dependencies are unsatisfiable, an outcome
// of its own that names the missing package.
func TestSbuildChainAndUnsatisfiable(t *testing.T) {
	t.Parallel()
	b, r, work := sbuildWork(t)
	srcs := sourcesDir(t, r, work)
	base := debhelperDSC(t, r, srcs, "kiln-base", "1.2", "", "")
	user := debhelperDSC(t, r, srcs, "kiln-user", "1.0", "kiln-base (>= 1.2)", "")
	repo := filepath.Join(work, "repo")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}

	var log bytes.Buffer
	req := sbuildRequest(t, work, base, repo, &log)
	owned(t, r, work)
	out, err := b.Build(context.Background(), r, req)
	if err != nil {
		t.Fatalf("kiln-base: %v\n%s", err, log.String())
	}
	deb := outputNamed(out, KindPackage, "/kiln-base_1.2_all.deb")
	if deb == "" {
		t.Fatalf("kiln-base made %v", out)
	}
	data, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, filepath.Base(deb)), data, 0o644); err != nil {
		t.Fatal(err)
	}

	log.Reset()
	req = sbuildRequest(t, work, user, repo, &log)
	owned(t, r, req.Dir)
	out, err = b.Build(context.Background(), r, req)
	if err != nil {
		t.Fatalf("kiln-user with kiln-base offered: %v\n%s", err, log.String())
	}
	info, _ := os.ReadFile(outputNamed(out, KindBuildInfo, ".buildinfo"))
	if !strings.Contains(string(info), " kiln-base (= 1.2)") {
		t.Fatalf("kiln-user's .buildinfo does not name kiln-base 1.2:\n%s", info)
	}

	// Alone (an empty local repository), nothing provides kiln-base.
	log.Reset()
	empty := filepath.Join(work, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	alone := filepath.Join(work, "alone")
	if err := os.Mkdir(alone, 0o755); err != nil {
		t.Fatal(err)
	}
	req = sbuildRequest(t, alone, user, empty, &log)
	owned(t, r, req.Dir)
	_, err = b.Build(context.Background(), r, req)
	var se *StageError
	if !errors.As(err, &se) {
		t.Fatalf("kiln-user alone returned %v, not a stage error\n%s", err, log.String())
	}
	if se.Stage != StageBuildDeps || !se.Unsatisfiable || !strings.Contains(se.Detail, "kiln-base:amd64 (>= 1.2)") {
		t.Fatalf("kiln-user alone: %+v (%v), want unsatisfiable build dependencies naming kiln-base (>= 1.2)", se, err)
	}
	if !strings.Contains(err.Error(), "unsatisfiable build dependencies: kiln-base:amd64 (>= 1.2)") {
		t.Fatalf("error %q does not say what is missing", err)
	}
}

// A build that reaches for the network (by name and by address) fails: the
// build runs without network, although the host has it.
func TestSbuildBuildHasNoNetwork(t *testing.T) {
	t.Parallel()
	addrs, err := net.LookupHost("deb.debian.org")
	if err != nil || len(addrs) == 0 {
		t.Fatalf("the host cannot resolve deb.debian.org (the tests need the mirror): %v", err)
	}
	var ip string
	for _, a := range addrs {
		if net.ParseIP(a).To4() != nil {
			ip = a
			break
		}
	}
	if ip == "" {
		ip = addrs[0]
	}
	conn, err := net.Dial("tcp", net.JoinHostPort(ip, "80"))
	if err != nil {
		t.Fatalf("the host cannot reach %s:80: %v", ip, err)
	}
	conn.Close()

	b, r, work := sbuildWork(t)
	srcs := sourcesDir(t, r, work)
	connect := func(addr string) string {
		return `perl -MIO::Socket::IP -e '$$s = IO::Socket::IP->new(PeerAddr => "` + addr + `", PeerPort => 80, Timeout => 10); ` +
			`if ($$s) { print "kiln-net: reached ` + addr + `\n"; exit 0 } print "kiln-net: no network to ` + addr + `: $$@\n"; exit 1'`
	}
	rules := "\noverride_dh_auto_build:\n\t" + connect("deb.debian.org") + " || " + connect(ip) + "\n"
	dsc := debhelperDSC(t, r, srcs, "kiln-net", "1.0", "", rules)
	var log bytes.Buffer
	req := sbuildRequest(t, work, dsc, "", &log)
	owned(t, r, req.Dir)
	_, err = b.Build(context.Background(), r, req)
	var se *StageError
	if !errors.As(err, &se) || se.Stage != StageBuild || se.Unsatisfiable {
		t.Fatalf("the network build returned %v, want a failure while building\n%s", err, log.String())
	}
	// Lines the build printed (make also prints the command, which holds
	// the same words further in).
	printed := func(prefix string) bool {
		for _, line := range strings.Split(log.String(), "\n") {
			if strings.HasPrefix(line, prefix) {
				return true
			}
		}
		return false
	}
	for _, want := range []string{"kiln-net: no network to deb.debian.org", "kiln-net: no network to " + ip} {
		if !printed(want) {
			t.Fatalf("the log lacks %q:\n%s", want, log.String())
		}
	}
	if printed("kiln-net: reached") {
		t.Fatalf("the build reached the network:\n%s", log.String())
	}
}

// TestSbuildLimits is the attack on the limits under sbuild, whose builds
// run outside bubblewrap: a build that fills its disk and one that starts
// process after process are killed and fail on the limit named, and the
// disk use counted is the build's tree, which sbuild unpacks beneath the
// package's directory (kiln-sbuild.conf), not in /tmp.
func TestSbuildLimits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, rules, limit string
		limits             sandbox.Limits
	}{
		// The environment unpacked is about 450 MB: 1 GiB leaves the
		// build some 500 MB, and it writes 1.5 GiB.
		{"disk", "\noverride_dh_auto_build:\n\tdd if=/dev/zero of=big bs=1M count=1536\n\tsleep 30\n", "disk",
			sandbox.Limits{Disk: 1 << 30}},
		{"processes", "\noverride_dh_auto_build:\n\tfor i in $$(seq 400); do sleep 60 & sleep 0.01; done; wait\n", "processes",
			sandbox.Limits{Processes: 200}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b, r, work := sbuildWork(t)
			srcs := sourcesDir(t, r, work)
			dsc := debhelperDSC(t, r, srcs, "kiln-"+c.name, "1.0", "", c.rules)
			var log bytes.Buffer
			req := sbuildRequest(t, work, dsc, "", &log)
			owned(t, r, req.Dir)
			limited := *r
			limited.Work, limited.Limits = work, c.limits
			_, err := b.Build(context.Background(), &limited, req)
			var le *sandbox.LimitError
			if !errors.As(err, &le) || le.Limit != c.limit {
				t.Fatalf("the build returned %v, want the %s limit\n%s", err, c.limit, log.String())
			}
		})
	}
}
