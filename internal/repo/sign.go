package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Keyring is the publisher host's GnuPG home holding the buckets' secret
// keys, like a keytab: readable by the publisher's system user only, never
// in the database, never on a builder.
type Keyring struct {
	// Home is the GNUPGHOME directory (mode 0700).
	Home string
}

func (k Keyring) gpg(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "gpg", append([]string{"--homedir", k.Home, "--batch", "--no-tty", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("gpg %s: %w: %s", args[0], err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// Check makes sure Home exists and is private.
func (k Keyring) Check() error {
	if k.Home == "" {
		return errors.New("no GnuPG home for the signing keys (--gnupghome)")
	}
	if err := os.MkdirAll(k.Home, 0o700); err != nil {
		return fmt.Errorf("GnuPG home: %w", err)
	}
	st, err := os.Stat(k.Home)
	if err != nil {
		return fmt.Errorf("GnuPG home: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("GnuPG home %s is readable by others (mode %o): it holds secret keys", k.Home, st.Mode().Perm())
	}
	return nil
}

// Generate makes a new signing key for bucket and returns its fingerprint
// and armored public key.
func (k Keyring) Generate(ctx context.Context, bucket string) (fingerprint, public string, err error) {
	// gpg refuses a second key with the same user id, so the creation time
	// is part of it; the fingerprint is what names the key everywhere else.
	uid := fmt.Sprintf("kiln bucket %s (%s) <kiln-%s@repository.invalid>", bucket, time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), bucket)
	out, err := k.gpg(ctx, nil, "--status-fd", "1", "--quick-generate-key", uid, "ed25519", "sign", "never")
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[1] == "KEY_CREATED" {
			fingerprint = f[3]
		}
	}
	if fingerprint == "" {
		return "", "", errors.New("gpg did not report the new key's fingerprint")
	}
	pub, err := k.gpg(ctx, nil, "--armor", "--export", fingerprint)
	if err != nil {
		return "", "", err
	}
	return fingerprint, string(pub), nil
}

// HasSecret reports whether the keyring holds the secret key fingerprint.
func (k Keyring) HasSecret(ctx context.Context, fingerprint string) bool {
	_, err := k.gpg(ctx, nil, "--list-secret-keys", fingerprint)
	return err == nil
}

// ClearSign returns data signed inline (InRelease).
func (k Keyring) ClearSign(ctx context.Context, fingerprint string, data []byte) ([]byte, error) {
	return k.gpg(ctx, data, "--local-user", fingerprint+"!", "--digest-algo", "SHA512", "--clearsign")
}

// DetachSign returns an armored detached signature of data (Release.gpg,
// repomd.xml.asc).
func (k Keyring) DetachSign(ctx context.Context, fingerprint string, data []byte) ([]byte, error) {
	return k.gpg(ctx, data, "--local-user", fingerprint+"!", "--digest-algo", "SHA512", "--armor", "--detach-sign")
}
