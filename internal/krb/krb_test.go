package krb

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

// Logins against a real KDC are tested in internal/dbconn (krb_test.go).

func TestFromEnv(t *testing.T) {
	t.Setenv("KRB5_CLIENT_KTNAME", "")
	t.Setenv("KRB5CCNAME", "")
	t.Setenv("KRB5_CONFIG", "")
	id := Identity{}.FromEnv()
	want := Identity{CCache: fmt.Sprintf("FILE:/tmp/krb5cc_%d", os.Getuid()), Config: "/etc/krb5.conf"}
	if id != want {
		t.Fatalf("defaults: got %+v, want %+v", id, want)
	}
	t.Setenv("KRB5_CLIENT_KTNAME", "FILE:/etc/kiln/builder.keytab")
	t.Setenv("KRB5CCNAME", "FILE:/tmp/cc")
	t.Setenv("KRB5_CONFIG", "/etc/kiln/krb5.conf")
	id = Identity{}.FromEnv()
	want = Identity{Keytab: "/etc/kiln/builder.keytab", Config: "/etc/kiln/krb5.conf"}
	if id != want {
		t.Fatalf("a keytab wins over the ticket cache: got %+v, want %+v", id, want)
	}
	id = Identity{CCache: "/tmp/mine"}.FromEnv()
	if id.CCache != "/tmp/mine" || id.Keytab != "/etc/kiln/builder.keytab" {
		t.Fatalf("explicit fields are kept: %+v", id)
	}
}

func TestOneIdentityPerProcess(t *testing.T) {
	a := Identity{Keytab: "/a.keytab", Config: "/krb5.conf"}
	if err := Use(a); err != nil {
		t.Fatal(err)
	}
	if err := Use(a); err != nil {
		t.Fatalf("the same identity again: %v", err)
	}
	if err := Use(Identity{}); err != nil {
		t.Fatalf("an empty identity keeps the one in use: %v", err)
	}
	err := Use(Identity{Keytab: "/b.keytab", Config: "/krb5.conf"})
	if !errors.Is(err, ErrIdentityConflict) {
		t.Fatalf("a second identity: got %v, want ErrIdentityConflict", err)
	}
	if d := Describe(); d != "keytab /a.keytab" {
		t.Fatalf("Describe: %q", d)
	}
}
