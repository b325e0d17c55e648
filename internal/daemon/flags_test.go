package daemon

import (
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/dbconn"
)

// TestCommon reads the shared flags from each daemon's environment
// variables, the role's own health variable before the older shared one.
func TestCommon(t *testing.T) {
	t.Setenv("KILN_DB", "postgres://db.example.org/kiln")
	t.Setenv("KILN_LOG_LEVEL", "debug")
	t.Setenv("KILN_HEALTH_ADDR", "127.0.0.1:1")
	t.Setenv("KILN_JANITOR_HEALTH_ADDR", "127.0.0.1:2")
	for role, want := range map[string]string{"janitor": "127.0.0.1:2", "splitter": "127.0.0.1:1"} {
		var got Settings
		app := &cli.App{Name: "kiln-" + role, Flags: append(Flags(), HealthFlag(role)), Action: func(c *cli.Context) error {
			var err error
			got, err = Common(c, 7)
			return err
		}}
		if err := app.Run([]string{"kiln-" + role}); err != nil {
			t.Fatal(err)
		}
		if got.HealthAddr != want || got.DB.URL != "postgres://db.example.org/kiln" || got.DB.AppName != "kiln-"+role || got.DB.MaxConns != 7 || got.Logger == nil {
			t.Errorf("%s: %+v, want health %s", role, got, want)
		}
	}
	app := &cli.App{Name: "kiln-x", Flags: Flags(), Action: func(c *cli.Context) error { _, err := Common(c, 0); return err }}
	if err := app.Run([]string{"kiln-x", "--log-level", "loud"}); err == nil {
		t.Error("--log-level loud accepted")
	}
}

// TestReadDB reads --read-db of the role from its own variable, keeping
// the rest of the primary's settings; without it there is no standby.
func TestReadDB(t *testing.T) {
	t.Setenv("KILN_WEB_READ_DB", "host=standby.example.org dbname=kiln")
	for _, args := range [][]string{{"kiln-web"}, {"kiln-web", "--read-db", ""}} {
		var got dbconn.Config
		var ok bool
		app := &cli.App{Name: "kiln-web", Flags: append(Flags(), ReadDBFlag("web")), Action: func(c *cli.Context) error {
			s, err := Common(c, 3)
			got, ok = s.ReadDB(c)
			return err
		}}
		if err := app.Run(args); err != nil {
			t.Fatal(err)
		}
		want := len(args) == 1
		if ok != want {
			t.Fatalf("%v: ReadDB ok = %v, want %v", args, ok, want)
		}
		if ok && (got.URL != "host=standby.example.org dbname=kiln" || got.AppName != "kiln-web" || got.MaxConns != 3 || got.Pooled) {
			t.Errorf("%v: %+v", args, got)
		}
	}
}
