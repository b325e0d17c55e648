// Package names checks the identifiers and file names kiln accepts from the
// outside. The same rules are enforced by the database (kiln.valid_name and
// kiln.safe_file_name); checking them here gives a precise message before
// anything is written.
package names

import (
	"fmt"
	"strings"
)

// MaxName is the longest platform, bucket or builder name.
const MaxName = 50

// CheckName reports why s is not a valid platform, bucket or builder name:
// lower-case letters and digits separated by single '-' or '_', at most
// MaxName characters. what names the kind of thing for the message.
func CheckName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s name is empty", what)
	}
	if len(s) > MaxName {
		return fmt.Errorf("%s name %q is longer than %d characters", what, s, MaxName)
	}
	prevSep := true // a separator may not come first
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			prevSep = false
		case r == '-' || r == '_':
			if prevSep {
				return fmt.Errorf("%s name %q is not valid: use lower-case letters and digits separated by single - or _", what, s)
			}
			prevSep = true
		default:
			return fmt.Errorf("%s name %q is not valid: use lower-case letters and digits separated by single - or _", what, s)
		}
	}
	if prevSep {
		return fmt.Errorf("%s name %q is not valid: it may not end with - or _", what, s)
	}
	return nil
}

// CheckFileName reports why s is not a file name kiln will store or create:
// it must be 1 to 255 bytes, contain no '/' or '\', no "..", no control
// characters, and not start with '-'.
func CheckFileName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("file name is empty")
	case len(s) > 255:
		return fmt.Errorf("file name %q is longer than 255 bytes", s[:40]+"...")
	case strings.ContainsAny(s, `/\`):
		return fmt.Errorf("file name %q contains a path separator", s)
	case strings.Contains(s, ".."):
		return fmt.Errorf("file name %q contains '..'", s)
	case s == ".":
		return fmt.Errorf("file name %q is not a file", s)
	case strings.HasPrefix(s, "-"):
		return fmt.Errorf("file name %q starts with '-'", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("file name %q contains a control character", s)
		}
	}
	return nil
}
