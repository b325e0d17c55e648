package daemon

import (
	"log/slog"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/dbconn"
)

// Flags are the flags every kiln daemon takes, with the same names and
// environment variables in each: --db (KILN_DB), --log-level
// (KILN_LOG_LEVEL) and the Kerberos flags (dbconn.KerberosFlags). A daemon
// with a health endpoint of its own adds HealthFlag. Read them with Common.
func Flags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "db", Usage: "PostgreSQL connection string or URL (default: libpq's PG* environment variables)", EnvVars: []string{"KILN_DB"}},
		&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info", EnvVars: []string{"KILN_LOG_LEVEL"}},
	}, dbconn.KerberosFlags()...)
}

// HealthFlag is --health-addr of the daemon role (builder, janitor,
// splitter), read from KILN_<ROLE>_HEALTH_ADDR, or KILN_HEALTH_ADDR when
// that is not set.
func HealthFlag(role string) cli.Flag {
	return &cli.StringFlag{Name: "health-addr", Usage: "serve GET /healthz on this address (empty: none)",
		EnvVars: []string{"KILN_" + strings.ToUpper(role) + "_HEALTH_ADDR", "KILN_HEALTH_ADDR"}}
}

// ReadDBFlag is --read-db of the daemon role (KILN_<ROLE>_READ_DB): a hot
// standby that the daemon's reads may go to (docs/scaling.md). Read it
// with ReadDB.
func ReadDBFlag(role string) cli.Flag {
	return &cli.StringFlag{Name: "read-db", Usage: "hot standby (streaming replica) to read pages from; writes, LISTEN and a person's own just-made changes stay on --db",
		EnvVars: []string{"KILN_" + strings.ToUpper(role) + "_READ_DB"}}
}

// ReadDB is the connection to the standby named by ReadDBFlag, with the
// rest of s.DB's settings, or false when there is none.
func (s Settings) ReadDB(c *cli.Context) (dbconn.Config, bool) {
	url := c.String("read-db")
	if url == "" {
		return dbconn.Config{}, false
	}
	cfg := s.DB
	cfg.URL, cfg.Pooled = url, false
	return cfg, true
}

// Settings are what Flags and HealthFlag set.
type Settings struct {
	// DB is the connection, named after the program.
	DB dbconn.Config
	// HealthAddr is --health-addr ("" without HealthFlag).
	HealthAddr string
	Logger     *slog.Logger
}

// Common reads Flags (and HealthFlag, if given) from c. The connection is
// named after c's program and has at most maxConns connections (0: pgx's
// default).
func Common(c *cli.Context, maxConns int32) (Settings, error) {
	log, err := Logger(c.String("log-level"))
	if err != nil {
		return Settings{}, err
	}
	return Settings{
		DB:         dbconn.WithFlags(c, dbconn.Config{URL: c.String("db"), AppName: c.App.Name, MaxConns: maxConns}),
		HealthAddr: c.String("health-addr"),
		Logger:     log,
	}, nil
}
