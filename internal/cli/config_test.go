package cli

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	got, err := parseConfig("# kiln\n\ndb = host=db.example.org dbname=kiln\r\n  web-url=https://kiln.example.org  \ncolor = \"never\"\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []entry{{"db", "host=db.example.org dbname=kiln", 3}, {"web-url", "https://kiln.example.org", 4}, {"color", "never", 5}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for in, msg := range map[string]string{
		"db":                     "1: expected key = value",
		"\n = x":                 "2: key \"\" is not valid",
		"DB = x":                 "key \"DB\" is not valid",
		"db = a\ndb = b":         "2: key db is already set on line 1",
		"db = \"unterminated":    "1: value of db is not a valid quoted string",
		"db = a\x00b":            "1: control character",
		"web_url = x":            "not valid",
		"color = \"a\" trailing": "not a valid quoted string",
	} {
		if _, err := parseConfig(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("parseConfig(%q) = %v, want %q", in, err, msg)
		}
	}
}

// FuzzParseConfig checks that the parser never panics, and that what it
// accepts, written back in the file format, reads back the same.
func FuzzParseConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, data string) {
		entries, err := parseConfig(data)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, e := range entries {
			if !validKey(e.Key) {
				t.Fatalf("accepted key %q", e.Key)
			}
			b.WriteString(e.Key + " = " + strconv.Quote(e.Value) + "\n")
		}
		again, err := parseConfig(b.String())
		if err != nil {
			t.Fatalf("re-reading %q: %v", b.String(), err)
		}
		if len(again) != len(entries) {
			t.Fatalf("re-read %d entries, want %d", len(again), len(entries))
		}
		for i := range again {
			if again[i].Key != entries[i].Key || again[i].Value != entries[i].Value {
				t.Fatalf("entry %d: %+v, want %+v", i, again[i], entries[i])
			}
		}
	})
}

func TestConfigSources(t *testing.T) {
	dir := t.TempDir()
	user := filepath.Join(dir, "user.conf")
	system := filepath.Join(dir, "system.conf")
	os.WriteFile(user, []byte("web-url = https://user.example.org\n"), 0o644)
	os.WriteFile(system, []byte("# system\nweb-url = https://system.example.org\ncolor = never\ndb = host=sys password=secret\n"), 0o644)

	none := func(string) (string, bool) { return "", false }
	s, err := resolve(none, none, []string{user, system}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := settings{
		"db":      {"db", "host=sys password=secret", system + ":4"},
		"web-url": {"web-url", "https://user.example.org", user + ":1"},
		"color":   {"color", "never", system + ":3"},
		"read-db": {"read-db", "", "default"},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("files: %+v", s)
	}
	env := func(k string) (string, bool) { return map[string]string{"KILN_COLOR": "always"}[k], k == "KILN_COLOR" }
	flag := func(k string) (string, bool) { return "https://flag.example.org", k == "web-url" }
	s, err = resolve(flag, env, []string{filepath.Join(dir, "missing.conf"), system}, false)
	if err != nil {
		t.Fatal(err)
	}
	if s["web-url"].Source != "flag --web-url" || s.get("color") != "always" || s["color"].Source != "env KILN_COLOR" {
		t.Errorf("flag and env: %+v", s)
	}
	if _, err := resolve(none, none, []string{filepath.Join(dir, "missing.conf")}, true); err == nil {
		t.Error("a missing --config file was accepted")
	}
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("colour = never\n"), 0o644)
	if _, err := resolve(none, none, []string{bad}, true); err == nil || !strings.Contains(err.Error(), `bad.conf:1: unknown key "colour"`) {
		t.Errorf("unknown key: %v", err)
	}

	// kiln config shows the values, their sources, and no password.
	t.Setenv("KILN_WEB_URL", "https://env.example.org")
	t.Setenv("KILN_CONFIG", system)
	var out syncBuffer
	app := App()
	app.Writer = &out
	if err := app.Run([]string{"kiln", "config"}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"host=sys password=xxxxx", system + ":4", "https://env.example.org  env KILN_WEB_URL", "never"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("kiln config lacks %q:\n%s", w, out.String())
		}
	}
	if strings.Contains(out.String(), "secret") {
		t.Errorf("kiln config shows the password:\n%s", out.String())
	}
}

func TestRedactPassword(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://alice:s3cret@db/kiln":           "postgres://alice:xxxxx@db/kiln",
		"host=db password='a b' dbname=kiln":        "host=db password=xxxxx dbname=kiln",
		"host=db password = pw":                     "host=db password = xxxxx",
		"postgres://db/kiln?password=pw&sslmode=on": "postgres://db/kiln?password=xxxxx&sslmode=on",
		"host=db": "host=db",
	} {
		if got := redactPassword(in); got != want {
			t.Errorf("redactPassword(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNoColor(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		noColor, flag string
		w             any
		want          bool
	}{
		{"", "always", &syncBuffer{}, true},
		{"", "auto", f, false}, // a file is not a terminal
		{"", "never", f, false},
		{"1", "always", &syncBuffer{}, false},
	} {
		t.Setenv("NO_COLOR", c.noColor)
		var got bool
		app := App()
		app.Commands = append(app.Commands, &cli.Command{Name: "probe", Action: func(ctx *cli.Context) error {
			got = useColor(ctx, c.w.(io.Writer))
			return nil
		}})
		if err := app.Run([]string{"kiln", "--config", "/dev/null", "--color", c.flag, "probe"}); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("NO_COLOR=%q --color %s on %T: colour %v, want %v", c.noColor, c.flag, c.w, got, c.want)
		}
	}
}
