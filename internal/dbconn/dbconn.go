// Package dbconn opens kiln's connections to PostgreSQL.
//
// A connection string may be empty: pgx then reads libpq's environment
// variables (PGHOST, PGPORT, PGDATABASE, PGUSER, PGSSLMODE, ...), so the same
// settings work for psql and for kiln.
//
// When the server asks for Kerberos (GSSAPI), the process logs in with the
// identity in Config (a keytab for daemons, the ticket cache for people; see
// package krb); with password or trust authentication the same code connects
// without Kerberos.
package dbconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/krb"
)

// Config says how to reach the database.
type Config struct {
	// URL is a libpq connection string or postgres:// URL. Empty means the
	// PG* environment variables alone.
	URL string
	// AppName is reported as application_name (visible in pg_stat_activity).
	AppName string
	// MaxConns caps the pool; 0 keeps pgx's default.
	MaxConns int32
	// Pooled says the connection goes through a transaction pooler
	// (PgBouncer with pool_mode = transaction), where a server connection
	// is the client's only for one transaction: named prepared statements
	// are not used (pgx's cache_describe mode sends each statement unnamed,
	// with its described types cached) unless the URL names its own
	// default_query_exec_mode. Session state (LISTEN, session advisory
	// locks, SET) must not go through such a pool.
	Pooled bool

	// Kerberos: who the process is when the server asks for GSSAPI. Empty
	// fields fall back to KRB5_CLIENT_KTNAME, KRB5CCNAME and KRB5_CONFIG.
	// A process has one Kerberos identity (pgx's provider is process-wide).
	Keytab     string // client keytab of a daemon (--krb-keytab)
	Principal  string // principal to take from the keytab; empty: its only one
	CCache     string // ticket cache of a person (as after kinit)
	Krb5Config string // krb5.conf
	// ServiceName is the Kerberos service of the server (krbsrvname,
	// default postgres); SPN names the whole service principal instead
	// (krbspn, such as postgres/db.example.org). Both override the URL.
	ServiceName string
	SPN         string
}

// Identity is the Kerberos identity cfg asks for.
func (cfg Config) Identity() krb.Identity {
	return krb.Identity{Keytab: cfg.Keytab, Principal: cfg.Principal, CCache: cfg.CCache, Config: cfg.Krb5Config}
}

// Open connects a pool and checks that the database answers.
func Open(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("bad database connection string: %w", err)
	}
	if cfg.AppName != "" {
		pc.ConnConfig.RuntimeParams["application_name"] = cfg.AppName
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	if cfg.Pooled && !namesExecMode(cfg.URL) {
		pc.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	if cfg.Pooled {
		pc.ShouldPing = pooledShouldPing
	}
	if _, ok := pc.ConnConfig.RuntimeParams["gssencmode"]; ok {
		return nil, errors.New("bad database connection string: remove gssencmode: kiln's driver (pgx) does no GSS encryption; Kerberos logins work without it, and sslmode protects the traffic")
	}
	if cfg.ServiceName != "" {
		pc.ConnConfig.KerberosSrvName = cfg.ServiceName
	}
	if cfg.SPN != "" {
		pc.ConnConfig.KerberosSpn = cfg.SPN
	}
	if err := krb.Use(cfg.Identity()); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connecting to the database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, Explain(err, pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.User, pc.ConnConfig.Database)
	}
	return pool, nil
}

// pooledPingIdle is how long a connection to a transaction pooler is idle
// before the pool pings it when handing it out. pgxpool's default is a
// second, which made a ping of most polls of a builder polling every
// second: through the pooler each ping is a round trip to a server
// connection, about a third of an idle builder's queries. The pooler
// checks its own server connections, and a client connection to it breaks
// only with the pooler or the network; a statement on a broken one fails
// and the pool drops it, as after any error.
const pooledPingIdle = time.Minute

// pooledShouldPing is pgxpool's ShouldPing for a connection through a
// transaction pooler.
func pooledShouldPing(_ context.Context, p pgxpool.ShouldPingParams) bool {
	return p.IdleDuration > pooledPingIdle
}

// namesExecMode reports whether a connection string sets pgx's
// default_query_exec_mode itself.
func namesExecMode(url string) bool {
	return strings.Contains(url, "default_query_exec_mode")
}

// Explain turns a connection failure into a message that says what to do.
func Explain(err error, host string, port uint16, user, database string) error {
	where := fmt.Sprintf("%s:%d database %q as %q", host, port, database, user)
	for _, kerr := range []error{krb.ErrNoTicket, krb.ErrTicketExpired, krb.ErrKeytab, krb.ErrServicePrincipal,
		krb.ErrKDCUnreachable, krb.ErrClockSkew, krb.ErrClientPrincipal} {
		if errors.Is(err, kerr) {
			return fmt.Errorf("cannot log in with Kerberos to %s: %w", where, err)
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28000", "28P01":
			if strings.Contains(pgErr.Message, "GSSAPI") {
				who := krb.Principal()
				if who == "" {
					who = "(" + krb.Describe() + ")"
				}
				return fmt.Errorf("the database at %s:%d refused Kerberos principal %s as role %q: pg_ident.conf does not map it to that role "+
					"(ask the DBA to map it, see roles/README.md, or set PGUSER to the role it is mapped to): %w", host, port, who, user, err)
			}
			return fmt.Errorf("the database refused %q at %s: %s (check pg_hba.conf/pg_ident.conf, your Kerberos ticket with klist, or PGUSER): %w", user, where, pgErr.Message, err)
		case "3D000":
			return fmt.Errorf("database %q does not exist at %s (set PGDATABASE or --db): %w", database, where, err)
		}
	}
	var netErr *net.OpError
	if errors.As(err, &netErr) {
		return fmt.Errorf("cannot reach PostgreSQL at %s (is it running? set PGHOST/PGPORT or --db): %w", where, err)
	}
	return fmt.Errorf("cannot connect to %s: %w", where, err)
}
