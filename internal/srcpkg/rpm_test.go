package srcpkg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRealSRPM(t *testing.T) {
	t.Parallel()
	data := readFile(t, testpkg.SRPM(t, testpkg.Spec{Name: "hello", Version: "2.1", Release: "3",
		ExclusiveArch: []string{"x86_64", "aarch64"}, ExcludeArch: []string{"ppc64le"}}))
	p, err := ParseRPM(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ParseRPM: %v", err)
	}
	want := &RPM{Name: "hello", Version: "2.1", Release: "3",
		ExclusiveArch: []string{"x86_64", "aarch64"}, ExcludeArch: []string{"ppc64le"}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("ParseRPM = %+v, want %+v", p, want)
	}
	if p.NEVR() != "hello-2.1-3" {
		t.Fatalf("NEVR %s", p.NEVR())
	}
}

func TestParseSRPMWithEpoch(t *testing.T) {
	t.Parallel()
	top := t.TempDir()
	spec := filepath.Join(top, "e.spec")
	os.WriteFile(spec, []byte("Name: withepoch\nEpoch: 7\nVersion: 1\nRelease: 1\nSummary: s\nLicense: MIT\n%description\nd\n%files\n"), 0o644)
	if out, err := exec.Command("rpmbuild", "-bs", "--define", "_topdir "+top, "--define", "_srcrpmdir "+top, spec).CombinedOutput(); err != nil {
		t.Fatalf("rpmbuild: %v\n%s", err, out)
	}
	p, err := ParseRPM(bytes.NewReader(readFile(t, filepath.Join(top, "withepoch-1-1.src.rpm"))))
	if err != nil {
		t.Fatal(err)
	}
	if p.Epoch == nil || *p.Epoch != 7 || p.NEVR() != "withepoch-7:1-1" || p.ExclusiveArch != nil {
		t.Fatalf("ParseRPM = %+v", p)
	}
}

func TestBinaryRPMIsNotSource(t *testing.T) {
	t.Parallel()
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "bin", Noarch: true})
	top := t.TempDir()
	cmd := exec.Command("rpmbuild", "--rebuild", "--define", "_topdir "+top, srpm)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rpmbuild --rebuild: %v\n%s", err, out)
	}
	_, err := ParseRPM(bytes.NewReader(readFile(t, filepath.Join(top, "RPMS", "noarch", "bin-1.0-1.noarch.rpm"))))
	if !errors.Is(err, ErrNotSource) || err.Error() != "not a source RPM: bin-1.0-1 is a binary RPM" {
		t.Fatalf("ParseRPM(binary) = %v", err)
	}
}

func TestBrokenRPMs(t *testing.T) {
	t.Parallel()
	good := readFile(t, testpkg.SRPM(t, testpkg.Spec{Name: "broken"}))
	sigEnd, mainEnd := layout(t, good)

	flip := func(at int) []byte {
		b := bytes.Clone(good)
		b[at] ^= 0xff
		return b
	}
	cases := []struct {
		name string
		data []byte
		kind error
		msg  string
	}{
		{"empty", nil, ErrNotRPM, "not an RPM package: file is 0 bytes, too short for an RPM"},
		{"text", []byte("this is a text file, not a package at all, but long enough to fill the ninety-six bytes of an RPM lead, really"), ErrNotRPM, "not an RPM package: no RPM lead magic"},
		{"cut in lead", good[:50], ErrTruncated, "truncated: file ends inside the RPM lead (50 of 96 bytes)"},
		{"cut in signature", good[:sigEnd-10], ErrTruncated, "truncated: file ends in the signature header"},
		{"cut in main header", good[:mainEnd-10], ErrTruncated, "truncated: file ends in the main header"},
		{"cut in payload", good[:len(good)-100], ErrTruncated, "truncated: header and payload are"},
		{"trailing data", append(bytes.Clone(good), "junk"...), ErrCorrupt, "corrupt: 4 bytes of trailing data after the payload"},
		{"payload byte flipped", flip(len(good) - 50), ErrCorrupt, "corrupt: MD5 digest of header and payload mismatch"},
		{"main header byte flipped", flip(mainEnd - 5), ErrCorrupt, "corrupt: header SHA-256 digest mismatch"},
		{"header magic", flip(sigEnd + 1), ErrCorrupt, "corrupt: main header has no header magic"},
	}
	for _, c := range cases {
		_, err := ParseRPM(bytes.NewReader(c.data))
		if !errors.Is(err, c.kind) || !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("%s: ParseRPM = %v, want %v starting %q", c.name, err, c.kind, c.msg)
		}
	}
}

// layout returns where the (padded) signature header and the main header
// end in an RPM file.
func layout(t testing.TB, b []byte) (sigEnd, mainEnd int) {
	t.Helper()
	hdrLen := func(at int) int {
		return 16 + 16*int(binary.BigEndian.Uint32(b[at+8:])) + int(binary.BigEndian.Uint32(b[at+12:]))
	}
	sigEnd = leadSize + hdrLen(leadSize)
	sigEnd += (8 - sigEnd%8) % 8
	return sigEnd, sigEnd + hdrLen(sigEnd)
}
