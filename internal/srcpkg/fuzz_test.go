package srcpkg

import (
	"bytes"
	"errors"
	"strconv"
	"testing"
)

// The seed corpora in testdata/fuzz/ hold real packages made by rpmbuild
// and dpkg-source (see TestWriteFuzzSeeds in seed_test.go).

func FuzzParseRPM(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseRPM(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrNotRPM) && !errors.Is(err, ErrNotSource) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if p.Name == "" {
			t.Fatalf("parsed a package without a name: %+v", p)
		}
	})
}

// FuzzRPMHeader fuzzes the header index and the tag readers directly: in
// FuzzParseRPM almost every mutation is stopped by a digest.
func FuzzRPMHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := readHeader(bytes.NewReader(data), "main header")
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		p, err := describe(h, 1)
		if err == nil && p.Name == "" {
			t.Fatalf("parsed a package without a name: %+v", p)
		}
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotSource) {
			t.Fatalf("error of no known kind: %v", err)
		}
	})
}

func FuzzParseDSC(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDSC(data)
		if err != nil {
			if !errors.Is(err, ErrBadDSC) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if !validSourceName(d.Source) || len(d.Files) == 0 || d.Version == "" {
			t.Fatalf("accepted an incomplete .dsc: %+v", d)
		}
		// The version must read back the same.
		again := &DSC{}
		if err := again.parseVersion(fullVersion(d)); err != nil || fullVersion(again) != fullVersion(d) {
			t.Fatalf("version %q does not round-trip: %v", fullVersion(d), err)
		}
	})
}

// fullVersion writes a parsed version back as a .dsc has it:
// [epoch:]version[-revision].
func fullVersion(d *DSC) string {
	v := d.Version
	if d.Epoch != nil {
		v = strconv.Itoa(int(*d.Epoch)) + ":" + v
	}
	if d.Revision != "" {
		v += "-" + d.Revision
	}
	return v
}
