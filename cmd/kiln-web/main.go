// Command kiln-web serves kiln's web interface: pages, the JSON API, live
// updates, downloads, /healthz and /metrics. See docs/web.md.
//
//	kiln-web --listen 127.0.0.1:8080 --db postgres://web@db.example.org/kiln
package main

import (
	"github.com/urfave/cli/v2"

	kcli "github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/web"
)

func main() { daemon.Main(app()) }

func app() *cli.App {
	return daemon.App("kiln-web", "kiln's web interface", kcli.Version,
		[]cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "address to serve on (the pages and GET /healthz)", EnvVars: []string{"KILN_WEB_LISTEN"}},
			&cli.IntFlag{Name: "max-conns", Value: 10, Usage: "most database connections for pages", EnvVars: []string{"KILN_WEB_MAX_CONNS"}},
			&cli.StringFlag{Name: "keytab", Usage: "keytab of the HTTP service principal, for logging people in with Kerberos (none: no login, no actions)", EnvVars: []string{"KILN_WEB_KEYTAB"}},
			&cli.StringFlag{Name: "service-principal", Usage: "keytab entry to use, such as HTTP/kiln.example.org (default: any that matches)", EnvVars: []string{"KILN_WEB_PRINCIPAL"}},
			&cli.StringFlag{Name: "realm", Usage: "Kerberos realm of the people who may log in (required with --keytab)", EnvVars: []string{"KILN_WEB_REALM"}},
			&cli.BoolFlag{Name: "require-auth", Usage: "require a login for reading too", EnvVars: []string{"KILN_WEB_REQUIRE_AUTH"}},
			&cli.StringFlag{Name: "public-url", Usage: "address people use, such as https://kiln.example.org (for the Origin check behind a proxy)", EnvVars: []string{"KILN_WEB_URL"}},
			&cli.StringFlag{Name: "session-key-file", Usage: "file with at least 32 secret bytes signing logins (default: random, logins end on restart)", EnvVars: []string{"KILN_WEB_SESSION_KEY_FILE"}},
			daemon.ReadDBFlag("web"),
		}, run)
}

func run(c *cli.Context) error {
	common, err := daemon.Common(c, int32(c.Int("max-conns")))
	if err != nil {
		return err
	}
	rc, hasRead := common.ReadDB(c)
	var readDB *dbconn.Config
	if hasRead {
		readDB = &rc
	}
	return web.Run(c.Context, web.RunConfig{
		DB: common.DB, ReadDB: readDB, Listen: c.String("listen"),
		KeytabFile: c.String("keytab"), SessionKeyFile: c.String("session-key-file"),
		Web: web.Config{Realm: c.String("realm"), ServicePrincipal: c.String("service-principal"),
			RequireAuth: c.Bool("require-auth"), PublicURL: c.String("public-url"), Logger: common.Logger},
	})
}
