package repo

import (
	"strings"
	"testing"
)

// A build controls its package's fields: none of them may steer the path a
// package is published under.
func TestHostileControlFieldsAreRefused(t *testing.T) {
	base := "Package: hello\nVersion: 1.0\nArchitecture: amd64\nDescription: x\n y\n"
	for _, tc := range []struct{ field, value string }{
		{"Package", "../../etc/passwd"}, {"Package", "a/b"}, {"Package", ".hidden"}, {"Package", "-rf"},
		{"Version", "1.0/../../x"}, {"Version", "1..0"}, {"Version", "1 0"}, {"Architecture", "../amd64"},
		{"Architecture", "AMD64"}, {"Source", "../src"}, {"Source", "s/x"},
	} {
		control := base
		if strings.Contains(base, tc.field+":") {
			control = strings.Replace(base, tc.field+": "+fieldValue(base, tc.field), tc.field+": "+tc.value, 1)
		} else {
			control += tc.field + ": " + tc.value + "\n"
		}
		if p, err := ParseDebControl([]byte(control)); err == nil {
			t.Errorf("%s: %q accepted, path %s", tc.field, tc.value, p.Path())
		}
	}
	p, err := ParseDebControl([]byte(base + "Source: hello-src (0.9)\nMD5sum: ab\nFilename: ../../x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Path() != "pool/main/h/hello-src/hello_1.0_amd64.deb" || strings.Contains(p.Stanza, "Filename") || strings.Contains(p.Stanza, "MD5sum") {
		t.Fatalf("path %s, stanza %q", p.Path(), p.Stanza)
	}
	if _, err := ParseDebControl([]byte(base + "\nPackage: second\n")); err == nil {
		t.Fatal("two stanzas accepted")
	}
}

func fieldValue(control, field string) string {
	for _, l := range strings.Split(control, "\n") {
		if v, ok := strings.CutPrefix(l, field+": "); ok {
			return v
		}
	}
	return ""
}

func TestVersionOrder(t *testing.T) {
	deb := [][2]string{{"1.0", "1.1"}, {"1.0~rc1", "1.0"}, {"1.0", "1.0-1"}, {"1.0-1", "1.0-2"}, {"2.0", "1:0.1"},
		{"1.0a", "1.0b"}, {"1.0", "1.0+b1"}, {"1.9", "1.10"}, {"0~", "0"}, {"2.0-1~bpo1", "2.0-1"}}
	for _, p := range deb {
		if CompareDeb(p[0], p[1]) >= 0 || CompareDeb(p[1], p[0]) <= 0 {
			t.Errorf("deb: %s should be older than %s", p[0], p[1])
		}
	}
	rpm := [][2]string{{"1.0-1", "1.0-2"}, {"1.0-1", "1.1-1"}, {"1.9-1", "1.10-1"}, {"1.0~rc1-1", "1.0-1"},
		{"1.0-1", "1:0.1-1"}, {"1.0a-1", "1.0.1-1"}, {"1.0-1", "1.0^git1-1"}}
	for _, p := range rpm {
		if CompareRPM(p[0], p[1]) >= 0 || CompareRPM(p[1], p[0]) <= 0 {
			t.Errorf("rpm: %s should be older than %s", p[0], p[1])
		}
	}
	if CompareDeb("1.0-1", "1.0-1") != 0 || CompareRPM("0:1.0-1", "1.0-1") != 0 {
		t.Error("equal versions differ")
	}
}
