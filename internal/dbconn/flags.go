package dbconn

import "github.com/urfave/cli/v2"

// KerberosFlags are the command-line flags every kiln program takes to say
// who it is when the database asks for Kerberos. Each falls back to the
// standard environment variable, so a systemd unit may set either.
func KerberosFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "krb-keytab", Usage: "client keytab to log in with (daemons)", EnvVars: []string{"KILN_KRB_KEYTAB", "KRB5_CLIENT_KTNAME"}},
		&cli.StringFlag{Name: "krb-principal", Usage: "principal to take from the keytab (default: its only one)", EnvVars: []string{"KILN_KRB_PRINCIPAL"}},
		&cli.StringFlag{Name: "krb-ccache", Usage: "ticket cache to log in with (people; default as kinit: KRB5CCNAME, /tmp/krb5cc_UID)", EnvVars: []string{"KRB5CCNAME"}},
		&cli.StringFlag{Name: "krb5-config", Usage: "Kerberos configuration file (default /etc/krb5.conf)", EnvVars: []string{"KRB5_CONFIG"}},
		&cli.StringFlag{Name: "krb-service", Usage: "Kerberos service name of the database server (default postgres)", EnvVars: []string{"PGKRBSRVNAME"}},
		&cli.StringFlag{Name: "krb-spn", Usage: "whole service principal of the database server, such as postgres/db.example.org", EnvVars: []string{"KILN_KRB_SPN"}},
	}
}

// WithFlags fills cfg's Kerberos settings from KerberosFlags.
func WithFlags(c *cli.Context, cfg Config) Config {
	cfg.Keytab = c.String("krb-keytab")
	cfg.Principal = c.String("krb-principal")
	cfg.CCache = c.String("krb-ccache")
	cfg.Krb5Config = c.String("krb5-config")
	cfg.ServiceName = c.String("krb-service")
	cfg.SPN = c.String("krb-spn")
	return cfg
}
