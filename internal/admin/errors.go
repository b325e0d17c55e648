package admin

import (
	"errors"
	"fmt"
)

// Kinds of admin errors, which `kiln admin` turns into exit statuses
// (docs/cli.md). Match them with errors.Is.
var (
	// ErrNotFound: the platform, bucket, builder, role or grant named does
	// not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: what is to be created exists already.
	ErrExists = errors.New("already exists")
	// ErrInvalid: a value the command was given is not acceptable.
	ErrInvalid = errors.New("invalid value")
	// ErrPermission: the caller's database role may not do it.
	ErrPermission = errors.New("permission denied")
)

// kindError is an error message of one of the kinds above; it unwraps to
// the database error behind it, if any.
type kindError struct {
	kind error
	msg  string
	err  error
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }
func (e *kindError) Unwrap() error        { return e.err }

// kinded returns an error of kind with a formatted message.
func kinded(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// because is kinded with the error behind it kept (unwrapped, not shown).
func because(err, kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...), err: err}
}
