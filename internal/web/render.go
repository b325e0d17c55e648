package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/termtext"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages holds one parsed template set per page: the layout plus the page.
type pages map[string]*template.Template

var funcs = template.FuncMap{
	"ts": func(t time.Time) string { return format.Time(t.UTC()) },
	"tsp": func(t *time.Time) string {
		if t == nil {
			return "—"
		}
		return format.Time(t.UTC())
	},
	"ago":  func(t time.Time) string { return format.Duration(time.Since(t).Seconds()) + " ago" },
	"secs": format.Duration,
	"secsp": func(f *float64) string {
		if f == nil {
			return "—"
		}
		return format.Duration(*f)
	},
	// Text from builds and people (reasons, notes, names) with control
	// characters shown escaped (termtext); html/template then escapes HTML.
	"str": func(s *string) string {
		if s == nil {
			return ""
		}
		return termtext.Plain(*s)
	},
	"text":     termtext.Plain,
	"size":     format.Size,
	"version":  format.Version,
	"join":     func(s []string, sep string) string { return termtext.Plain(strings.Join(s, sep)) },
	"status":   func(s any) string { return strings.ReplaceAll(fmt.Sprint(s), "_", " ") },
	"final":    func(s interface{ Final() bool }) bool { return s.Final() },
	"artifact": artifactURL,
	// startsAt is an estimated start (report.ETA): "now", or the minute
	// with its day (not a count down, so that a page loaded again says the
	// same).
	"startsAt": func(at *time.Time, in *float64) string {
		switch {
		case at == nil || in == nil:
			return "—"
		case *in < 60:
			return "now"
		}
		return format.Minute(at.UTC())
	},
}

func parsePages() (pages, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := pages{}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("web: parsing template %s: %w", base, err)
		}
		p[strings.TrimSuffix(base, ".html")] = t
	}
	return p, nil
}

// view is what every page template gets: the page's own data and who is
// looking.
type view struct {
	Title  string
	Nav    string // which menu entry is current
	Person string // the logged-in person, "" when anonymous
	Login  bool   // whether logging in is possible
	CSRF   string // token for the action forms
	Here   string // this page's path and query, for "log in and come back"
	Data   any
}

// render writes a page. Rendering into a buffer first means a template
// error becomes a clean 500 instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name, title, nav string, data any) {
	t, ok := s.pages[name]
	if !ok {
		panic("web: no page template " + name)
	}
	v := view{Title: title, Nav: nav, Person: s.person(r), Login: s.cfg.Keytab != nil,
		CSRF: s.csrfToken(w, r), Here: r.URL.RequestURI(), Data: data}
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		s.log.Error("rendering page", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fragment renders one named template of a page (for live updates).
func (s *Server) fragment(page, name string, data any) (string, error) {
	var buf bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&buf, name, data); err != nil {
		return "", fmt.Errorf("rendering %s of %s: %w", name, page, err)
	}
	return buf.String(), nil
}

// fail answers an error: a page for people, JSON under /api/.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	if code == http.StatusInternalServerError {
		s.log.Error("request failed", "path", r.URL.Path, "err", err)
	}
	if code == 499 {
		return
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, code, apiError{message(err)})
		return
	}
	s.render(w, r, code, "error", http.StatusText(code), "", message(err))
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// staticHandler serves the embedded files under static/; a directory or a
// missing file is the styled 404 page (no listing).
func (s *Server) staticHandler() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	fsh := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		if st, err := fs.Stat(sub, r.URL.Path); err != nil || st.IsDir() {
			s.notFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fsh.ServeHTTP(w, r)
	})
}
