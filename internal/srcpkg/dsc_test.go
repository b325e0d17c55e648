package srcpkg

import (
	"crypto/sha256"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

func TestParseRealDSC(t *testing.T) {
	t.Parallel()
	path := testpkg.DSC(t, testpkg.Deb{Name: "greet", Version: "2.0", Architecture: "amd64 arm64"})
	d, err := ParseDSC(readFile(t, path))
	if err != nil {
		t.Fatalf("ParseDSC: %v", err)
	}
	tarball := readFile(t, filepath.Join(filepath.Dir(path), "greet_2.0.tar.xz"))
	want := &DSC{Source: "greet", Version: "2.0", Architecture: []string{"amd64", "arm64"},
		Files: []DSCFile{{Name: "greet_2.0.tar.xz", Size: int64(len(tarball)), SHA256: sha256.Sum256(tarball)}}}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("ParseDSC = %+v, want %+v", d, want)
	}
	if !reflect.DeepEqual(d.ExclusiveArch(), []string{"amd64", "arm64"}) {
		t.Fatalf("ExclusiveArch = %v", d.ExclusiveArch())
	}
}

const sha = "95e1dc53581028edd6dbf24be591ae1a2a722ee0d96db540fae69a691a5f1587"
const md5sum = "cf779c62dec6ef86ee26ba9181342873"

const signedDSC = `-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Format: 3.0 (quilt)
Source: hello
Binary: hello
Architecture: any-amd64 linux-arm64
Version: 1:2.10-3+b1
Checksums-Sha256:
 ` + sha + ` 472 hello_2.10.orig.tar.gz
 ` + sha + ` 100 hello_2.10-3+b1.debian.tar.xz
Files:
 ` + md5sum + ` 472 hello_2.10.orig.tar.gz
 ` + md5sum + ` 100 hello_2.10-3+b1.debian.tar.xz
- -- not a field, dash-escaped comment
-----BEGIN PGP SIGNATURE-----

iQIzBAEBCgAdFiEE
=abcd
-----END PGP SIGNATURE-----
`

func TestParseSignedDSC(t *testing.T) {
	t.Parallel()
	// The dash-escaped line must be undone to "-- not a field", which is
	// not a field: prove the escape is handled by making it a comment.
	in := strings.Replace(signedDSC, "- -- not a field, dash-escaped comment", "- # dash-escaped comment", 1)
	d, err := ParseDSC([]byte(in))
	if err != nil {
		t.Fatalf("ParseDSC: %v", err)
	}
	if d.Source != "hello" || d.Epoch == nil || *d.Epoch != 1 || d.Version != "2.10" || d.Revision != "3+b1" ||
		fullVersion(d) != "1:2.10-3+b1" || len(d.Files) != 2 || d.Files[1].Name != "hello_2.10-3+b1.debian.tar.xz" || d.Files[1].Size != 100 {
		t.Fatalf("ParseDSC = %+v", d)
	}
	if !reflect.DeepEqual(d.ExclusiveArch(), []string{"amd64", "arm64"}) {
		t.Fatalf("ExclusiveArch = %v", d.ExclusiveArch())
	}
	// The escaped line unescaped is not a field.
	if _, err := ParseDSC([]byte(signedDSC)); err == nil || !strings.Contains(err.Error(), `"-- not a field, dash-escaped comment" is not a field`) {
		t.Fatalf("dash-escaped non-field: %v", err)
	}
}

func TestExclusiveArchOfAny(t *testing.T) {
	t.Parallel()
	for _, a := range [][]string{nil, {"any"}, {"all"}, {"amd64", "all"}, {"linux-any"}} {
		if got := (&DSC{Architecture: a}).ExclusiveArch(); got != nil {
			t.Errorf("ExclusiveArch(%v) = %v, want nil", a, got)
		}
	}
}

func TestBadDSCs(t *testing.T) {
	t.Parallel()
	base := "Format: 3.0 (native)\nSource: hello\nVersion: 1.0\nChecksums-Sha256:\n " + sha + " 472 hello_1.0.tar.xz\nFiles:\n " + md5sum + " 472 hello_1.0.tar.xz\n"
	if _, err := ParseDSC([]byte(base)); err != nil {
		t.Fatalf("base: %v", err)
	}
	cases := []struct{ name, in, msg string }{
		{"empty", "", "not a valid .dsc: no fields"},
		{"binary junk", "\x00\x01\x02", "not a valid .dsc: contains a NUL byte"},
		{"no source", strings.Replace(base, "Source: hello\n", "", 1), "not a valid .dsc: field Source is missing"},
		{"no sha256", strings.Replace(base, "Checksums-Sha256:\n "+sha+" 472 hello_1.0.tar.xz\n", "", 1), "not a valid .dsc: field Checksums-Sha256 is missing"},
		{"bad source", strings.Replace(base, "hello\n", "Hello World\n", 1), `not a valid .dsc: Source "Hello World" is not a valid source package name`},
		{"bad version", strings.Replace(base, "1.0\n", "x1.0\n", 1), `not a valid .dsc: Version "x1.0" must start with a digit`},
		{"bad epoch", strings.Replace(base, "1.0\n", "a:1.0\n", 1), `not a valid .dsc: Version "a:1.0" has a bad epoch`},
		{"twice", base + "Source: again\n", "not a valid .dsc: field Source appears twice"},
		{"two paragraphs", base + "\nSource: again\n", "not a valid .dsc: line 9: more than one paragraph"},
		{"short digest", strings.Replace(base, sha, sha[:10], 1), "not a valid .dsc: Checksums-Sha256 digest \"95e1dc5358\" has 10 characters, want 64"},
		{"bad size", strings.Replace(base, " 472 hello_1.0.tar.xz\nFiles", " -1 hello_1.0.tar.xz\nFiles", 1), `not a valid .dsc: Checksums-Sha256 size "-1" is not a number`},
		{"size disagrees", strings.Replace(base, md5sum+" 472", md5sum+" 473", 1), "not a valid .dsc: hello_1.0.tar.xz has size 473 in Files but 472 in Checksums-Sha256"},
		{"name disagrees", strings.Replace(base, md5sum+" 472 hello_1.0", md5sum+" 472 hullo_1.0", 1), "not a valid .dsc: hullo_1.0.tar.xz is in Files but not in Checksums-Sha256"},
		{"listed twice", strings.Replace(base, "Files:", " "+sha+" 472 hello_1.0.tar.xz\nFiles:", 1), "not a valid .dsc: Checksums-Sha256 lists hello_1.0.tar.xz twice"},
		{"unsigned armor", "-----BEGIN PGP MESSAGE-----\n" + base, "not a valid .dsc: OpenPGP armor that is not a clear-signed message"},
		{"no signature", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" + base, "not a valid .dsc: clear-signed message has no signature"},
		{"too big", base + strings.Repeat("#", MaxDSCSize), "not a valid .dsc: 1048791 bytes, more than the 1048576 a .dsc may have"},
	}
	for _, c := range cases {
		_, err := ParseDSC([]byte(c.in))
		if !errors.Is(err, ErrBadDSC) || err.Error() != c.msg {
			t.Errorf("%s: ParseDSC = %v, want %q", c.name, err, c.msg)
		}
	}
}

func TestUnsafeNamesAreReportedAsListed(t *testing.T) {
	t.Parallel()
	// The parser keeps names as they are; callers check them (names.CheckFileName).
	in := "Format: 3.0 (native)\nSource: hello\nVersion: 1.0\nChecksums-Sha256:\n " + sha + " 1 ../../etc/passwd\nFiles:\n " + md5sum + " 1 ../../etc/passwd\n"
	d, err := ParseDSC([]byte(in))
	if err != nil || d.Files[0].Name != "../../etc/passwd" {
		t.Fatalf("ParseDSC = %+v, %v", d, err)
	}
}
