package notify

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/termtext"
)

// addressPattern is kiln.report_address_valid's: a plain local@domain with
// no spaces and no control characters, so an address can go into a header
// and an SMTP command as it is.
var addressPattern = regexp.MustCompile(`^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$`)

// CheckAddress reports why addr cannot receive reports. It refuses CR, LF
// and everything else that could start a header or an SMTP command.
func CheckAddress(addr string) error {
	if len(addr) > 254 || !addressPattern.MatchString(addr) {
		return fmt.Errorf("report address %q: use a plain address such as alice@example.org (letters, digits, . _ %% + - and one @)", addr)
	}
	return nil
}

// SMTP is how kiln-reporter reaches its mail server.
type SMTP struct {
	// Addr is host:port of the server (the farm's relay).
	Addr string
	// From is the envelope sender and From address.
	From string
	// StartTLS upgrades the connection before sending (required when set).
	StartTLS bool
	// TLS is the TLS configuration for STARTTLS; nil verifies the server
	// against the system roots under the host of Addr.
	TLS *tls.Config
	// Username and Password, when set, authenticate with AUTH PLAIN (only
	// over TLS or to localhost, as net/smtp insists).
	Username, Password string
	// Timeout bounds one whole SMTP conversation (default 2 minutes).
	Timeout time.Duration
}

// Check reports what is wrong with the settings.
func (s SMTP) Check() error {
	if _, _, err := net.SplitHostPort(s.Addr); err != nil {
		return fmt.Errorf("--smtp %q: give host:port: %w", s.Addr, err)
	}
	if err := CheckAddress(s.From); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if (s.Username == "") != (s.Password == "") {
		return errors.New("--smtp-user and --smtp-password go together")
	}
	return nil
}

// messageID is the Message-ID of job id's report: the same for every try
// and every recipient, so a mail delivered twice (docs/reports.md,
// "Exactly once?") is recognisably the same message.
func messageID(job int64, from string) string {
	domain := from[strings.LastIndexByte(from, '@')+1:]
	return "<kiln-job-" + strconv.FormatInt(job, 10) + "@" + domain + ">"
}

// headerText makes s safe for a header value: control characters (CR and
// LF above all) escaped, then RFC 2047 encoded when it is not ASCII.
func headerText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, termtext.Plain(s))
	return mime.QEncoding.Encode("utf-8", s)
}

// Subject is the report's subject line, before encoding.
func (r *Report) Subject() string {
	var names []string
	for _, p := range r.Packages {
		n := p.Name
		if n == "" {
			n = p.File
		}
		names = append(names, n)
	}
	pk := strings.Join(names, ", ")
	if len(names) > 3 {
		pk = strings.Join(names[:3], ", ") + fmt.Sprintf(" and %d more", len(names)-3)
	}
	return fmt.Sprintf("[kiln] job %d %s: %s (%s)", r.Job, r.Status, pk, r.Bucket)
}

// Text is the plain-text body.
func (r *Report) Text() string {
	var b strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	p("Job %d in bucket %s, submitted by %s: %s\n", r.Job, r.Bucket, r.Submitter, r.Status)
	if r.Reason != "" {
		p("Reason: %s\n", termtext.Plain(r.Reason))
	}
	if r.Note != "" {
		p("Note: %s\n", termtext.Plain(r.Note))
	}
	if !r.Finished.IsZero() {
		p("Ended %s, %s after it was submitted.\n", format.Time(r.Finished.UTC()), format.Duration(r.Finished.Sub(r.Submitted).Seconds()))
	}
	if r.URL != "" {
		p("%s\n", r.URL)
	}
	p("\nPackages:\n")
	for _, pk := range r.Packages {
		line := "  " + termtext.Plain(pk.File)
		if pk.Name != "" {
			line += "  (" + termtext.Plain(pk.Name) + " " + termtext.Plain(pk.Version) + ")"
		}
		if pk.Reason != "" {
			line += ": " + termtext.Plain(pk.Reason)
		}
		p("%s\n", line)
	}
	p("\nTasks:\n")
	for _, t := range r.Tasks {
		p("  %-24s %-10s attempt %d", t.Platform, t.Status, t.Attempts)
		if t.Stage != "" {
			p(", failed at %s", t.Stage)
		}
		if t.Reason != "" {
			p(": %s", termtext.Plain(t.Reason))
		}
		p("\n")
		if t.URL != "" {
			p("    %s\n", t.URL)
		}
	}
	for _, t := range r.Tasks {
		if len(t.LogTail) == 0 {
			continue
		}
		p("\nLast lines of the log of %s (task %d):\n", t.Platform, t.ID)
		for _, l := range t.LogTail {
			p("  | %s\n", l)
		}
		if t.LogURL != "" {
			p("  whole log: %s\n", t.LogURL)
		}
	}
	var arts bool
	for _, t := range r.Tasks {
		for _, a := range t.Artifacts {
			if !arts {
				p("\nArtifacts:\n")
				arts = true
			}
			p("  %s  %s  %s (%s)\n", t.Platform, a.Kind, termtext.Plain(a.Name), format.Size(a.Size))
			if a.URL != "" {
				p("    %s\n", a.URL)
			}
		}
	}
	p("\n-- \nkiln: you get this because the job is yours, was submitted with --report, or its bucket reports to you.\n")
	return b.String()
}

// Message is the whole mail of r to recipients: headers (with the filters'
// X-Kiln-Job, X-Kiln-Bucket and X-Kiln-Status) and a quoted-printable
// plain-text body.
func (r *Report) Message(from string, to []string, now time.Time) ([]byte, error) {
	for _, a := range append([]string{from}, to...) {
		if err := CheckAddress(a); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", "kiln <"+from+">")
	h("To", strings.Join(to, ", "))
	h("Subject", headerText(r.Subject()))
	h("Date", now.Format(time.RFC1123Z))
	h("Message-ID", messageID(r.Job, from))
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	h("Auto-Submitted", "auto-generated")
	h("X-Kiln-Job", strconv.FormatInt(r.Job, 10))
	h("X-Kiln-Bucket", headerText(r.Bucket))
	h("X-Kiln-Status", r.Status)
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(strings.ReplaceAll(r.Text(), "\n", "\r\n"))); err != nil {
		return nil, fmt.Errorf("encoding the report of job %d: %w", r.Job, err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("encoding the report of job %d: %w", r.Job, err)
	}
	return b.Bytes(), nil
}

// recipientError is an RCPT TO the server refused; permanent for a 5xx.
type recipientError struct {
	addr      string
	permanent bool
	err       error
}

// send sends msg to the recipients in one SMTP transaction. It returns the
// recipients the server refused (a 5xx is for good, else try again) and
// an error when nothing was sent.
func (s SMTP) send(to []string, msg []byte) ([]recipientError, error) {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	conn, err := net.DialTimeout("tcp", s.Addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("connecting to the mail server %s: %w", s.Addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, fmt.Errorf("mail server %s: %w", s.Addr, err)
	}
	host, _, _ := net.SplitHostPort(s.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return nil, fmt.Errorf("mail server %s: %w", s.Addr, err)
	}
	defer c.Close()
	if s.StartTLS {
		cfg := s.TLS
		if cfg == nil {
			cfg = &tls.Config{ServerName: host}
		}
		if err := c.StartTLS(cfg); err != nil {
			return nil, fmt.Errorf("mail server %s: STARTTLS: %w", s.Addr, err)
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, host)); err != nil {
			return nil, fmt.Errorf("mail server %s: AUTH: %w", s.Addr, err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return nil, fmt.Errorf("mail server %s: MAIL FROM: %w", s.Addr, err)
	}
	var refused []recipientError
	for _, a := range to {
		if err := c.Rcpt(a); err != nil {
			var te *textproto.Error
			refused = append(refused, recipientError{addr: a, permanent: errors.As(err, &te) && te.Code >= 500, err: err})
		}
	}
	if len(refused) == len(to) {
		_ = c.Reset()
		return refused, nil
	}
	w, err := c.Data()
	if err != nil {
		return nil, fmt.Errorf("mail server %s: DATA: %w", s.Addr, err)
	}
	if _, err := w.Write(msg); err != nil {
		return nil, fmt.Errorf("mail server %s: sending the message: %w", s.Addr, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("mail server %s: the message was not accepted: %w", s.Addr, err)
	}
	// Accepted: QUIT failing now changes nothing.
	_ = c.Quit()
	return refused, nil
}
