package backend

import (
	"bytes"
	"context"
	"fmt"
	"io"
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kiln-build/kiln/internal/beneath"
	"github.com/kiln-build/kiln/internal/sandbox"
)

// rpmbuild rebuilds an SRPM on the builder host with `rpmbuild --rebuild`,
// with its _topdir in the package's directory. Packages built earlier in the
// task are offered in Repo (environment KILN_REPO, macro %_kiln_repo) but
// nothing is installed: BuildRequires are checked against the host's rpm
// database, so rpmbuild platforms suit packages whose build dependencies the
// host already has. Use mock to build against earlier packages properly.
type rpmbuild struct{}

func (rpmbuild) Name() string        { return "rpmbuild" }
func (rpmbuild) SelfIsolating() bool { return false }

func (rpmbuild) Versions(ctx context.Context) map[string]string {
	return map[string]string{
		"rpmbuild": toolVersion(ctx, "rpmbuild", "--version"),
		"bwrap":    toolVersion(ctx, "bwrap", "--version"),
	}
}

func (rpmbuild) Build(ctx context.Context, r sandbox.Runner, req Request) ([]Output, error) {
	// rpmbuild creates the tree itself, as the build user.
	top := filepath.Join(req.Dir, "rpmbuild")
	args := []string{"rpmbuild", "--rebuild",
		"--define", "_topdir " + top,
		"--define", "_tmppath /tmp",
		"--define", "_kiln_repo " + req.Repo,
		req.Source}
	// Not root in its user namespace: rpm, as root, chowns the SRPM's
	// files to their recorded owner, which the namespace does not map.
	// rpmbuild installs the SRPM, checks the BuildRequires against the
	// host's rpm database ("Failed build dependencies" makes the
	// unsatisfiable outcome) and then builds ("Executing(%prep)"): its
	// output says which stage a failure was in.
	stages := &rpmStages{}
	output := io.Writer(stages)
	if req.Log != nil {
		output = io.MultiWriter(req.Log, stages)
	}
	err := r.Run(ctx, sandbox.Command{
		Dir: req.Dir, Args: args, Output: output, Unprivileged: true,
		Env: []string{"KILN_REPO=" + req.Repo},
	})
	if err != nil {
		if ctx.Err() == nil {
			err = stages.rpmbuildError(err)
		}
		return nil, fmt.Errorf("rpmbuild --rebuild %s: %w", filepath.Base(req.Source), err)
	}
	out, err := collect(filepath.Join(top, "RPMS"), map[string]string{"*.rpm": KindPackage})
	if err != nil {
		return nil, &StageError{Stage: StageCollect, Err: err}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("rpmbuild --rebuild %s: %w", filepath.Base(req.Source),
			&StageError{Stage: StageCollect, Detail: "rpmbuild succeeded but made no RPM"})
	}
	return out, nil
}

// mock rebuilds an SRPM in a mock build root:
//
//	mock -r ROOT --rebuild SRPM --resultdir DIR [--addrepo file://REPO]
//
// Earlier results of the task are offered through --addrepo, after
// createrepo_c has given the local repository its metadata, so later
// packages can BuildRequire earlier ones. mock sets up its own chroot or
// container, so it runs outside bubblewrap.
//
// The buckets' rpm-md repositories (req.Repositories: the job's bucket and
// its build_against buckets, see docs/repositories.md) are added to the
// root's dnf configuration: mock then runs with -r DIR/kiln-mock.cfg, a
// configuration of the build's own that includes the platform's root and
// adds one repository per bucket (kiln-BUCKET) with repo_gpgcheck on and
// the bucket's public key, written to DIR/kiln-keys, as its only gpgkey, so
// that dnf takes no metadata that key did not sign. Each package's sha256
// is in that signed metadata and dnf checks it; gpgcheck (the packages' own
// signatures) stays off because a bucket may sign packages only from some
// snapshot on (its sign_packages setting). A private bucket's token goes
// into the repository's password option, never into a URL, the command
// line or the log, and the configuration is removed when mock ends.
type mock struct {
	root, mock, createrepo string
}

// mockRoot is what a mock root may look like: a configuration's name
// ("rocky+epel-9-x86_64") or the path of a .cfg file.
var mockRoot = regexp.MustCompile(`^[A-Za-z0-9_.+/][A-Za-z0-9_.+/-]*$`)

// mockSafePath is what a path written into a mock configuration may look
// like (it is quoted there as a Python string).
var mockSafePath = regexp.MustCompile(`^/[A-Za-z0-9_.+/-]*$`)

// mockSecret is what a repository's user name and password may look like.
var mockSecret = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

func (m mock) Name() string        { return "mock" }
func (m mock) SelfIsolating() bool { return true }

func (m mock) Versions(ctx context.Context) map[string]string {
	return map[string]string{
		"mock":         toolVersion(ctx, m.mock, "--version"),
		"createrepo_c": toolVersion(ctx, m.createrepo, "--version"),
	}
}

// commands returns the commands a build of req runs, in order; config is
// the build's own mock configuration ("" when it has none: no bucket
// repositories).
func (m mock) commands(req Request, config string) ([][]string, error) {
	var cmds [][]string
	root := m.root
	if config != "" {
		root = config
	}
	args := []string{m.mock, "-r", root, "--rebuild", req.Source, "--resultdir", filepath.Join(req.Dir, "result")}
	if req.Repo != "" {
		entries, err := os.ReadDir(req.Repo)
		if err != nil {
			return nil, fmt.Errorf("reading the local repository: %w", err)
		}
		if hasRPM(entries) {
			cmds = append(cmds, []string{m.createrepo, "--update", req.Repo})
			args = append(args, "--addrepo", "file://"+req.Repo)
		}
	}
	return append(cmds, args), nil
}

// config writes the build's own mock configuration into req.Dir, with the
// buckets' repositories and their keys, and returns its path ("" when req
// has no repositories).
func (m mock) config(req Request, pkg *beneath.Root) (string, error) {
	if len(req.Repositories) == 0 {
		return "", nil
	}
	keyDir := filepath.Join(pkg.Path(), "kiln-keys")
	if !mockSafePath.MatchString(keyDir) {
		return "", fmt.Errorf("mock: the build directory %q cannot be written into a mock configuration", req.Dir)
	}
	keyRoot, err := pkg.Mkdir("kiln-keys", 0o755)
	if err != nil {
		return "", fmt.Errorf("mock: a directory for the repositories' keys: %w", err)
	}
	defer keyRoot.Close()
	keys, err := repositoryKeys(req, keyRoot)
	if err != nil {
		return "", err
	}
	include := m.root
	if !strings.HasSuffix(include, ".cfg") {
		include += ".cfg"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by kiln for one build: the platform's mock root, and the\n"+
		"# rpm-md repositories of the buckets it installs build dependencies from.\n"+
		"include('%s')\n"+
		"config_opts['plugin_conf']['bind_mount_enable'] = True\n"+
		"config_opts['plugin_conf']['bind_mount_opts']['dirs'].append(('%s', '%s'))\n"+
		"kiln_repos = \"\"\"\n", include, keyDir, keyDir)
	for i, r := range req.Repositories {
		u, err := neturl.Parse(r.URL)
		if err != nil || !repositoryURL.MatchString(r.URL) || !sbuildWord.MatchString(r.Suite) || !repositoryFingerprint.MatchString(r.Fingerprint) {
			return "", fmt.Errorf("mock: repository %q suite %q key %q is not a URL, bucket and fingerprint", redactedURL(r.URL), r.Suite, r.Fingerprint)
		}
		user, password := "", ""
		if u.User != nil {
			user = u.User.Username()
			password, _ = u.User.Password()
			if !mockSecret.MatchString(user) || !mockSecret.MatchString(password) {
				return "", fmt.Errorf("mock: repository %s: the user name or token is not plain", redactedURL(r.URL))
			}
			u.User = nil
		}
		fmt.Fprintf(&b, "\n[kiln-%s]\nname=kiln bucket %s (key %s)\nbaseurl=%s\nenabled=1\n"+
			"repo_gpgcheck=1\ngpgcheck=0\ngpgkey=file://%s\nskip_if_unavailable=False\nmetadata_expire=0\ncost=500\n",
			r.Suite, r.Suite, r.Fingerprint, u.String(), keys[i])
		if user != "" {
			fmt.Fprintf(&b, "username=%s\npassword=%s\n", user, password)
		}
	}
	// dnf roots read dnf.conf, dnf5 roots dnf5.conf (Fedora's templates
	// set both).
	b.WriteString("\"\"\"\nfor _key in ('dnf.conf', 'dnf5.conf'):\n" +
		"    if _key in config_opts:\n        config_opts[_key] += kiln_repos\n")
	path, err := writeNew(pkg, mockConfig, b.String(), 0o600)
	if err != nil {
		return "", fmt.Errorf("mock: writing the build's configuration: %w", err)
	}
	return path, nil
}

// redactedURL is u without the password it may carry, for messages.
func redactedURL(u string) string {
	parsed, err := neturl.Parse(u)
	if err != nil {
		return "(an unreadable URL)"
	}
	return parsed.Redacted()
}

func hasRPM(entries []os.DirEntry) bool {
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".rpm") {
			return true
		}
	}
	return false
}

// mockConfig is the name of the build's own mock configuration, in the
// package's directory.
const mockConfig = "kiln-mock.cfg"

func (m mock) Build(ctx context.Context, r sandbox.Runner, req Request) ([]Output, error) {
	// What the builder writes and removes for mock goes through
	// descriptors of the package's directory (internal/beneath).
	pkg, err := beneath.OpenPath(req.Dir)
	if err != nil {
		return nil, &StageError{Stage: StageEnvironment, Err: fmt.Errorf("opening the package's directory: %w", err)}
	}
	defer pkg.Close()
	config, err := m.config(req, pkg)
	if err != nil {
		return nil, &StageError{Stage: StageEnvironment, Err: err}
	}
	if config != "" {
		// It holds the private buckets' tokens: gone when mock is.
		defer pkg.Remove(mockConfig)
	}
	cmds, err := m.commands(req, config)
	if err != nil {
		return nil, err
	}
	for i, args := range cmds {
		stages := &rpmStages{}
		output := io.Writer(stages)
		if req.Log != nil {
			output = io.MultiWriter(req.Log, stages)
		}
		if err := r.Run(ctx, sandbox.Command{Dir: req.Dir, Args: args, Output: output}); err != nil {
			if ctx.Err() == nil {
				if i < len(cmds)-1 {
					// createrepo_c on the task's own repository: the builder's side.
					err = &StageError{Stage: StageEnvironment, Detail: "createrepo_c failed", Err: err}
				} else {
					err = stages.mockError(err)
				}
			}
			return nil, fmt.Errorf("%s: %w", strings.Join(args[:2], " "), err)
		}
	}
	result := filepath.Join(req.Dir, "result")
	out, err := collect(result, map[string]string{"*.rpm": KindPackage, "*.log": KindLog})
	if err != nil {
		return nil, &StageError{Stage: StageCollect, Err: err}
	}
	// The rebuilt SRPM is the input again; the binaries are the results.
	kept := out[:0]
	built := 0
	for _, o := range out {
		if strings.HasSuffix(o.Path, ".src.rpm") {
			continue
		}
		if o.Kind == KindPackage {
			built++
		}
		kept = append(kept, o)
	}
	if built == 0 {
		return nil, fmt.Errorf("mock --rebuild %s: %w", filepath.Base(req.Source),
			&StageError{Stage: StageCollect, Detail: "mock succeeded but left no binary RPM in " + result})
	}
	return kept, nil
}

// rpmStages reads the output of rpmbuild --rebuild or mock --rebuild for
// how far the build got and which build dependencies could not be met.
//
// rpmbuild installs the SRPM ("Installing x.src.rpm"), checks the
// BuildRequires:
//
//	error: Failed build dependencies:
//		kiln-base >= 1.2 is needed by kiln-user-1.0-1.x86_64
//
// and builds ("Executing(%prep)"); rpm says "not an rpm package" or
// "unpacking of archive failed" for an SRPM it cannot unpack. mock announces its steps ("Start: chroot
// init", "Start: build setup for x.src.rpm", which unpacks the SRPM in the
// chroot and installs its build dependencies with dnf builddep, "Start:
// rpmbuild x.src.rpm"); dnf says "No matching package to install: 'x'" or
// "nothing provides x" for a dependency no repository has.
type rpmStages struct {
	partial  []byte
	in       bool
	missing  []string
	building bool   // rpmbuild: %prep or later started
	mock     string // mock: the last "Start: " step
	badSRPM  bool   // rpm could not read or unpack the SRPM
}

func (d *rpmStages) Write(p []byte) (int, error) {
	d.partial = append(d.partial, p...)
	for {
		i := bytes.IndexByte(d.partial, '\n')
		if i < 0 {
			break
		}
		d.line(string(d.partial[:i]))
		d.partial = d.partial[i+1:]
	}
	if len(d.partial) > 64<<10 {
		d.partial = d.partial[:0]
	}
	return len(p), nil
}

func (d *rpmStages) line(line string) {
	switch {
	case strings.Contains(line, "Failed build dependencies:"):
		d.in = true
		return
	case d.in && strings.HasPrefix(line, "\t"):
		d.add(strings.TrimSpace(line))
		return
	}
	d.in = false
	switch {
	case strings.Contains(line, "not an rpm package"), strings.Contains(line, "unpacking of archive failed"):
		d.badSRPM = true
	case strings.HasPrefix(line, "Executing(%"):
		d.building = true
	case strings.Contains(line, "Start: "):
		_, step, _ := strings.Cut(line, "Start: ")
		d.mock = strings.TrimSpace(step)
	case strings.Contains(line, "No matching package to install: "):
		_, dep, _ := strings.Cut(line, "No matching package to install: ")
		d.add(strings.Trim(strings.TrimSpace(dep), "'"))
	case strings.Contains(line, "nothing provides "):
		_, dep, _ := strings.Cut(line, "nothing provides ")
		d.add(strings.TrimSpace(dep))
	}
}

func (d *rpmStages) add(dep string) {
	if len(d.missing) < 50 && dep != "" {
		d.missing = append(d.missing, dep)
	}
}

// rpmbuildError says where a failed rpmbuild --rebuild went wrong.
func (d *rpmStages) rpmbuildError(err error) *StageError {
	switch {
	case len(d.missing) > 0:
		return &StageError{Stage: StageBuildDeps, Unsatisfiable: true, Detail: strings.Join(d.missing, "; "), Err: err}
	case d.building:
		return &StageError{Stage: StageBuild, Err: err}
	default:
		return &StageError{Stage: StageFetch, Detail: "installing the SRPM failed", Err: err}
	}
}

// mockError says where a failed mock --rebuild went wrong.
func (d *rpmStages) mockError(err error) *StageError {
	switch {
	case strings.HasPrefix(d.mock, "rpmbuild "):
		return &StageError{Stage: StageBuild, Err: err}
	case strings.HasPrefix(d.mock, "build setup"):
		if d.badSRPM {
			return &StageError{Stage: StageFetch, Detail: "unpacking the SRPM failed", Err: err}
		}
		if len(d.missing) > 0 {
			return &StageError{Stage: StageBuildDeps, Unsatisfiable: true, Detail: strings.Join(d.missing, "; "), Err: err}
		}
		return &StageError{Stage: StageBuildDeps, Detail: "mock " + d.mock, Err: err}
	case d.mock == "":
		return &StageError{Stage: StageEnvironment, Detail: "mock stopped before its first step", Err: err}
	default:
		return &StageError{Stage: StageEnvironment, Detail: "mock " + d.mock, Err: err}
	}
}
