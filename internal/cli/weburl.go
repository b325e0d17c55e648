package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"
)

// webURL is the base address of kiln-web for printed links: the person's
// own setting (--web-url, KILN_WEB_URL, kiln.conf) if they made one, else the
// farm's (kiln admin web-url), else the default.
func webURL(ctx context.Context, c *cli.Context, db *pgxpool.Pool) string {
	v := settingsOf(c)["web-url"]
	if v.Source != "default" {
		return v.Value
	}
	if farm, err := farmWebURL(ctx, db); err == nil && farm != "" {
		return farm
	}
	return v.Value
}

// farmWebURL reads the farm's web address, "" when no admin set one.
func farmWebURL(ctx context.Context, db *pgxpool.Pool) (string, error) {
	var u string
	err := db.QueryRow(ctx, `SELECT value FROM kiln.farm_setting WHERE name = 'web_url'`).Scan(&u)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the farm's web address: %w", err)
	}
	return u, nil
}

func webURLCommand() *cli.Command {
	return &cli.Command{
		Name:      "web-url",
		Usage:     "show or set the farm's web address, which every kiln prints links with",
		ArgsUsage: "[URL]",
		Description: "Without URL it prints the address set. With one (http:// or https://) it sets it; a person's own\n" +
			"--web-url, KILN_WEB_URL or kiln.conf still wins for them.",
		Action: withDB(runWebURL),
	}
}

func runWebURL(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	w := stdout(c)
	switch c.NArg() {
	case 0:
		u, err := farmWebURL(ctx, db)
		if err != nil {
			return err
		}
		if u == "" {
			fmt.Fprintln(w, "no web address set (kiln admin web-url URL sets it)")
			return nil
		}
		fmt.Fprintln(w, u)
		return nil
	case 1:
	default:
		return usageError("kiln admin web-url takes one address, got %d arguments", c.NArg())
	}
	raw := strings.TrimRight(c.Args().First(), "/")
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(raw, " \t\r\n") {
		return usageError("kiln admin web-url: %q is not an http:// or https:// address (such as https://kiln.example.org)", c.Args().First())
	}
	_, err = db.Exec(ctx, `INSERT INTO kiln.farm_setting (name, value) VALUES ('web_url', $1)
		ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`, raw)
	if err != nil {
		return explainDB(err, "setting the farm's web address")
	}
	fmt.Fprintf(w, "the farm's web address is %s\n", raw)
	return nil
}
