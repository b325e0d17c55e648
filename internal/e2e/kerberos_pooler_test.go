package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/krb/krbtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// Builders under Kerberos through PgBouncer, as docs/kerberos.md tells a
// site to set them up: PgBouncer has no GSSAPI, so each builder host logs
// in to PgBouncer with a client certificate whose CN is its login role
// (auth_type = hba, hostssl ... cert, the site's CA), PgBouncer logs in to
// PostgreSQL as that same role over the Unix socket by peer authentication
// with the ident map pgbouncer (one pool per role), and the builder's
// --listen-db (LISTEN and the name lock) goes straight to PostgreSQL with
// its keytab. Two builders on two hosts build; then, as the attacker,
// builder A tries to be builder B: through PgBouncer with its own
// certificate and B's user name, without a certificate, with a certificate
// for B from another CA, and straight to PostgreSQL as B without Kerberos;
// all are refused. Through PgBouncer as itself A cannot take a task in B's
// name nor change B's row. A builder role without a map line is refused
// through PgBouncer and over the socket, other system users cannot log in
// over the socket as a mapped role, and every pooled backend was logged in
// by peer as PgBouncer's user. Every write of each builder is recorded
// under its own role (kiln.builder.role, the actor of every event of its
// task), and session_user stays each role's own while both roles'
// transactions interleave on the pooler.
func TestKerberosBuildersThroughPgBouncer(t *testing.T) {
	t.Parallel()
	kdc := krbtest.Require(t)
	if _, err := exec.LookPath("pgbouncer"); err != nil {
		t.Skip("pgbouncer is not installed (.ci/setup-debian)")
	}
	f := newFarm(t)
	type host struct{ name, short, role string }
	var hosts [2]host
	for i := range hosts {
		name := krbtest.Unique(fmt.Sprintf("pool%c", 'a'+i)) + ".kiln.test"
		hosts[i] = host{name: name, short: strings.SplitN(name, ".", 2)[0], role: f.krbDaemon(t, kdc, "builder", name)}
	}
	a, b := hosts[0], hosts[1]
	// PgBouncer reaches PostgreSQL as A and B by peer authentication: each
	// joins kiln_peer_pooled and gets its line in the ident map. Unmapped is
	// a builder role that joins the group but has no line.
	unmapped := "builder_" + krbtest.Unique("poolc")
	krbtest.LoginRole(t, pgtest.AdminURL(t), unmapped, "kiln_builder", "kiln_peer_pooled")
	pooler := poolerUser(t)
	mapToPooler(t, f, pooler, a.role, b.role)

	ca := newTestCA(t, "kiln test site CA")
	rogue := newTestCA(t, "someone else's CA")
	pgb := startCertPgBouncer(t, f, ca, []string{a.role, b.role, unmapped, "postgres"})
	cert := func(c *testCA, cn string) certFiles { return c.issue(t, cn, false) }
	certs := map[string]certFiles{a.role: cert(ca, a.role), b.role: cert(ca, b.role), unmapped: cert(ca, unmapped)}
	pooled := func(role string, c *certFiles) string { return pgb.url(role, ca, c) }

	procs := map[string]*proc{}
	for _, h := range hosts {
		c := certs[h.role]
		procs[h.role] = f.startBuilder(t, h.short, h.role, "--db", pooled(h.role, &c),
			"--listen-db", kdc.URL(t, f.db.URL, h.role))
		procs[h.role].waitLog(t, "builder ready")
	}
	// Each builds one task: disable the other while it takes its own.
	taskOf := map[string]int64{}
	for _, h := range hosts {
		other := a
		if h == a {
			other = b
		}
		f.exec(t, "UPDATE kiln.builder SET enabled = false WHERE name = $1", other.short)
		f.exec(t, "UPDATE kiln.builder SET enabled = true WHERE name = $1", h.short)
		_, task := f.submit(t, quick(t, "kiln-krb-pooled-"+h.short))
		if got := f.waitTask(t, task, "succeeded", "failed", "timed_out"); got.Status != "succeeded" {
			t.Fatalf("task through PgBouncer on %s: %+v\n%s", h.short, got, procs[h.role].output())
		}
		taskOf[h.role] = task
	}

	ctx := context.Background()
	for _, h := range hosts {
		// session_user of every write: the builder row, the attempt and
		// every event of the task that is not the submitter's.
		var role, builder string
		f.scan(t, "SELECT role FROM kiln.builder WHERE name = $1", []any{h.short}, &role)
		f.scan(t, "SELECT builder FROM kiln.attempt WHERE task_id = $1 AND attempt = 1", []any{taskOf[h.role]}, &builder)
		if role != h.role || builder != h.short {
			t.Errorf("builder %s: row's role %q, attempt's builder %q; want %q, %q", h.short, role, builder, h.role, h.short)
		}
		rows, err := f.db.Pool.Query(ctx, `SELECT DISTINCT actor::text FROM kiln.event WHERE task_id = $1 AND attempt IS NOT NULL`, taskOf[h.role])
		if err != nil {
			t.Fatal(err)
		}
		actors, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if len(actors) != 1 || actors[0] != h.role {
			t.Errorf("events of %s's attempt written by %v; want only %s", h.short, actors, h.role)
		}
		// The direct connection (LISTEN, name lock) is Kerberos-authenticated
		// as the host's principal; the pooled ones come from PgBouncer over
		// the Unix socket, logged in as the same role.
		var gss, socket int
		var principal string
		f.scan(t, `SELECT count(*) FILTER (WHERE g.gss_authenticated), count(*) FILTER (WHERE a.client_addr IS NULL),
				coalesce(max(g.principal) FILTER (WHERE g.gss_authenticated), '')
			FROM pg_stat_activity a JOIN pg_stat_gssapi g ON g.pid = a.pid
			WHERE a.datname = current_database() AND a.usename = $1`, []any{h.role}, &gss, &socket, &principal)
		if gss == 0 || principal != kdc.Principal("kiln-builder/"+h.name) {
			t.Errorf("%s: %d Kerberos connections as %q; want its direct ones as kiln-builder/%s", h.short, gss, principal, h.name)
		}
		if socket == 0 {
			t.Errorf("%s: no server connection from PgBouncer as its role", h.short)
		}
	}
	// One pool per role.
	pools := pgb.pools(t, f)
	if !pools[a.role] || !pools[b.role] {
		t.Errorf("PgBouncer's pools for the database: %v; want one for each builder role", pools)
	}

	// The attacker is builder A, with its own certificate and key.
	ac := certs[a.role]
	for _, c := range []struct {
		what string
		url  string
	}{
		{"A's certificate, B's user name", pooled(b.role, &ac)},
		{"no certificate", pooled(b.role, nil)},
		{"a certificate for B from another CA", func() string { c := cert(rogue, b.role); return pooled(b.role, &c) }()},
		{"straight to PostgreSQL as B, no Kerberos", f.db.URLAs(b.role)},
	} {
		conn, err := pgx.Connect(ctx, c.url)
		t.Logf("%s: %v", c.what, err)
		if err == nil {
			var who string
			_ = conn.QueryRow(ctx, "SELECT session_user").Scan(&who)
			conn.Close(ctx)
			t.Errorf("%s: logged in as %q", c.what, who)
		}
	}
	// The pooled path is peer authentication with the map, and nothing
	// else: a role of the group without a map line is refused through
	// PgBouncer and over the socket as PgBouncer's user; as root, the
	// system users root and nobody cannot log in as A over the socket.
	uc := certs[unmapped]
	conn, err := pgx.Connect(ctx, pooled(unmapped, &uc))
	if err == nil {
		var who string
		err = conn.QueryRow(ctx, "SELECT session_user").Scan(&who)
		conn.Close(ctx)
		if err == nil {
			t.Errorf("a builder role without a map line logged in through PgBouncer as %q", who)
		}
	}
	t.Logf("a builder role without a map line, through PgBouncer: %v", err)
	logins := []struct{ user, role string }{{pooler, unmapped}}
	if os.Geteuid() == 0 {
		logins = append(logins, struct{ user, role string }{"root", a.role}, struct{ user, role string }{"nobody", a.role})
	}
	for _, l := range logins {
		out, err := socketLogin(t, f, l.user, l.role)
		if err == nil || !strings.Contains(out, "Peer authentication failed") {
			t.Errorf("system user %s over the socket as %s: %v, %q; want refused by peer authentication", l.user, l.role, err, out)
		}
	}
	// Every pooled backend of A and B (from the socket) was authenticated
	// by peer, as PgBouncer's system user, through the first line of
	// pg_hba.conf, the kiln_peer_pooled line. PostgreSQL 15 shows a
	// backend's method only in the server log, which logs connections
	// under the KDC (.ci/pgcluster).
	var hbaFile string
	f.scan(t, "SHOW hba_file", nil, &hbaFile)
	want := fmt.Sprintf(`connection authenticated: identity="%s" method=peer (%s:1)`, pooler, hbaFile)
	rows, err := f.db.Pool.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND usename = ANY($1) AND client_addr IS NULL`, []string{a.role, b.role})
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) == 0 {
		t.Error("no backend of A or B from PgBouncer")
	}
	t.Logf("pooled backends of A and B: %d, each logged as %s", len(pids), want)
	authn := serverAuthn(t, pids)
	for _, pid := range pids {
		if authn[pid] != want {
			t.Errorf("pooled backend %d: server log says %q; want %q", pid, authn[pid], want)
		}
	}

	// As itself through PgBouncer, A cannot act for B.
	asA, err := pgx.Connect(ctx, pooled(a.role, &ac)+"&default_query_exec_mode=cache_describe")
	if err != nil {
		t.Fatal(err)
	}
	defer asA.Close(ctx)
	var self string
	if err := asA.QueryRow(ctx, "SELECT session_user").Scan(&self); err != nil || self != a.role {
		t.Fatalf("A through PgBouncer: session_user %q, %v; want %s", self, err, a.role)
	}
	tag, err := asA.Exec(ctx, "UPDATE kiln.builder SET enabled = false, heartbeat_at = now() WHERE name = $1", b.short)
	if err == nil && tag.RowsAffected() != 0 {
		t.Errorf("A changed B's builder row through PgBouncer (%s)", tag)
	}
	procs[a.role].stop(t)
	procs[b.role].stop(t)
	job, pending := f.submit(t, quick(t, "kiln-krb-pooled-victim"))
	var outcome string
	err = asA.QueryRow(ctx, "SELECT outcome FROM kiln.task_take($1, $2, $3, $4)", b.short, pending, job, platform).Scan(&outcome)
	if err == nil || !strings.Contains(err.Error(), "is not one of the builders of role "+a.role) {
		t.Errorf("A's take of task %d in B's name through PgBouncer: outcome %q, %v; want refused as not A's builder", pending, outcome, err)
	}
	if st := f.waitTask(t, pending, "pending"); st.Status != "pending" {
		t.Errorf("task %d after A's take in B's name: %+v", pending, st)
	}

	// session_user is each role's own on every transaction while both
	// roles' transactions interleave through the pooler.
	bc := certs[b.role]
	var wg sync.WaitGroup
	for _, c := range []struct {
		role string
		url  string
	}{{a.role, pooled(a.role, &ac)}, {b.role, pooled(b.role, &bc)}} {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, c.url+"&default_query_exec_mode=cache_describe")
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(ctx)
			for range 200 {
				var who, cur string
				if err := conn.QueryRow(ctx, "SELECT session_user, current_user").Scan(&who, &cur); err != nil {
					t.Error(err)
					return
				}
				if who != c.role || cur != c.role {
					t.Errorf("through PgBouncer as %s: session_user %q, current_user %q", c.role, who, cur)
					return
				}
			}
		})
	}
	wg.Wait()
}

// poolerUser is the system user PgBouncer runs as in these tests: as root,
// kiln-test (the cluster's owner, .ci/pgcluster); otherwise the user
// running the tests.
func poolerUser(t *testing.T) string {
	t.Helper()
	if os.Geteuid() == 0 {
		return "kiln-test"
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// mapToPooler lets system user pooler log in to PostgreSQL over the Unix
// socket as each of roles, as docs/kerberos.md has a site set up PgBouncer:
// each role joins kiln_peer_pooled, whose line heads the test cluster's
// pg_hba.conf (local all +kiln_peer_pooled peer map=pgbouncer), and gets a
// line of its own in the map pgbouncer of pg_ident.conf. It reloads the
// server's configuration and waits until the first role logs in that way.
func mapToPooler(t *testing.T, f *farm, pooler string, roles ...string) {
	t.Helper()
	var lines strings.Builder
	for _, r := range roles {
		f.exec(t, "GRANT kiln_peer_pooled TO "+pgx.Identifier{r}.Sanitize())
		fmt.Fprintf(&lines, "pgbouncer  %s  %s\n", pooler, r)
	}
	// This test is the file's only writer (-count runs it once at a time),
	// and a reload only adds lines for its own roles, so other tests on the
	// cluster see no change.
	ident := filepath.Join(os.Getenv("KILN_PGCLUSTER_DIR"), "data", "pg_ident.conf")
	file, err := os.OpenFile(ident, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("the test cluster's pg_ident.conf: %v", err)
	}
	_, err = file.WriteString(lines.String())
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	var bad int
	f.scan(t, "SELECT count(*) FROM pg_ident_file_mappings WHERE error IS NOT NULL", nil, &bad)
	if bad != 0 {
		t.Fatalf("pg_ident.conf has %d bad lines", bad)
	}
	f.exec(t, "SELECT pg_reload_conf()")
	waitFor(t, "the ident map to be loaded", func() bool {
		out, err := socketLogin(t, f, pooler, roles[0])
		return err == nil && out == roles[0]
	})
}

// socketLogin logs in to the farm's database over the test cluster's Unix
// socket as role, with psql run as system user sys (as root through
// runuser; otherwise sys must be the user running the tests), and returns
// psql's output: session_user, or why the login failed.
func socketLogin(t *testing.T, f *farm, sys, role string) (string, error) {
	t.Helper()
	_, primary := pgtest.URLHost(t, f.db.URL)
	args := []string{filepath.Join(os.Getenv("KILN_PG_BINDIR"), "psql"), "-X", "-w", "-h", os.Getenv("KILN_PGCLUSTER_DIR"),
		"-p", primary.Port(), "-U", role, "-d", f.db.Name, "-tAc", "SELECT session_user"}
	if os.Geteuid() == 0 {
		args = append([]string{"runuser", "-u", sys, "--"}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// serverAuthn returns, for each backend of pids, the message the test
// cluster's server logged when it authenticated the backend's client
// ("connection authenticated: identity=... method=... (file:line)"), or ""
// when it logged none, as for trust. It reads DIR/postgres.log of
// .ci/pgcluster, whose lines start with the pid under the KDC. A pid's
// message is forgotten at its next "connection received", so an earlier
// backend with the same pid does not count.
func serverAuthn(t *testing.T, pids []int32) map[int32]string {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(os.Getenv("KILN_PGCLUSTER_DIR"), "postgres.log"))
	if err != nil {
		t.Fatalf("the test cluster's server log: %v", err)
	}
	authn := make(map[int32]string, len(pids))
	for _, p := range pids {
		authn[p] = ""
	}
	for line := range strings.Lines(string(log)) {
		_, rest, _ := strings.Cut(line, " [")
		p, msg, ok := strings.Cut(strings.TrimSuffix(rest, "\n"), "] LOG:  ")
		n, err := strconv.ParseInt(p, 10, 32)
		if _, want := authn[int32(n)]; !ok || err != nil || !want {
			continue
		}
		switch {
		case strings.HasPrefix(msg, "connection received: "):
			authn[int32(n)] = ""
		case strings.HasPrefix(msg, "connection authenticated: "):
			authn[int32(n)] = msg
		}
	}
	return authn
}

// certPgBouncer is a PgBouncer started by a test, authenticating clients by
// certificate.
type certPgBouncer struct {
	db    string
	port  int
	dir   string
	ca    *testCA
	admin certFiles
}

// startCertPgBouncer starts PgBouncer in transaction pooling mode for the
// farm's database, as docs/kerberos.md sets it up: clients must present a
// certificate of ca whose CN is their user name (hostssl ... cert), and
// only the users listed (auth_file) may log in; PgBouncer logs in to the
// primary as the client's user over the Unix socket.
func startCertPgBouncer(t *testing.T, f *farm, ca *testCA, users []string) *certPgBouncer {
	t.Helper()
	socketDir := os.Getenv("KILN_PGCLUSTER_DIR")
	if socketDir == "" {
		t.Fatal("KILN_PGCLUSTER_DIR is not set: run under .ci/with-cluster")
	}
	_, primary := pgtest.URLHost(t, f.db.URL)
	dir := t.TempDir()
	openDir(t, dir)
	server := ca.issue(t, "127.0.0.1", true)
	p := &certPgBouncer{db: f.db.Name, port: freePort(t), dir: dir, ca: ca, admin: ca.issue(t, "postgres", false)}
	var list strings.Builder
	for _, u := range users {
		fmt.Fprintf(&list, "%q \"\"\n", u)
	}
	files := map[string]string{
		"users.txt": list.String(),
		"hba.conf":  "hostssl all all 127.0.0.1/32 cert\n",
		"pgbouncer.ini": fmt.Sprintf(`[databases]
%s = host=%s port=%s dbname=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
pool_mode = transaction
auth_type = hba
auth_hba_file = %s/hba.conf
auth_file = %s/users.txt
client_tls_sslmode = verify-full
client_tls_ca_file = %s
client_tls_cert_file = %s
client_tls_key_file = %s
default_pool_size = 4
max_client_conn = 200
server_reset_query =
ignore_startup_parameters = extra_float_digits
stats_users = postgres
pidfile = %s/pgbouncer.pid
logfile = %s/pgbouncer.log
`, f.db.Name, socketDir, primary.Port(), f.db.Name, p.port, dir, dir, ca.cert, server.cert, server.key, dir, dir),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"pgbouncer", filepath.Join(dir, "pgbouncer.ini")}
	if os.Geteuid() == 0 {
		// PgBouncer refuses to run as root; .ci/pgcluster runs the cluster
		// as kiln-test, which must read the server key.
		args = append([]string{"runuser", "-u", "kiln-test", "--"}, args...)
		for _, f := range []string{dir, server.key} {
			if out, err := exec.Command("chown", "-R", "kiln-test", f).CombinedOutput(); err != nil {
				t.Fatalf("chown %s: %v: %s", f, err, out)
			}
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// SIGTERM: PgBouncer's immediate shutdown (runuser passes it on).
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	waitFor(t, "PgBouncer to listen", func() bool {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("PgBouncer exited: %v\n%s%s", waitErr, out.String(), log)
		default:
		}
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(p.port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p
}

// url is the farm's database through this PgBouncer as role, verifying the
// server against ca, with client certificate c (none when nil).
func (p *certPgBouncer) url(role string, ca *testCA, c *certFiles) string {
	return p.urlOf(p.db, role, ca, c)
}

// urlOf is url for database db of this PgBouncer.
func (p *certPgBouncer) urlOf(db, role string, ca *testCA, c *certFiles) string {
	q := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {ca.cert}}
	if c != nil {
		q.Set("sslcert", c.cert)
		q.Set("sslkey", c.key)
	}
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?%s", role, p.port, db, q.Encode())
}

// pools returns the users that have a pool for the farm's database.
func (p *certPgBouncer) pools(t *testing.T, f *farm) map[string]bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.urlOf("pgbouncer", "postgres", p.ca, &p.admin)+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		t.Fatalf("PgBouncer's console: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SHOW POOLS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	col := map[string]int{}
	for i, fd := range rows.FieldDescriptions() {
		col[fd.Name] = i
	}
	out := map[string]bool{}
	for rows.Next() {
		v := rows.RawValues()
		if string(v[col["database"]]) == f.db.Name {
			out[string(v[col["user"]])] = true
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// freePort returns a TCP port of 127.0.0.1 that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testCA is a certificate authority made by a test, its certificate in a
// PEM file.
type testCA struct {
	dir  string
	cert string
	crt  *x509.Certificate
	key  *ecdsa.PrivateKey
}

// certFiles are a certificate and its key, as PEM files.
type certFiles struct{ cert, key string }

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	crt, _ := x509.ParseCertificate(der)
	dir := t.TempDir()
	openDir(t, dir)
	ca := &testCA{dir: dir, cert: filepath.Join(dir, "ca.crt"), crt: crt, key: key}
	writePEM(t, ca.cert, "CERTIFICATE", der, 0o644)
	return ca
}

// issue makes a certificate for cn signed by the CA: a server certificate
// for the IP address cn, or a client certificate whose CN is the user.
func (ca *testCA) issue(t *testing.T, cn string, server bool) certFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP(cn)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.crt, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer(".", "_", "/", "_").Replace(cn) + "-" + strconv.FormatInt(serial.Int64(), 36)
	c := certFiles{cert: filepath.Join(ca.dir, name+".crt"), key: filepath.Join(ca.dir, name+".key")}
	writePEM(t, c.cert, "CERTIFICATE", der, 0o644)
	writePEM(t, c.key, "EC PRIVATE KEY", kder, 0o600)
	return c
}

// openDir lets other users (PgBouncer's, when the tests run as root) reach
// dir, a directory of t.TempDir().
func openDir(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func writePEM(t *testing.T, path, kind string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}
