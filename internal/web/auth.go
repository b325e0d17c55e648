package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	goidentity "github.com/jcmturner/goidentity/v6"
	"github.com/jcmturner/gokrb5/v8/credentials"
	"github.com/jcmturner/gokrb5/v8/service"
	"github.com/jcmturner/gokrb5/v8/spnego"

	"github.com/kiln-build/kiln/internal/admin"
)

// Cookie names. The session cookie carries the person's role name and
// expiry, signed; the CSRF cookie a random nonce, signed, that every action
// form repeats (a signed double-submit token).
const (
	sessionCookie = "kiln_session"
	csrfCookie    = "kiln_csrf"
	csrfField     = "csrf"
)

// personName is the shape of a person's role name, as roles/pg_ident.conf
// maps principals: alice@REALM is role alice.
var personName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// RoleFor maps a Kerberos principal (its name components and realm) to the
// database role of the person, the way roles/pg_ident.conf.example does:
// alice@REALM is alice; principals of another realm, with an instance
// (alice/admin), or whose names look like the farm's own roles are refused.
func RoleFor(components []string, realm, wantRealm string) (string, error) {
	full := strings.Join(components, "/") + "@" + realm
	if realm != wantRealm {
		return "", fmt.Errorf("principal %s is not of realm %s", full, wantRealm)
	}
	if len(components) != 1 || !personName.MatchString(components[0]) || len(components[0]) > 63 {
		return "", fmt.Errorf("principal %s is not a person's principal (name@%s)", full, wantRealm)
	}
	name := components[0]
	if _, ok := admin.ReservedPrefix(name); ok {
		return "", fmt.Errorf("principal %s looks like one of the farm's own roles", full)
	}
	if name == "postgres" {
		return "", fmt.Errorf("principal %s is refused", full)
	}
	return name, nil
}

func (s *Server) sign(parts ...string) string {
	m := hmac.New(sha256.New, s.cfg.SessionKey)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// person returns the logged-in person of the request, "" for none.
func (s *Server) person(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	name, _, ok := s.parseSession(c.Value, time.Now())
	if !ok {
		return ""
	}
	return name
}

// sessionValue is the session cookie's value for name until a time:
// NAME.UNIX.MAC, the MAC over the name and the expiry as written.
func (s *Server) sessionValue(name string, until time.Time) string {
	exp := strconv.FormatInt(until.Unix(), 10)
	return name + "." + exp + "." + s.sign("session", name, exp)
}

// parseSession reads a session cookie's value: the person's name and when
// the session ends, ok only for a value this server signed (with its
// session key) that has not expired at now.
func (s *Server) parseSession(v string, now time.Time) (name string, until time.Time, ok bool) {
	name, rest, ok1 := strings.Cut(v, ".")
	exp, mac, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || !hmac.Equal([]byte(mac), []byte(s.sign("session", name, exp))) {
		return "", time.Time{}, false
	}
	// Only the form sessionValue writes: the value reads back byte for byte.
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || strconv.FormatInt(unix, 10) != exp || now.Unix() > unix || !personName.MatchString(name) {
		return "", time.Time{}, false
	}
	return name, time.Unix(unix, 0), true
}

func (s *Server) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(s.cfg.PublicURL, "https:")
}

func (s *Server) setSession(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.sessionValue(name, time.Now().Add(s.cfg.SessionTTL)),
		Path: "/", HttpOnly: true, Secure: s.secure(r), SameSite: http.SameSiteLaxMode, MaxAge: int(s.cfg.SessionTTL.Seconds())})
}

// csrfToken returns the request's CSRF token, setting the cookie that
// carries it when the browser has none (or a forged one).
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && s.validCSRF(c.Value) {
		return c.Value
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	nonce := hex.EncodeToString(b)
	tok := nonce + "." + s.sign("csrf", nonce)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: "/", HttpOnly: true, Secure: s.secure(r),
		SameSite: http.SameSiteStrictMode})
	return tok
}

func (s *Server) validCSRF(tok string) bool {
	nonce, mac, ok := strings.Cut(tok, ".")
	return ok && len(nonce) == 32 && hmac.Equal([]byte(mac), []byte(s.sign("csrf", nonce)))
}

// checkPost refuses a state-changing request that did not come from one of
// this site's own forms: the Origin (or, without one, the Referer) must be
// this site, and the form's token must equal the signed CSRF cookie.
func (s *Server) checkPost(r *http.Request) error {
	want := s.cfg.PublicURL
	if want == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		want = scheme + "://" + r.Host
	}
	wu, _ := url.Parse(want)
	from := r.Header.Get("Origin")
	if from == "" {
		from = r.Header.Get("Referer")
	}
	fu, err := url.Parse(from)
	if from == "" || err != nil || fu.Scheme != wu.Scheme || fu.Host != wu.Host {
		return fmt.Errorf("the request did not come from a page of %s (Origin %q)", want, from)
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || !s.validCSRF(c.Value) {
		return fmt.Errorf("no valid CSRF cookie: reload the page and try again")
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue(csrfField)), []byte(c.Value)) != 1 {
		return fmt.Errorf("the form's CSRF token does not match: reload the page and try again")
	}
	return nil
}

// action wraps a state-changing handler: security headers, the CSRF and
// Origin checks, and a logged-in person, whose role name it passes on.
func (s *Server) action(h func(w http.ResponseWriter, r *http.Request, person string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := s.checkPost(r); err != nil {
			s.render(w, r, http.StatusForbidden, "error", "Forbidden", "", err.Error())
			return
		}
		person := s.person(r)
		if person == "" {
			msg := "Log in with Kerberos first."
			if s.cfg.Keytab == nil {
				msg = "This kiln-web has no keytab, so nobody can log in here: use the kiln command."
			}
			s.render(w, r, http.StatusUnauthorized, "error", "Log in first", "", msg)
			return
		}
		h(w, r, person)
	}
}

// login authenticates a person with SPNEGO (gokrb5's server side and the
// web's keytab), starts a session and sends them back where they were.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	if s.cfg.Keytab == nil {
		s.render(w, r, http.StatusNotFound, "error", "No login here", "", "This kiln-web has no keytab, so nobody can log in here.")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Negotiate ") {
		// What a browser without a ticket (or not configured to offer it
		// to this site) is left with: say what to do.
		w.Header().Set("WWW-Authenticate", "Negotiate")
		s.render(w, r, http.StatusUnauthorized, "login", "Log in", "", nil)
		return
	}
	// DecodePAC off: an MIT KDC's PAC has no Active Directory logon info,
	// which gokrb5 would otherwise insist on; kiln needs only the name.
	opts := []func(*service.Settings){service.Logger(log.New(slogWriter{s}, "", 0)), service.DecodePAC(false)}
	if s.cfg.ServicePrincipal != "" {
		opts = append(opts, service.KeytabPrincipal(s.cfg.ServicePrincipal))
	}
	spnego.SPNEGOKRB5Authenticate(http.HandlerFunc(s.loggedIn), s.cfg.Keytab, opts...).ServeHTTP(w, r)
}

func (s *Server) loggedIn(w http.ResponseWriter, r *http.Request) {
	id, ok := goidentity.FromHTTPRequestContext(r).(*credentials.Credentials)
	if !ok || id == nil || !id.Authenticated() {
		s.render(w, r, http.StatusUnauthorized, "error", "Not logged in", "", "Kerberos authentication did not complete.")
		return
	}
	name, err := RoleFor(id.CName().NameString, id.Domain(), s.cfg.Realm)
	if err != nil {
		s.log.Warn("login refused", "err", err)
		s.render(w, r, http.StatusForbidden, "error", "Forbidden", "", err.Error())
		return
	}
	s.setSession(w, r, name)
	s.log.Info("logged in", "person", name, "remote", r.RemoteAddr)
	http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := s.checkPost(r); err != nil {
		s.render(w, r, http.StatusForbidden, "error", "Forbidden", "", err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// localPath keeps a redirect target on this site: a path, never another
// host (//evil.example). Browsers read a backslash as a slash and drop tabs
// and newlines, so /\evil.example and /\t/evil.example are refused too.
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") ||
		strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\\' }) {
		return "/"
	}
	return p
}

// slogWriter passes gokrb5's log lines to the server's logger.
type slogWriter struct{ s *Server }

func (l slogWriter) Write(p []byte) (int, error) {
	l.s.log.Debug("spnego", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}
