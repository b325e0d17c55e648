package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// kiln runs the CLI with args against dbURL, returning what it printed and
// its exit status. Config files on this machine are not read.
func kiln(t *testing.T, dbURL string, args ...string) (string, int) {
	t.Helper()
	var out syncBuffer
	code := kilnTo(context.Background(), &out, dbURL, args...)
	return out.String(), code
}

func kilnTo(ctx context.Context, out *syncBuffer, dbURL string, args ...string) int {
	app := App()
	app.Writer = out
	app.ErrWriter = out
	full := append([]string{"kiln", "--config", "/dev/null", "--db", dbURL}, args...)
	err := app.RunContext(ctx, full)
	if err != nil && err.Error() != "" {
		out.Write([]byte("error: " + err.Error() + "\n"))
	}
	return ExitCode(err)
}

// must runs kiln and fails the test unless it exits with want and prints
// every one of contains.
func must(t *testing.T, dbURL string, want int, args []string, contains ...string) string {
	t.Helper()
	out, code := kiln(t, dbURL, args...)
	if code != want {
		t.Fatalf("kiln %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out)
	}
	for _, s := range contains {
		if !strings.Contains(out, s) {
			t.Fatalf("kiln %s: output lacks %q:\n%s", strings.Join(args, " "), s, out)
		}
	}
	return out
}

// mustJSON runs kiln with --json and decodes what it printed into v.
func mustJSON(t *testing.T, dbURL string, v any, args ...string) {
	t.Helper()
	// Flags go before arguments (urfave stops at the first argument).
	args = append([]string{args[0], "--json"}, args[1:]...)
	out := must(t, dbURL, 0, args)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("kiln %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// waitFor waits until out contains s, failing the test after a minute (a
// hang guard, not a timing assertion).
func waitFor(t *testing.T, out *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output never showed %q:\n%s", s, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seed gives a test a seeded farm; commands run as alice (a plain member of
// kiln_submitter) unless the test says otherwise.
func seed(t *testing.T) (*farmtest.Farm, string) {
	t.Helper()
	db := pgtest.New(t)
	f := farmtest.Seed(t, db)
	return f, db.URLAs(f.Alice)
}
