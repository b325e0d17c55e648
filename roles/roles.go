// Package roles embeds the SQL in this directory, which creates kiln's group
// roles and grants each exactly what its process needs. DBAs apply the files
// with psql; tests and `kiln admin roles apply` apply them from here.
package roles

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.sql
var files embed.FS

// Groups is the SQL that creates the group roles (run before migrating).
func Groups() string { return read("00-groups.sql") }

// Grants is the SQL that grants each group role its privileges (run after
// migrating, because it names the tables).
func Grants() string {
	names, _ := fs.Glob(files, "kiln_*.sql")
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString(read(n))
		b.WriteString("\n")
	}
	return b.String()
}

func read(name string) string {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("roles: missing embedded file " + name)
	}
	return string(b)
}
