package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kiln-build/kiln/internal/admin"
	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/submit"
)

// errIntegrity marks refusing to write a file: bytes that do not match
// their checksum, an unsafe name, a file in the way.
var errIntegrity = errors.New("integrity")

// integrityError is an error message of the errIntegrity kind.
type integrityError struct{ msg string }

func (e *integrityError) Error() string { return e.msg }
func (e *integrityError) Is(target error) bool {
	return target == errIntegrity
}

// quotaCode is the SQLSTATE of a refusal for a person's quota
// (schema/0018_quotas.sql, docs/quotas.md).
const quotaCode = "KL001"

// classify maps an error to its exit code (docs/cli.md).
func classify(err error) int {
	var ce *connectError
	var pgErr *pgconn.PgError
	var refused *submit.RefusedError
	switch {
	case strings.HasPrefix(err.Error(), "Required flag"):
		// urfave/cli's missing required option (its type is unexported).
		return ExitUsage
	case errors.Is(err, context.Canceled):
		// Ctrl-C (cmd/kiln cancels the context on SIGINT and SIGTERM).
		return ExitInterrupted
	case errors.As(err, &ce):
		return ExitConnect
	case errors.As(err, &refused):
		return refusedExit[refused.Kind]
	case errors.Is(err, admin.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, admin.ErrPermission):
		return ExitPermission
	case errors.Is(err, admin.ErrInvalid):
		return ExitUsage
	case errors.Is(err, admin.ErrExists):
		return ExitState
	case errors.Is(err, report.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, errIntegrity), errors.Is(err, blob.ErrCorrupt):
		return ExitIntegrity
	case errors.As(err, &pgErr):
		switch {
		case pgErr.Code == "42501":
			return ExitPermission
		case pgErr.Code == "P0002":
			return ExitNotFound
		case pgErr.Code == "55000", pgErr.Code == quotaCode:
			return ExitState
		case strings.HasPrefix(pgErr.Code, "28"), strings.HasPrefix(pgErr.Code, "08"):
			return ExitConnect
		}
	}
	return ExitError
}

// refusedExit is the exit status of each kind of submit.RefusedError.
var refusedExit = map[string]int{
	submit.Unknown:   ExitNotFound,
	submit.Forbidden: ExitPermission,
	submit.Unusable:  ExitState,
	submit.Malformed: ExitUsage,
	submit.Corrupt:   ExitIntegrity,
}

// dbError is a database error explained: it prints msg alone (not the
// server's message again with its SQLSTATE) and unwraps to the error, so
// classify still sees its code.
type dbError struct {
	msg string
	err error
}

func (e *dbError) Error() string { return e.msg }
func (e *dbError) Unwrap() error { return e.err }

// explainDB turns a database error of doing into a message saying what to
// do. It keeps the error wrapped, so classify still sees it.
func explainDB(err error, doing string) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "42501":
			return &dbError{fmt.Sprintf("%s: %s (ask a kiln admin if you should be allowed)", doing, pgErr.Message), err}
		case "P0002":
			return &dbError{fmt.Sprintf("%s: %s (kiln jobs lists jobs)", doing, pgErr.Message), err}
		case "55000":
			return &dbError{fmt.Sprintf("%s: %s", doing, pgErr.Message), err}
		case quotaCode:
			// The message says which quota and when it resets; the
			// hint who can raise it. Nothing else adds to that.
			return &dbError{fmt.Sprintf("%s refused: %s (%s)", doing, pgErr.Message, pgErr.Hint), err}
		}
		if olderSchema(pgErr) {
			return &dbError{fmt.Sprintf("%s: the database's kiln schema does not match this kiln (%s): when the schema is older, "+
				"a kiln admin runs `kiln admin migrate` and applies roles/ again; when this kiln is the older, use the farm's version", doing, pgErr.Message), err}
		}
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// olderSchema says whether a database error is what a kiln newer than the
// database's schema meets: a function, table or column it does not have.
// A kiln older than the schema can meet the same (a function whose
// arguments changed), so the message names both.
func olderSchema(pgErr *pgconn.PgError) bool {
	switch pgErr.Code {
	case "42883", "42P01", "42703": // undefined_function, undefined_table, undefined_column
		return true
	}
	return false
}

// kerberosHint adds what to do when a connection failed for the lack of a
// Kerberos ticket.
func kerberosHint(err error) string {
	s := strings.ToLower(err.Error())
	for _, w := range []string{"gss", "kerberos", "krb5", "ccache", "credential cache", "ticket"} {
		if strings.Contains(s, w) {
			return " (no valid Kerberos ticket? run kinit, and klist to check)"
		}
	}
	return ""
}
