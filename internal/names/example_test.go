package names_test

import (
	"fmt"

	"github.com/kiln-build/kiln/internal/names"
)

// Platform, bucket and builder names are lower-case words joined by single
// dashes or underscores, the same rule as the database's kiln.valid_name.
func ExampleCheckName() {
	for _, name := range []string{"el9-x86_64", "bookworm-amd64", "El9", "el9--x86_64", "devel-"} {
		if err := names.CheckName("platform", name); err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(name, "is a valid name")
	}
	// Output:
	// el9-x86_64 is a valid name
	// bookworm-amd64 is a valid name
	// platform name "El9" is not valid: use lower-case letters and digits separated by single - or _
	// platform name "el9--x86_64" is not valid: use lower-case letters and digits separated by single - or _
	// platform name "devel-" is not valid: it may not end with - or _
}

// A file name from a submitter or a build becomes a file in a work
// directory: it must stay in that directory and must not read as an option.
func ExampleCheckFileName() {
	for _, name := range []string{"hello-1.0-1.src.rpm", "../etc/passwd", "-rf", "a\nb.dsc"} {
		if err := names.CheckFileName(name); err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(name, "is safe")
	}
	// Output:
	// hello-1.0-1.src.rpm is safe
	// file name "../etc/passwd" contains a path separator
	// file name "-rf" starts with '-'
	// file name "a\nb.dsc" contains a control character
}
