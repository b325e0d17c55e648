package srcpkg

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxDSCSize is the largest .dsc kiln reads. Real ones are a few kilobytes;
// the limit keeps a hostile one from being read into memory whole.
const MaxDSCSize = 1 << 20

// ErrBadDSC means the bytes are not a usable Debian source control file.
var ErrBadDSC = errors.New("not a valid .dsc")

// DSC is what kiln needs to know about a Debian source package.
type DSC struct {
	Source   string
	Epoch    *int32 // nil when the version has no epoch
	Version  string // upstream version
	Revision string // Debian revision; empty for a native package
	// Architecture is the list of the Architecture field (any, all,
	// amd64, linux-any, ...).
	Architecture []string
	// Files are the files the .dsc lists, with their SHA-256 and size
	// (from Checksums-Sha256, cross-checked against Files).
	Files []DSCFile
}

// DSCFile is one file a .dsc lists.
type DSCFile struct {
	Name   string
	Size   int64
	SHA256 [32]byte
}

// ExclusiveArch returns the architectures the package builds on, from the
// Architecture field: nil when it builds on any (any, all, linux-any, or no
// field at all). any-X and linux-X become X; other wildcards (kfreebsd-any,
// ...) are kept as they are and match no Linux platform.
func (d *DSC) ExclusiveArch() []string {
	var out []string
	for _, a := range d.Architecture {
		switch {
		case a == "any" || a == "all" || a == "linux-any" || a == "any-any":
			return nil
		case strings.HasPrefix(a, "any-"):
			out = append(out, strings.TrimPrefix(a, "any-"))
		case strings.HasPrefix(a, "linux-"):
			out = append(out, strings.TrimPrefix(a, "linux-"))
		default:
			out = append(out, a)
		}
	}
	return out
}

// ParseDSC parses a .dsc: one deb822 paragraph, possibly inside an OpenPGP
// clear-signed message. The signature is not checked: kiln knows who
// submitted a job from the database session, not from a key.
func ParseDSC(data []byte) (*DSC, error) {
	if len(data) > MaxDSCSize {
		return nil, fmt.Errorf("%w: %d bytes, more than the %d a .dsc may have", ErrBadDSC, len(data), MaxDSCSize)
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, fmt.Errorf("%w: contains a NUL byte", ErrBadDSC)
	}
	body, err := stripClearSign(data)
	if err != nil {
		return nil, err
	}
	fields, err := parseParagraph(body)
	if err != nil {
		return nil, err
	}
	d := &DSC{}
	for _, f := range []string{"format", "source", "version", "checksums-sha256", "files"} {
		if strings.TrimSpace(fields[f]) == "" {
			return nil, fmt.Errorf("%w: field %s is missing", ErrBadDSC, canonical(f))
		}
	}
	d.Source = strings.TrimSpace(fields["source"])
	if !validSourceName(d.Source) {
		return nil, fmt.Errorf("%w: Source %q is not a valid source package name", ErrBadDSC, d.Source)
	}
	if err := d.parseVersion(strings.TrimSpace(fields["version"])); err != nil {
		return nil, err
	}
	d.Architecture = strings.Fields(fields["architecture"])

	sums, err := parseFileList(fields["checksums-sha256"], "Checksums-Sha256", 64)
	if err != nil {
		return nil, err
	}
	md5s, err := parseFileList(fields["files"], "Files", 32)
	if err != nil {
		return nil, err
	}
	if len(sums) != len(md5s) {
		return nil, fmt.Errorf("%w: Files lists %d files, Checksums-Sha256 %d", ErrBadDSC, len(md5s), len(sums))
	}
	bySum := make(map[string]fileLine, len(sums))
	for _, s := range sums {
		bySum[s.name] = s
	}
	for _, m := range md5s {
		s, ok := bySum[m.name]
		if !ok {
			return nil, fmt.Errorf("%w: %s is in Files but not in Checksums-Sha256", ErrBadDSC, m.name)
		}
		if s.size != m.size {
			return nil, fmt.Errorf("%w: %s has size %d in Files but %d in Checksums-Sha256", ErrBadDSC, m.name, m.size, s.size)
		}
	}
	for _, s := range sums {
		f := DSCFile{Name: s.name, Size: s.size}
		copy(f.SHA256[:], s.sum)
		d.Files = append(d.Files, f)
	}
	return d, nil
}

const (
	clearSignBegin = "-----BEGIN PGP SIGNED MESSAGE-----"
	signatureBegin = "-----BEGIN PGP SIGNATURE-----"
)

// stripClearSign returns the signed text of an OpenPGP clear-signed
// message (RFC 4880 section 7), or data itself when it is not signed.
func stripClearSign(data []byte) ([]byte, error) {
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	first := 0
	for first < len(lines) && strings.TrimSpace(lines[first]) == "" {
		first++
	}
	if first == len(lines) || strings.TrimRight(lines[first], " \t") != clearSignBegin {
		if bytes.Contains(data, []byte("-----BEGIN PGP")) {
			return nil, fmt.Errorf("%w: OpenPGP armor that is not a clear-signed message", ErrBadDSC)
		}
		return data, nil
	}
	// Armor headers (Hash: ...) up to the first empty line.
	i := first + 1
	for ; i < len(lines) && lines[i] != ""; i++ {
		if !strings.Contains(lines[i], ": ") {
			return nil, fmt.Errorf("%w: bad armor header %q", ErrBadDSC, lines[i])
		}
	}
	if i == len(lines) {
		return nil, fmt.Errorf("%w: clear-signed message has no text", ErrBadDSC)
	}
	var out strings.Builder
	for i++; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimRight(l, " \t") == signatureBegin {
			return []byte(out.String()), nil
		}
		if strings.HasPrefix(l, "-----") {
			return nil, fmt.Errorf("%w: unexpected armor line %q", ErrBadDSC, l)
		}
		l = strings.TrimPrefix(l, "- ") // dash-escaping
		out.WriteString(l)
		out.WriteByte('\n')
	}
	return nil, fmt.Errorf("%w: clear-signed message has no signature", ErrBadDSC)
}

// parseParagraph reads one deb822 paragraph into lower-cased field names
// and their values (continuation lines joined with newlines).
func parseParagraph(body []byte) (map[string]string, error) {
	fields := map[string]string{}
	var cur string
	ended := false
	for n, line := range strings.Split(string(body), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.TrimSpace(line) == "":
			if len(fields) > 0 {
				ended = true
			}
			cur = ""
		case ended:
			return nil, fmt.Errorf("%w: line %d: more than one paragraph", ErrBadDSC, n+1)
		case strings.HasPrefix(line, "#"):
			// comment
		case line[0] == ' ' || line[0] == '\t':
			if cur == "" {
				return nil, fmt.Errorf("%w: line %d: continuation line without a field", ErrBadDSC, n+1)
			}
			fields[cur] += "\n" + strings.TrimSpace(line)
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("%w: line %d: %q is not a field", ErrBadDSC, n+1, clip(line))
			}
			key := strings.ToLower(name)
			if _, dup := fields[key]; dup {
				return nil, fmt.Errorf("%w: field %s appears twice", ErrBadDSC, name)
			}
			fields[key] = strings.TrimSpace(value)
			cur = key
		}
	}
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: no fields", ErrBadDSC)
	}
	return fields, nil
}

type fileLine struct {
	sum  []byte
	size int64
	name string
}

// parseFileList reads the lines "digest size name" of a checksum field.
func parseFileList(value, field string, hexLen int) ([]fileLine, error) {
	var out []fileLine
	seen := map[string]bool{}
	for _, line := range strings.Split(value, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		parts := strings.Fields(line)
		if len(parts) != 3 {
			return nil, fmt.Errorf("%w: %s line %q is not \"digest size name\"", ErrBadDSC, field, clip(line))
		}
		if len(parts[0]) != hexLen {
			return nil, fmt.Errorf("%w: %s digest %q has %d characters, want %d", ErrBadDSC, field, clip(parts[0]), len(parts[0]), hexLen)
		}
		sum, err := hex.DecodeString(parts[0])
		if err != nil {
			return nil, fmt.Errorf("%w: %s digest %q is not hex", ErrBadDSC, field, clip(parts[0]))
		}
		size, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("%w: %s size %q is not a number", ErrBadDSC, field, clip(parts[1]))
		}
		if seen[parts[2]] {
			return nil, fmt.Errorf("%w: %s lists %s twice", ErrBadDSC, field, clip(parts[2]))
		}
		seen[parts[2]] = true
		out = append(out, fileLine{sum: sum, size: size, name: parts[2]})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s lists no files", ErrBadDSC, field)
	}
	return out, nil
}

// parseVersion splits [epoch:]upstream[-revision].
func (d *DSC) parseVersion(v string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: Version %q %s", ErrBadDSC, clip(v), why)
	}
	if e, rest, ok := strings.Cut(v, ":"); ok {
		n, err := strconv.ParseInt(e, 10, 32)
		if err != nil || n < 0 {
			return bad("has a bad epoch")
		}
		epoch := int32(n)
		d.Epoch = &epoch
		v = rest
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		d.Revision = v[i+1:]
		v = v[:i]
		if d.Revision == "" || strings.Trim(d.Revision, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.~") != "" {
			return bad("has a bad Debian revision")
		}
	}
	if v == "" || v[0] < '0' || v[0] > '9' {
		return bad("must start with a digit")
	}
	if strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.~-:") != "" {
		return bad("contains characters a version may not")
	}
	d.Version = v
	return nil
}

// validSourceName follows Debian policy 5.6.1: lower-case letters, digits,
// + - and ., at least two characters, starting with a letter or digit.
func validSourceName(s string) bool {
	if len(s) < 2 || len(s) > 255 {
		return false
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || (r != '+' && r != '-' && r != '.')) {
			return false
		}
	}
	return true
}

// canonical spells a field name as .dsc files do.
func canonical(f string) string {
	switch f {
	case "checksums-sha256":
		return "Checksums-Sha256"
	}
	return strings.ToUpper(f[:1]) + f[1:]
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
