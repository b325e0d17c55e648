package admin

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/roles"
)

// personName is what roles/pg_ident.conf.example maps alice@REALM to: a
// lower-case name that cannot be mistaken for a daemon's or a system role.
var personName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// reservedPrefixes are the role names people may not take: daemons' login
// roles, kiln's group roles and PostgreSQL's own.
var reservedPrefixes = []string{"builder_", "splitter_", "janitor_", "web_", "reporter_", "kiln_", "pg_"}

// CheckPersonName reports why name cannot be a person's login role.
func CheckPersonName(name string) error {
	if !personName.MatchString(name) {
		return kinded(ErrInvalid, "person %q: use a lower-case login name (letters, digits, _; at most 63), as the Kerberos principal name@REALM has it", name)
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return kinded(ErrInvalid, "person %q: names starting with %s are kept for daemons and system roles", name, p)
		}
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

// Processes are the daemons that log in with a role per host.
var Processes = []string{"builder", "splitter", "janitor", "web", "reporter"}

var hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$`)

// DaemonRole is the login role of process on host: <process>_<short host
// name>, as roles/pg_ident.conf.example maps kiln-<process>/<host>@REALM.
func DaemonRole(process, host string) (string, error) {
	found := false
	for _, p := range Processes {
		found = found || p == process
	}
	if !found {
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
			if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
				return fmt.Errorf("applying grants: %s: the tables are not there yet: run kiln admin migrate first, or kiln admin setup for every step", pgErr.Message)
			}
			return fmt.Errorf("applying grants (roles/kiln_*.sql): %w", err)
		}
		return nil
	})
}
