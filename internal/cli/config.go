package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

// setting is one configuration key: its flag (same name), environment
// variable and default.
type setting struct {
	key, env, def string
}

// knownSettings are the keys kiln.conf may set, in the order kiln config
// prints them.
var knownSettings = []setting{
	{key: "db", env: "KILN_DB"},
	{key: "read-db", env: "KILN_READ_DB"},
	{key: "web-url", env: "KILN_WEB_URL", def: "http://localhost:8080"},
	{key: "color", env: "KILN_COLOR", def: "auto"},
}

func defaultOf(key string) string {
	for _, s := range knownSettings {
		if s.key == key {
			return s.def
		}
	}
	return ""
}

// SystemConfig is the system-wide configuration file.
const SystemConfig = "/etc/kiln/kiln.conf"

// value is a setting in effect and where it came from.
type value struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// settings are the values in effect, by key.
type settings map[string]value

func (s settings) get(key string) string { return s[key].Value }

const metadataKey = "kiln.settings"

func settingsOf(c *cli.Context) settings {
	if s, ok := c.App.Metadata[metadataKey].(settings); ok {
		return s
	}
	return settings{}
}

// loadConfig resolves the settings (flag, environment, user file, system
// file, default) before any command runs.
func loadConfig(c *cli.Context) error {
	files := []string{}
	if f := c.String("config"); f != "" {
		files = append(files, f)
	} else if f := os.Getenv("KILN_CONFIG"); f != "" {
		files = append(files, f)
	} else {
		if dir, err := os.UserConfigDir(); err == nil {
			files = append(files, filepath.Join(dir, "kiln", "kiln.conf"))
		}
		files = append(files, SystemConfig)
	}
	explicit := c.IsSet("config") || os.Getenv("KILN_CONFIG") != ""
	s, err := resolve(func(k string) (string, bool) {
		if c.IsSet(k) {
			return c.String(k), true
		}
		return "", false
	}, os.LookupEnv, files, explicit)
	if err != nil {
		if c.Args().First() == "check" {
			return checkUsage(c, "configuration: "+err.Error())
		}
		return cli.Exit("configuration: "+err.Error(), ExitUsage)
	}
	if c.App.Metadata == nil {
		c.App.Metadata = map[string]any{}
	}
	c.App.Metadata[metadataKey] = s
	return nil
}

// resolve finds each setting's value: the flag, else the environment, else
// the first of files that sets it, else the default. Files that do not
// exist are skipped unless explicit (named with --config).
func resolve(flag, env func(string) (string, bool), files []string, explicit bool) (settings, error) {
	type fromFile struct {
		value, source string
	}
	inFiles := map[string]fromFile{}
	for i := len(files) - 1; i >= 0; i-- { // earlier files win
		data, err := os.ReadFile(files[i])
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %w", err)
		}
		entries, err := parseConfig(string(data))
		if err != nil {
			return nil, fmt.Errorf("%s:%w", files[i], err)
		}
		for _, e := range entries {
			if !knownKey(e.Key) {
				return nil, fmt.Errorf("%s:%d: unknown key %q (known: %s)", files[i], e.Line, e.Key, knownKeys())
			}
			inFiles[e.Key] = fromFile{e.Value, fmt.Sprintf("%s:%d", files[i], e.Line)}
		}
	}
	out := settings{}
	for _, s := range knownSettings {
		v := value{Key: s.key, Value: s.def, Source: "default"}
		if x, ok := flag(s.key); ok {
			v.Value, v.Source = x, "flag --"+s.key
		} else if x, ok := env(s.env); ok {
			v.Value, v.Source = x, "env "+s.env
		} else if f, ok := inFiles[s.key]; ok {
			v.Value, v.Source = f.value, f.source
		}
		out[s.key] = v
	}
	switch out.get("color") {
	case "auto", "always", "never":
	default:
		return nil, fmt.Errorf("color %q (from %s): use auto, always or never", out.get("color"), out["color"].Source)
	}
	return out, nil
}

func knownKey(k string) bool {
	for _, s := range knownSettings {
		if s.key == k {
			return true
		}
	}
	return false
}

func knownKeys() string {
	var ks []string
	for _, s := range knownSettings {
		ks = append(ks, s.key)
	}
	return strings.Join(ks, ", ")
}

// entry is one key = value line of a configuration file.
type entry struct {
	Key, Value string
	Line       int
}

// parseConfig reads the key = value format of kiln.conf: one setting per
// line, blank lines and lines starting with # ignored, blanks around key
// and value dropped, a value in double quotes taken as a Go string literal
// (to keep blanks or write escapes). Keys are lower-case letters, digits and
// dashes; a key may appear once. Errors name the line.
func parseConfig(data string) ([]entry, error) {
	var out []entry
	seen := map[string]int{}
	for i, line := range strings.Split(data, "\n") {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		for _, r := range line {
			if (r < 0x20 && r != '\t') || r == 0x7f {
				return nil, fmt.Errorf("%d: control character in line", n)
			}
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%d: expected key = value", n)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !validKey(k) {
			return nil, fmt.Errorf("%d: key %q is not valid (lower-case letters, digits and dashes)", n, k)
		}
		if prev, dup := seen[k]; dup {
			return nil, fmt.Errorf("%d: key %s is already set on line %d", n, k, prev)
		}
		seen[k] = n
		if strings.HasPrefix(v, `"`) {
			u, err := strconv.Unquote(v)
			if err != nil {
				return nil, fmt.Errorf("%d: value of %s is not a valid quoted string", n, k)
			}
			v = u
		}
		out = append(out, entry{Key: k, Value: v, Line: n})
	}
	return out, nil
}

var passwordParam = regexp.MustCompile(`(password\s*=\s*)('(\\.|[^'])*'|[^\s&]+)`)

// redactPassword hides a password in a connection string or URL.
func redactPassword(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			s = u.String()
		}
	}
	return passwordParam.ReplaceAllString(s, "${1}xxxxx")
}

func validKey(k string) bool {
	if k == "" || k[0] < 'a' || k[0] > 'z' {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "print the settings in effect and where each came from",
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			s := settingsOf(c)
			var vs []value
			for _, k := range knownSettings {
				vs = append(vs, s[k.key])
			}
			if c.Bool("json") {
				return printJSON(stdout(c), vs)
			}
			tw := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tVALUE\tFROM")
			for _, v := range vs {
				shown := v.Value
				if v.Key == "db" {
					shown = redactPassword(shown)
					if shown == "" {
						shown = "(empty: libpq's PG* environment variables)"
					}
				}
				if v.Key == "read-db" {
					shown = redactPassword(shown)
					if shown == "" {
						shown = "(empty: reads use db)"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Key, shown, v.Source)
			}
			for _, pg := range []string{"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE", "PGSSLMODE", "PGKRBSRVNAME"} {
				if x, ok := os.LookupEnv(pg); ok {
					fmt.Fprintf(tw, "%s\t%s\tenv\n", pg, x)
				}
			}
			return tw.Flush()
		},
	}
}
