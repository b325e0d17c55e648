package srcpkg_test

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/kiln-build/kiln/internal/srcpkg"
)

// A .dsc as dpkg-source writes it (unsigned here; a clear-signed one
// parses the same). kiln takes the name, the version, the architectures and
// the files with their SHA-256 and size.
func ExampleParseDSC() {
	dsc := `Format: 3.0 (quilt)
Source: hello
Binary: hello
Architecture: any-amd64 linux-arm64
Version: 1:2.10-3
Checksums-Sha256:
 95e1dc53581028edd6dbf24be591ae1a2a722ee0d96db540fae69a691a5f1587 472 hello_2.10.orig.tar.gz
 0c2b1f1fa3cd1e3c5bcb4cb4ff9b6b0c31e6cfe62dd4b53c18a0c0e3e1b0c0a4 100 hello_2.10-3.debian.tar.xz
Files:
 cf779c62dec6ef86ee26ba9181342873 472 hello_2.10.orig.tar.gz
 0d599f0ec05c3bda8c3b8a68c32a1b47 100 hello_2.10-3.debian.tar.xz
`
	d, err := srcpkg.ParseDSC([]byte(dsc))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("source %s, epoch %d, version %s, revision %s\n", d.Source, *d.Epoch, d.Version, d.Revision)
	fmt.Println("builds on", d.ExclusiveArch())
	for _, f := range d.Files {
		fmt.Printf("%s: %d bytes, sha256 %s...\n", f.Name, f.Size, hex.EncodeToString(f.SHA256[:4]))
	}
	// Output:
	// source hello, epoch 1, version 2.10, revision 3
	// builds on [amd64 arm64]
	// hello_2.10.orig.tar.gz: 472 bytes, sha256 95e1dc53...
	// hello_2.10-3.debian.tar.xz: 100 bytes, sha256 0c2b1f1f...
}

// A .dsc whose two file lists disagree is refused with ErrBadDSC and the
// reason, before any file it names is looked at.
func ExampleParseDSC_invalid() {
	dsc := `Format: 3.0 (quilt)
Source: hello
Version: 2.10-3
Checksums-Sha256:
 95e1dc53581028edd6dbf24be591ae1a2a722ee0d96db540fae69a691a5f1587 472 hello_2.10.orig.tar.gz
Files:
 cf779c62dec6ef86ee26ba9181342873 999 hello_2.10.orig.tar.gz
`
	_, err := srcpkg.ParseDSC([]byte(dsc))
	fmt.Println(errors.Is(err, srcpkg.ErrBadDSC))
	fmt.Println(err)
	// Output:
	// true
	// not a valid .dsc: hello_2.10.orig.tar.gz has size 999 in Files but 472 in Checksums-Sha256
}
