package srcpkg

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// TestWriteFuzzSeeds regenerates the seed corpora in testdata/fuzz/ from
// real packages when KILN_WRITE_FUZZ_SEEDS=1 (they are committed).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("KILN_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set KILN_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	srpm := readFile(t, testpkg.SRPM(t, testpkg.Spec{Name: "seed", ExclusiveArch: []string{"x86_64"}, ExcludeArch: []string{"s390x"}}))
	writeSeed(t, "FuzzParseRPM", "srpm", srpm)
	sigEnd, mainEnd := layout(t, srpm)
	writeSeed(t, "FuzzRPMHeader", "main", srpm[sigEnd:mainEnd])
	hdrLen := 16 + 16*int(binary.BigEndian.Uint32(srpm[leadSize+8:])) + int(binary.BigEndian.Uint32(srpm[leadSize+12:]))
	writeSeed(t, "FuzzRPMHeader", "signature", srpm[leadSize:leadSize+hdrLen])

	dsc := testpkg.DSC(t, testpkg.Deb{Name: "seed", Version: "1.0", Architecture: "any"})
	writeSeed(t, "FuzzParseDSC", "native", readFile(t, dsc))
	writeSeed(t, "FuzzParseDSC", "signed", []byte(signedDSC))
}

func writeSeed(t *testing.T, target, name string, data []byte) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
