package dbconn

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// A WAL position kept in a file (by kiln after a write, or in kiln-web's
// cookie, which the browser sends back and anyone may forge) is used only
// when it has the server's own form; it is then only compared with the
// standby's position, as a pg_lsn parameter.
func TestCheckPosition(t *testing.T) {
	for _, ok := range []string{"0/3000148", "16/B374D848", "0/0"} {
		if err := CheckPosition(ok); err != nil {
			t.Errorf("CheckPosition(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "0/", "/1", "0/3000148 ", "0/3000148;DROP", "x/1", "0/3000148/1", "0/0x1", "00/1", "0/b374d848", "1"} {
		if err := CheckPosition(bad); !errors.Is(err, ErrBadPosition) {
			t.Errorf("CheckPosition(%q) = %v, want ErrBadPosition", bad, err)
		}
	}
}

// A standby's recovery conflicts, wrapped as callers wrap them, are told
// apart from other errors, so that a read is made again on the primary
// only for them.
func TestRecoveryConflict(t *testing.T) {
	for code, want := range map[string]bool{"40001": true, "40P01": true, "57P04": true, "42501": false, "23505": false} {
		err := fmt.Errorf("listing jobs: %w", &pgconn.PgError{Code: code, Message: "terminating connection due to conflict with recovery"})
		if got := RecoveryConflict(err); got != want {
			t.Errorf("RecoveryConflict(%s) = %v, want %v", code, got, want)
		}
	}
	if RecoveryConflict(errors.New("connection refused")) {
		t.Error("a plain error taken for a recovery conflict")
	}
}
