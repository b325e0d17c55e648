// Package srcpkg reads the source packages people submit: source RPMs and
// Debian source control files (.dsc). Everything here parses input from
// outside and is fuzzed; it never trusts a length or an offset it reads.
//
// Both parsers are written with the standard library alone: an RPM is a
// fixed lead, a signature header and a main header (an index of typed
// entries over a data store) followed by the compressed payload, and a .dsc
// is one deb822 paragraph, optionally wrapped in an OpenPGP clear signature.
package srcpkg

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// RPM is what kiln needs to know about a source RPM.
type RPM struct {
	Name    string
	Epoch   *int32 // nil when the package has no epoch
	Version string
	Release string
	// ExclusiveArch and ExcludeArch are the spec's architecture rules
	// (nil when absent).
	ExclusiveArch []string
	ExcludeArch   []string
}

// NEVR returns name-[epoch:]version-release.
func (r *RPM) NEVR() string {
	if r.Epoch != nil {
		return fmt.Sprintf("%s-%d:%s-%s", r.Name, *r.Epoch, r.Version, r.Release)
	}
	return fmt.Sprintf("%s-%s-%s", r.Name, r.Version, r.Release)
}

// Error kinds, for errors.Is. The error's text says exactly what is wrong.
var (
	// ErrNotRPM: the bytes are not an RPM package at all.
	ErrNotRPM = errors.New("not an RPM package")
	// ErrNotSource: a well-formed RPM that is a binary, not a source, RPM.
	ErrNotSource = errors.New("not a source RPM")
	// ErrTruncated: the file ends before the RPM does.
	ErrTruncated = errors.New("truncated")
	// ErrCorrupt: the structure is broken or a digest does not match.
	ErrCorrupt = errors.New("corrupt")
)

// Limits rpm itself applies to a header (hdrchkTags, hdrchkData in rpm's
// header.c): anything larger is an attack or garbage, and refusing it keeps
// a hostile file from making us allocate gigabytes.
const (
	maxHeaderEntries = 0xffff
	maxHeaderData    = 0x00ffffff
)

const (
	leadSize  = 96
	entrySize = 16
)

var (
	leadMagic   = []byte{0xed, 0xab, 0xee, 0xdb}
	headerMagic = []byte{0x8e, 0xad, 0xe8, 0x01}
)

// Header entry types.
const (
	typeNull        = 0
	typeChar        = 1
	typeInt8        = 2
	typeInt16       = 3
	typeInt32       = 4
	typeInt64       = 5
	typeString      = 6
	typeBin         = 7
	typeStringArray = 8
	typeI18NString  = 9
)

// Signature header tags.
const (
	sigSHA1     = 269
	sigSHA256   = 273
	sigLongSize = 270
	sigSize     = 1000
	sigMD5      = 1004
)

// Main header tags.
const (
	tagName              = 1000
	tagVersion           = 1001
	tagRelease           = 1002
	tagEpoch             = 1003
	tagSourceRPM         = 1044
	tagExcludeArch       = 1059
	tagExclusiveArch     = 1061
	tagSourcePackage     = 1106
	tagPayloadDigest     = 5092
	tagPayloadDigestAlgo = 5093
)

// pgpHashSHA256 is the OpenPGP hash algorithm number rpm uses in
// PAYLOADDIGESTALGO.
const pgpHashSHA256 = 8

// header is a parsed RPM header: its index and data store, and the raw
// bytes (index and store, with the 16-byte preamble) for digests.
type header struct {
	entries map[uint32]entry
	store   []byte
	raw     []byte
}

type entry struct {
	typ, offset, count uint32
}

// ParseRPM reads a whole source RPM from r, streaming the payload, and
// checks it is intact: the lead and both headers are well formed, the
// header digests (SHA-256, SHA-1) and the header+payload digest (MD5) and
// size recorded in the signature match, and the payload digest in the main
// header matches. A binary RPM is refused with ErrNotSource.
func ParseRPM(r io.Reader) (*RPM, error) {
	br := bufio.NewReader(r)
	lead := make([]byte, leadSize)
	if n, err := io.ReadFull(br, lead); err != nil {
		if n >= len(leadMagic) && bytes.Equal(lead[:4], leadMagic) {
			return nil, fmt.Errorf("%w: file ends inside the RPM lead (%d of %d bytes)", ErrTruncated, n, leadSize)
		}
		return nil, fmt.Errorf("%w: file is %d bytes, too short for an RPM", ErrNotRPM, n)
	}
	if !bytes.Equal(lead[:4], leadMagic) {
		return nil, fmt.Errorf("%w: no RPM lead magic", ErrNotRPM)
	}
	if major := lead[4]; major != 3 && major != 4 {
		return nil, fmt.Errorf("%w: RPM format version %d is not supported", ErrNotRPM, major)
	}
	leadType := binary.BigEndian.Uint16(lead[6:8])
	if leadType != 0 && leadType != 1 {
		return nil, fmt.Errorf("%w: RPM lead type %d is neither binary nor source", ErrCorrupt, leadType)
	}
	if sigType := binary.BigEndian.Uint16(lead[78:80]); sigType != 5 {
		return nil, fmt.Errorf("%w: RPM signature type %d is not a header signature", ErrCorrupt, sigType)
	}

	sig, err := readHeader(br, "signature header")
	if err != nil {
		return nil, err
	}
	// The signature header is padded to a multiple of 8 bytes.
	if pad := (8 - len(sig.raw)%8) % 8; pad > 0 {
		if _, err := io.ReadFull(br, make([]byte, pad)); err != nil {
			return nil, fmt.Errorf("%w: file ends in the signature header's padding", ErrTruncated)
		}
	}
	main, err := readHeader(br, "main header")
	if err != nil {
		return nil, err
	}

	if err := checkHeaderDigests(sig, main); err != nil {
		return nil, err
	}

	// Stream the payload: MD5 over header+payload, SHA-256 over the
	// payload alone, and count the bytes.
	md := md5.New()
	md.Write(main.raw)
	pd := sha256.New()
	payload, err := io.Copy(io.MultiWriter(md, pd), br)
	if err != nil {
		return nil, fmt.Errorf("reading the RPM payload: %w", err)
	}
	if err := checkPayload(sig, main, md, pd, int64(len(main.raw))+payload); err != nil {
		return nil, err
	}

	return describe(main, leadType)
}

// describe reads the package's identity from its main header and checks it
// is a source package.
func describe(main *header, leadType uint16) (*RPM, error) {
	pkg := &RPM{}
	var err error
	if pkg.Name, err = main.str(tagName); err != nil {
		return nil, err
	}
	if pkg.Name == "" {
		return nil, fmt.Errorf("%w: NAME is empty", ErrCorrupt)
	}
	if pkg.Version, err = main.str(tagVersion); err != nil {
		return nil, err
	}
	if pkg.Release, err = main.str(tagRelease); err != nil {
		return nil, err
	}
	if _, ok := main.entries[tagEpoch]; ok {
		e, err := main.int32s(tagEpoch)
		if err != nil {
			return nil, err
		}
		if len(e) != 1 || e[0] < 0 {
			return nil, fmt.Errorf("%w: EPOCH is not one non-negative number", ErrCorrupt)
		}
		pkg.Epoch = &e[0]
	}
	if pkg.ExclusiveArch, err = main.strs(tagExclusiveArch); err != nil {
		return nil, err
	}
	if pkg.ExcludeArch, err = main.strs(tagExcludeArch); err != nil {
		return nil, err
	}

	// A binary RPM says so in its lead and names the source RPM it came
	// from; a source RPM has neither, and carries SOURCEPACKAGE.
	_, hasSourceRPM := main.entries[tagSourceRPM]
	_, hasSourcePackage := main.entries[tagSourcePackage]
	switch {
	case leadType == 0 || hasSourceRPM:
		return nil, fmt.Errorf("%w: %s is a binary RPM", ErrNotSource, pkg.NEVR())
	case !hasSourcePackage:
		return nil, fmt.Errorf("%w: %s lacks the SOURCEPACKAGE tag", ErrNotSource, pkg.NEVR())
	}
	return pkg, nil
}

// readHeader reads one header structure: preamble, index, store.
func readHeader(r io.Reader, what string) (*header, error) {
	pre := make([]byte, 16)
	if n, err := io.ReadFull(r, pre); err != nil {
		return nil, fmt.Errorf("%w: file ends in the %s (%d of 16 preamble bytes)", ErrTruncated, what, n)
	}
	if !bytes.Equal(pre[:4], headerMagic) {
		return nil, fmt.Errorf("%w: %s has no header magic", ErrCorrupt, what)
	}
	nindex := binary.BigEndian.Uint32(pre[8:12])
	hsize := binary.BigEndian.Uint32(pre[12:16])
	if nindex == 0 || nindex > maxHeaderEntries {
		return nil, fmt.Errorf("%w: %s has %d entries", ErrCorrupt, what, nindex)
	}
	if hsize > maxHeaderData {
		return nil, fmt.Errorf("%w: %s declares %d bytes of data", ErrCorrupt, what, hsize)
	}
	// Grow the buffer as bytes arrive rather than trusting the declared
	// size up front: a short hostile file then costs only its own length.
	want := int64(16 + int(nindex)*entrySize + int(hsize))
	buf := bytes.NewBuffer(pre)
	n, err := buf.ReadFrom(io.LimitReader(r, want-16))
	if err != nil {
		return nil, fmt.Errorf("reading the %s: %w", what, err)
	}
	if 16+n < want {
		return nil, fmt.Errorf("%w: file ends in the %s (%d of %d bytes)", ErrTruncated, what, 16+n, want)
	}
	raw := buf.Bytes()
	h := &header{entries: make(map[uint32]entry, nindex), store: raw[16+int(nindex)*entrySize:], raw: raw}
	for i := 0; i < int(nindex); i++ {
		b := raw[16+i*entrySize:]
		tag := binary.BigEndian.Uint32(b[0:4])
		e := entry{typ: binary.BigEndian.Uint32(b[4:8]), offset: binary.BigEndian.Uint32(b[8:12]), count: binary.BigEndian.Uint32(b[12:16])}
		if e.typ > typeI18NString {
			return nil, fmt.Errorf("%w: %s entry %d has unknown type %d", ErrCorrupt, what, tag, e.typ)
		}
		if e.offset > hsize {
			return nil, fmt.Errorf("%w: %s entry %d points past the header data", ErrCorrupt, what, tag)
		}
		if _, dup := h.entries[tag]; dup {
			return nil, fmt.Errorf("%w: %s has tag %d twice", ErrCorrupt, what, tag)
		}
		h.entries[tag] = e
	}
	return h, nil
}

// checkHeaderDigests compares the main header with the digests the
// signature header records for it.
func checkHeaderDigests(sig, main *header) error {
	checks := []struct {
		tag  uint32
		name string
		h    hash.Hash
	}{{sigSHA256, "SHA-256", sha256.New()}, {sigSHA1, "SHA-1", sha1.New()}}
	for _, c := range checks {
		if _, ok := sig.entries[c.tag]; !ok {
			continue
		}
		want, err := sig.str(c.tag)
		if err != nil {
			return err
		}
		c.h.Write(main.raw)
		if got := hex.EncodeToString(c.h.Sum(nil)); !strings.EqualFold(got, want) {
			return fmt.Errorf("%w: header %s digest mismatch (recorded %s, computed %s)", ErrCorrupt, c.name, want, got)
		}
	}
	return nil
}

// checkPayload compares the payload with the sizes and digests recorded for
// it. total is the length of header plus payload as read.
func checkPayload(sig, main *header, md, pd hash.Hash, total int64) error {
	var want int64 = -1
	if _, ok := sig.entries[sigLongSize]; ok {
		v, err := sig.int64s(sigLongSize)
		if err != nil {
			return err
		}
		if len(v) == 1 {
			want = v[0]
		}
	} else if _, ok := sig.entries[sigSize]; ok {
		v, err := sig.int32s(sigSize)
		if err != nil {
			return err
		}
		if len(v) == 1 {
			want = int64(uint32(v[0]))
		}
	}
	switch {
	case want >= 0 && total < want:
		return fmt.Errorf("%w: header and payload are %d bytes, the signature says %d", ErrTruncated, total, want)
	case want >= 0 && total > want:
		return fmt.Errorf("%w: %d bytes of trailing data after the payload", ErrCorrupt, total-want)
	}
	if _, ok := sig.entries[sigMD5]; ok {
		v, err := sig.bin(sigMD5)
		if err != nil {
			return err
		}
		if got := md.Sum(nil); !bytes.Equal(got, v) {
			return fmt.Errorf("%w: MD5 digest of header and payload mismatch (recorded %x, computed %x)", ErrCorrupt, v, got)
		}
	}
	if _, ok := main.entries[tagPayloadDigest]; ok {
		algo, err := main.int32s(tagPayloadDigestAlgo)
		if err != nil {
			return err
		}
		digests, err := main.strs(tagPayloadDigest)
		if err != nil {
			return err
		}
		if len(algo) == 1 && algo[0] == pgpHashSHA256 && len(digests) > 0 {
			if got := hex.EncodeToString(pd.Sum(nil)); !strings.EqualFold(got, digests[0]) {
				return fmt.Errorf("%w: payload SHA-256 digest mismatch (recorded %s, computed %s)", ErrCorrupt, digests[0], got)
			}
		}
	}
	return nil
}

// data returns the bytes of an entry of fixed-size elements, checked to lie
// within the store.
func (h *header) data(tag uint32, typ uint32, size int) ([]byte, int, error) {
	e, ok := h.entries[tag]
	if !ok {
		return nil, 0, fmt.Errorf("%w: header lacks %s", ErrCorrupt, describeTag(tag))
	}
	if e.typ != typ {
		return nil, 0, fmt.Errorf("%w: %s has type %d, want %d", ErrCorrupt, describeTag(tag), e.typ, typ)
	}
	if e.count == 0 || e.count > maxHeaderData {
		return nil, 0, fmt.Errorf("%w: %s has count %d", ErrCorrupt, describeTag(tag), e.count)
	}
	end := uint64(e.offset) + uint64(e.count)*uint64(size)
	if end > uint64(len(h.store)) {
		return nil, 0, fmt.Errorf("%w: %s runs past the header data", ErrCorrupt, describeTag(tag))
	}
	return h.store[e.offset:end], int(e.count), nil
}

func (h *header) int32s(tag uint32) ([]int32, error) {
	b, n, err := h.data(tag, typeInt32, 4)
	if err != nil {
		return nil, err
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(binary.BigEndian.Uint32(b[i*4:]))
	}
	return out, nil
}

func (h *header) int64s(tag uint32) ([]int64, error) {
	b, n, err := h.data(tag, typeInt64, 8)
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(binary.BigEndian.Uint64(b[i*8:]))
	}
	return out, nil
}

func (h *header) bin(tag uint32) ([]byte, error) {
	b, _, err := h.data(tag, typeBin, 1)
	return b, err
}

// strs returns the strings of a STRING, STRING_ARRAY or I18NSTRING entry,
// or nil when the tag is absent.
func (h *header) strs(tag uint32) ([]string, error) {
	e, ok := h.entries[tag]
	if !ok {
		return nil, nil
	}
	if e.typ != typeString && e.typ != typeStringArray && e.typ != typeI18NString {
		return nil, fmt.Errorf("%w: %s has type %d, want a string", ErrCorrupt, describeTag(tag), e.typ)
	}
	if e.typ == typeString && e.count != 1 {
		return nil, fmt.Errorf("%w: %s has count %d, want 1", ErrCorrupt, describeTag(tag), e.count)
	}
	if e.count > maxHeaderData {
		return nil, fmt.Errorf("%w: %s has count %d", ErrCorrupt, describeTag(tag), e.count)
	}
	rest := h.store[e.offset:]
	out := make([]string, 0, min(int(e.count), 64))
	for i := uint32(0); i < e.count; i++ {
		n := bytes.IndexByte(rest, 0)
		if n < 0 {
			return nil, fmt.Errorf("%w: %s runs past the header data", ErrCorrupt, describeTag(tag))
		}
		out = append(out, string(rest[:n]))
		rest = rest[n+1:]
	}
	return out, nil
}

// str returns a required single string.
func (h *header) str(tag uint32) (string, error) {
	v, err := h.strs(tag)
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", fmt.Errorf("%w: header lacks %s", ErrCorrupt, describeTag(tag))
	}
	return v[0], nil
}

// describeTag names the tags this file reads, for messages.
func describeTag(tag uint32) string {
	switch tag {
	case sigSHA1:
		return "SHA1 (signature tag 269)"
	case sigSHA256:
		return "SHA256 (signature tag 273)"
	case sigLongSize:
		return "LONGSIZE (signature tag 270)"
	case sigMD5:
		return "MD5 (signature tag 1004)"
	case tagName:
		return "NAME (tag 1000)"
	case tagVersion:
		return "VERSION (tag 1001)"
	case tagRelease:
		return "RELEASE (tag 1002)"
	case tagEpoch:
		return "EPOCH (tag 1003)"
	case tagExcludeArch:
		return "EXCLUDEARCH (tag 1059)"
	case tagExclusiveArch:
		return "EXCLUSIVEARCH (tag 1061)"
	case tagPayloadDigest:
		return "PAYLOADDIGEST (tag 5092)"
	case tagPayloadDigestAlgo:
		return "PAYLOADDIGESTALGO (tag 5093)"
	}
	return fmt.Sprintf("tag %d", tag)
}
