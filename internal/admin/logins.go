package admin

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/roles"
)

// personName is what roles/pg_ident.conf.example maps alice@REALM to: a
// lower-case name that cannot be mistaken for a daemon's or a system role.
var personName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// ReservedPrefix returns the start of name that people's role names may
// not have (a daemon's login role <process>_, kiln's group roles kiln_,
// PostgreSQL's pg_), as roles/pg_ident.conf.example refuses them for
// name@REALM; kiln-web's login maps principals with the same rule.
func ReservedPrefix(name string) (string, bool) {
	for _, p := range append(slices.Clone(Processes), "kiln", "pg") {
		if strings.HasPrefix(name, p+"_") {
			return p + "_", true
		}
	}
	return "", false
}

// CheckPersonName reports why name cannot be a person's login role.
func CheckPersonName(name string) error {
	if !personName.MatchString(name) {
		return kinded(ErrInvalid, "person %q: use a lower-case login name (letters, digits, _; at most 63), as the Kerberos principal name@REALM has it", name)
	}
	if p, ok := ReservedPrefix(name); ok {
		return kinded(ErrInvalid, "person %q: names starting with %s are kept for daemons and system roles", name, p)
	}
	if name == "postgres" {
		return kinded(ErrInvalid, "person %q: that is the superuser's name", name)
	}
	return nil
}

// AddPerson creates a person's login role, a member of kiln_submitter (or of
// kiln_admin when admin is set), and lets it submit to buckets. All or
// nothing: an unknown bucket leaves no role behind.
func AddPerson(ctx context.Context, db *pgxpool.Pool, name string, buckets []string, admin bool) error {
	if err := CheckPersonName(name); err != nil {
		return err
	}
	group := "kiln_submitter"
	if admin {
		group = "kiln_admin"
	}
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if err := createLogin(ctx, tx, name, group); err != nil {
			return err
		}
		for _, b := range buckets {
			if _, err := tx.Exec(ctx, "INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ($1, $2)", b, name); err != nil {
				return explain(err, "bucket", b)
			}
		}
		return nil
	})
}

// Processes are the daemons that log in with a role per host: kiln-P on
// host H has the Kerberos principal kiln-P/H@REALM, the keytab
// /etc/kiln/kiln-P.keytab and the login role P_<short H>, a member of
// kiln_P (docs/kerberos.md).
var Processes = []string{"builder", "splitter", "janitor", "web", "reporter", "publisher"}

var hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$`)

// DaemonRole is the login role of process on host: <process>_<short host
// name>, as roles/pg_ident.conf.example maps kiln-<process>/<host>@REALM.
func DaemonRole(process, host string) (string, error) {
	if !slices.Contains(Processes, process) {
		return "", kinded(ErrInvalid, "unknown process %q (known: %s)", process, strings.Join(Processes, ", "))
	}
	short := strings.SplitN(host, ".", 2)[0]
	if short != strings.ToLower(short) {
		return "", kinded(ErrInvalid, "host %q: write it in lower case (%s), as its Kerberos principal has it", host, strings.ToLower(host))
	}
	if !hostLabel.MatchString(short) {
		return "", kinded(ErrInvalid, "host %q: its first label must be letters, digits and inner hyphens (at most 42)", host)
	}
	return process + "_" + short, nil
}

// AddDaemonHost creates the login role of process on host (a member of
// kiln_<process>) and returns its name.
func AddDaemonHost(ctx context.Context, db *pgxpool.Pool, process, host string) (string, error) {
	role, err := DaemonRole(process, host)
	if err != nil {
		return "", err
	}
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error { return createLogin(ctx, tx, role, "kiln_"+process) })
	return role, err
}

// DaemonLogin is the login role of a daemon: a login role that is a
// member of kiln_<Process>.
type DaemonLogin struct {
	Process string `json:"process"`
	Role    string `json:"role"`
	// Principal is what roles/pg_ident.conf.example maps to Role, with
	// [.DOMAIN] for the host's domain, if any, and REALM for the realm ("" when Role is
	// not named <process>_<host>, so the example map gives it nobody).
	Principal string `json:"principal"`
}

// ListDaemonHosts returns the daemons' login roles, by process and name:
// every login role that is a direct member of a kiln_<process> group.
func ListDaemonHosts(ctx context.Context, db *pgxpool.Pool) ([]DaemonLogin, error) {
	groups := make([]string, len(Processes))
	for i, p := range Processes {
		groups[i] = "kiln_" + p
	}
	rows, err := db.Query(ctx, `SELECT substr(g.rolname, 6), r.rolname::text
		FROM pg_catalog.pg_roles r
		JOIN pg_catalog.pg_auth_members m ON m.member = r.oid
		JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
		WHERE r.rolcanlogin AND g.rolname = ANY($1)
		ORDER BY 1, 2`, groups)
	if err != nil {
		return nil, fmt.Errorf("listing daemon login roles: %w", err)
	}
	logins, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DaemonLogin, error) {
		var l DaemonLogin
		err := r.Scan(&l.Process, &l.Role)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing daemon login roles: %w", err)
	}
	for i, l := range logins {
		if short, ok := strings.CutPrefix(l.Role, l.Process+"_"); ok && hostLabel.MatchString(short) {
			logins[i].Principal = "kiln-" + l.Process + "/" + short + "[.DOMAIN]@REALM"
		}
	}
	return logins, nil
}

// RemoveDaemonHost drops the login role of process on host, as
// AddDaemonHost made it, and returns its name. A role that is not a login
// member of kiln_<process> is not touched: this drops daemons' logins, not
// people's or groups.
func RemoveDaemonHost(ctx context.Context, db *pgxpool.Pool, process, host string) (string, error) {
	role, err := DaemonRole(process, host)
	if err != nil {
		return "", err
	}
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var daemon bool
		err := tx.QueryRow(ctx, `SELECT r.rolcanlogin AND EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
				JOIN pg_catalog.pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid AND g.rolname = $2)
			FROM pg_catalog.pg_roles r WHERE r.rolname = $1`, role, "kiln_"+process).Scan(&daemon)
		if errors.Is(err, pgx.ErrNoRows) {
			return kinded(ErrNotFound, "there is no login role %s (kiln admin daemon-host list shows them)", role)
		}
		if err != nil {
			return fmt.Errorf("looking up role %q: %w", role, err)
		}
		if !daemon {
			return kinded(ErrInvalid, "role %s is not a login member of kiln_%s, so not kiln-%s's login: left as it is", role, process, process)
		}
		_, err = tx.Exec(ctx, "DROP ROLE "+pgx.Identifier{role}.Sanitize())
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			switch pgErr.Code {
			case "42501":
				return because(err, ErrPermission, "dropping role %q: your login may not drop roles: run this as the postgres superuser or as a login with CREATEROLE", role)
			case "2BP01":
				return fmt.Errorf("dropping role %q: it owns or holds rights on objects (%s): REASSIGN OWNED BY and DROP OWNED BY it first: %w", role, pgErr.Detail, err)
			}
		}
		if err != nil {
			return fmt.Errorf("dropping role %q: %w", role, err)
		}
		return nil
	})
	return role, err
}

func createLogin(ctx context.Context, tx pgx.Tx, name, group string) error {
	_, err := tx.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE %s", pgx.Identifier{name}.Sanitize(), pgx.Identifier{group}.Sanitize()))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "42710":
			return because(err, ErrExists, "database role %q already exists (see \\du in psql)", name)
		case "42501":
			return because(err, ErrPermission, "creating role %q: your login may not create roles: run this as the postgres superuser or as a login with CREATEROLE (ALTER ROLE you CREATEROLE)", name)
		case "42704":
			return fmt.Errorf("creating role %q: group role %s is missing: run kiln admin roles apply first: %w", name, group, err)
		}
	}
	if err != nil {
		return fmt.Errorf("creating role %q: %w", name, err)
	}
	return nil
}

// GroupRoles are the group roles roles/00-groups.sql creates: the owner
// and the way to it, readers, submitters, admins and one per daemon process.
func GroupRoles() []string {
	groups := []string{"kiln_owner", "kiln_migrator", "kiln_reader", "kiln_submitter", "kiln_admin"}
	for _, p := range Processes {
		groups = append(groups, "kiln_"+p)
	}
	return groups
}

// MissingRoles returns the roles of names that the database cluster does
// not have, in the order given.
func MissingRoles(ctx context.Context, db *pgxpool.Pool, names []string) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT n FROM unnest($1::text[]) WITH ORDINALITY AS g (n, i)
		WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = g.n) ORDER BY g.i`, names)
	if err != nil {
		return nil, fmt.Errorf("looking up roles: %w", err)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("looking up roles: %w", err)
	}
	return missing, nil
}

// CreateGroups creates the group roles the schema grants to
// (roles/00-groups.sql), the first step of setting up a farm database:
// migrations name them. It is idempotent.
func CreateGroups(ctx context.Context, db *pgxpool.Pool) error {
	if _, err := db.Exec(ctx, roles.Groups()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return because(err, ErrPermission, "creating the group roles (roles/00-groups.sql): %s: run this as the postgres superuser or as a login with CREATEROLE", pgErr.Message)
		}
		return fmt.Errorf("creating the group roles (roles/00-groups.sql): %w", err)
	}
	return nil
}

// ApplyRoles applies the SQL in roles/ in one transaction: the group roles,
// then every group's grants as kiln_owner (who owns the tables). It needs a
// login that may create roles and switch to kiln_owner (an admin with
// CREATEROLE, or the superuser), on a migrated database.
func ApplyRoles(ctx context.Context, db *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, roles.Groups()); err != nil {
			return fmt.Errorf("creating group roles (roles/00-groups.sql): %w", err)
		}
		var owner bool
		if err := tx.QueryRow(ctx, "SELECT pg_has_role(current_user, 'kiln_owner', 'MEMBER')").Scan(&owner); err != nil {
			return fmt.Errorf("checking membership of kiln_owner: %w", err)
		}
		if owner {
			if _, err := tx.Exec(ctx, "SET LOCAL ROLE kiln_owner"); err != nil {
				return fmt.Errorf("switching to kiln_owner: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, roles.Grants()); err != nil {
			var pgErr *pgconn.PgError
			// 3F000: no schema kiln yet; 42P01: no table yet.
			if errors.As(err, &pgErr) && (pgErr.Code == "3F000" || pgErr.Code == "42P01") {
				return fmt.Errorf("applying grants: %s: the tables are not there yet: run kiln admin migrate first, or kiln admin setup for every step", pgErr.Message)
			}
			return fmt.Errorf("applying grants (roles/kiln_*.sql): %w", err)
		}
		return nil
	})
}
