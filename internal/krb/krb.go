// Package krb lets kiln's processes log in to PostgreSQL with Kerberos.
//
// It gives pgx a GSSAPI provider built on gokrb5. pgx's provider is
// process-wide (pgconn.RegisterGSSProvider), and so is a Kerberos identity
// here: a daemon authenticates with its keytab, a person with the ticket cache
// kinit filled, and one gokrb5 client serves every pooled connection (it keeps
// service tickets and, with a keytab, renews its ticket-granting ticket).
//
// PostgreSQL speaks SPNEGO and answers the client's token with a
// GSS-continue message that pgx waits for, so the token sent is a SPNEGO
// NegTokenInit wrapping the Kerberos AP-REQ (a bare AP-REQ would leave pgx
// waiting for a reply the server never sends).
//
// Nothing here runs unless the server asks for GSSAPI: with password or trust
// authentication the provider is registered but never called.
package krb

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/credentials"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

// Identity says which Kerberos credentials the process uses. Empty fields
// fall back to the standard environment variables.
type Identity struct {
	// Keytab is the path of a client keytab (daemons). Falls back to
	// KRB5_CLIENT_KTNAME. When set, the ticket cache is not used.
	Keytab string
	// Principal is the client principal to take from the keytab, such as
	// kiln-builder/build01.example.org@EXAMPLE.ORG; empty means the keytab's
	// only principal. Ignored for a ticket cache, whose principal is its own.
	Principal string
	// CCache is the path of a ticket cache (people, after kinit). Falls back
	// to KRB5CCNAME, then /tmp/krb5cc_<uid>, as MIT Kerberos does.
	CCache string
	// Config is the path of krb5.conf. Falls back to KRB5_CONFIG, then
	// /etc/krb5.conf.
	Config string
}

// FromEnv fills the empty fields of id from the environment.
func (id Identity) FromEnv() Identity {
	if id.Keytab == "" {
		id.Keytab = strings.TrimPrefix(os.Getenv("KRB5_CLIENT_KTNAME"), "FILE:")
	}
	if id.Keytab == "" && id.CCache == "" {
		id.CCache = os.Getenv("KRB5CCNAME")
		if id.CCache == "" {
			id.CCache = fmt.Sprintf("FILE:/tmp/krb5cc_%d", os.Getuid())
		}
	}
	if id.Config == "" {
		id.Config = os.Getenv("KRB5_CONFIG")
		if id.Config == "" {
			id.Config = "/etc/krb5.conf"
		}
	}
	return id
}

// The failures people and operators meet, each with what to do about it.
// Errors returned by this package wrap one of them where one applies.
var (
	ErrNoTicket         = errors.New("no Kerberos ticket")
	ErrTicketExpired    = errors.New("expired Kerberos ticket")
	ErrKeytab           = errors.New("keytab unusable")
	ErrServicePrincipal = errors.New("unknown service principal")
	ErrKDCUnreachable   = errors.New("KDC unreachable")
	ErrClockSkew        = errors.New("clock skew too great")
	ErrClientPrincipal  = errors.New("client principal refused by the KDC")
	ErrIdentityConflict = errors.New("a second Kerberos identity in one process")
)

// provider is the process-wide Kerberos identity behind pgx's GSS provider.
type provider struct {
	mu        sync.Mutex
	id        Identity
	cl        *client.Client
	principal string    // client principal in use, name@REALM
	ccMod     time.Time // modification time of the loaded ticket cache
	tgtEnd    time.Time // end of the ticket cache's TGT
}

var (
	registerOnce sync.Once
	current      struct {
		sync.Mutex
		p *provider
	}
)

// Use makes id the process's Kerberos identity for PostgreSQL logins and
// registers the GSSAPI provider with pgx. Calling it again with the same
// identity, or with an empty one, keeps the identity in use; a different one
// is refused (ErrIdentityConflict), because pgx has one provider per
// process: run one identity per process.
func Use(id Identity) error {
	explicit := id != Identity{}
	id = id.FromEnv()
	current.Lock()
	defer current.Unlock()
	if current.p != nil && !explicit {
		return nil
	}
	if current.p != nil {
		if current.p.id != id {
			return fmt.Errorf("%w: this process already logs in as %s; it cannot also use %s", ErrIdentityConflict, current.p.id.describe(), id.describe())
		}
		return nil
	}
	current.p = &provider{id: id}
	registerOnce.Do(func() {
		pgconn.RegisterGSSProvider(func() (pgconn.GSS, error) {
			current.Lock()
			p := current.p
			current.Unlock()
			return &conversation{p: p}, nil
		})
	})
	return nil
}

// Principal returns the client principal the process logged in as, or "" if
// Kerberos has not been used yet.
func Principal() string {
	current.Lock()
	p := current.p
	current.Unlock()
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.principal
}

// Describe says which credentials the process's identity uses, for error
// messages ("keytab /etc/kiln/builder.keytab", "ticket cache FILE:/tmp/krb5cc_1000").
func Describe() string {
	current.Lock()
	defer current.Unlock()
	if current.p == nil {
		return "no Kerberos identity"
	}
	return current.p.id.describe()
}

func (id Identity) describe() string {
	if id.Keytab != "" {
		if id.Principal != "" {
			return fmt.Sprintf("principal %s from keytab %s", id.Principal, id.Keytab)
		}
		return "keytab " + id.Keytab
	}
	return "ticket cache " + id.CCache
}

// conversation is one connection's GSSAPI exchange (pgconn.GSS).
type conversation struct {
	p   *provider
	spn string
}

// GetInitToken starts the exchange for service/host (pgx derives them from
// the connection's host and krbsrvname).
func (c *conversation) GetInitToken(host, service string) ([]byte, error) {
	return c.GetInitTokenFromSPN(service + "/" + host)
}

// GetInitTokenFromSPN starts the exchange for a service principal name such
// as postgres/db.example.org (pgx passes krbspn here).
func (c *conversation) GetInitTokenFromSPN(spn string) ([]byte, error) {
	// gokrb5 names the service without its realm and finds the realm
	// from krb5.conf's domain_realm.
	if i := strings.LastIndexByte(spn, '@'); i >= 0 {
		spn = spn[:i]
	}
	c.spn = spn
	cl, err := c.p.client()
	if err != nil {
		return nil, err
	}
	tok, err := spnego.SPNEGOClient(cl, spn).InitSecContext()
	if err != nil {
		return nil, c.p.explain(err, spn)
	}
	b, err := tok.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encoding the SPNEGO token for %s: %w", spn, err)
	}
	return b, nil
}

// Continue reads the server's SPNEGO reply. PostgreSQL completes Kerberos in
// one round: the reply says accept-completed (or reject).
func (c *conversation) Continue(in []byte) (bool, []byte, error) {
	var resp spnego.SPNEGOToken
	if err := resp.Unmarshal(in); err != nil {
		return false, nil, fmt.Errorf("reading the server's SPNEGO reply for %s: %w", c.spn, err)
	}
	if !resp.Resp {
		return false, nil, fmt.Errorf("the server's SPNEGO reply for %s is not a negotiation response", c.spn)
	}
	switch resp.NegTokenResp.State() {
	case spnego.NegStateAcceptCompleted:
		return true, nil, nil
	case spnego.NegStateReject:
		return false, nil, fmt.Errorf("the database server rejected the Kerberos ticket for %s (its keytab may hold another key version: compare kvno with klist -k)", c.spn)
	default:
		return false, nil, fmt.Errorf("the database server asked for another SPNEGO round for %s, which Kerberos does not need", c.spn)
	}
}

// client returns the process's gokrb5 client, creating it on first use and,
// for a ticket cache, reloading it when kinit has refreshed the file.
func (p *provider) client() (*client.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.id.Keytab != "" {
		if p.cl == nil {
			if err := p.loginKeytab(); err != nil {
				return nil, err
			}
		}
		return p.cl, nil
	}
	path := strings.TrimPrefix(p.id.CCache, "FILE:")
	if i := strings.IndexByte(path, ':'); i > 0 && !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("%w: ticket cache %s is of type %s, which kiln cannot read; use a file cache: export KRB5CCNAME=FILE:/tmp/krb5cc_%d and run kinit again",
			ErrNoTicket, p.id.CCache, path[:i], os.Getuid())
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: no ticket cache at %s: run kinit (or give a daemon a keytab with --krb-keytab or KRB5_CLIENT_KTNAME)", ErrNoTicket, path)
	}
	if p.cl == nil || !st.ModTime().Equal(p.ccMod) {
		if err := p.loadCCache(path); err != nil {
			return nil, err
		}
		p.ccMod = st.ModTime()
	}
	if now := time.Now(); now.After(p.tgtEnd) {
		return nil, fmt.Errorf("%w: the ticket of %s in %s expired at %s: run kinit again",
			ErrTicketExpired, p.principal, path, p.tgtEnd.Local().Format(time.DateTime))
	}
	return p.cl, nil
}

func (p *provider) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(p.id.Config)
	if err != nil {
		var unsupported config.UnsupportedDirective
		if !errors.As(err, &unsupported) {
			return nil, fmt.Errorf("reading Kerberos configuration %s (set KRB5_CONFIG): %w", p.id.Config, err)
		}
	}
	return cfg, nil
}

func (p *provider) loadCCache(path string) error {
	cfg, err := p.loadConfig()
	if err != nil {
		return err
	}
	cc, err := credentials.LoadCCache(path)
	if err != nil {
		return fmt.Errorf("%w: reading ticket cache %s: %v: run kinit", ErrNoTicket, path, err)
	}
	principal := cc.DefaultPrincipal.PrincipalName.PrincipalNameString() + "@" + cc.DefaultPrincipal.Realm
	cl, err := client.NewFromCCache(cc, cfg, client.DisablePAFXFAST(true))
	if err != nil {
		return fmt.Errorf("%w: ticket cache %s has no ticket-granting ticket for %s (%v): run kinit", ErrNoTicket, path, principal, err)
	}
	for _, e := range cc.GetEntries() {
		if len(e.Server.PrincipalName.NameString) == 2 && e.Server.PrincipalName.NameString[0] == "krbtgt" &&
			e.Server.PrincipalName.NameString[1] == cc.DefaultPrincipal.Realm {
			p.tgtEnd = e.EndTime
		}
	}
	p.cl, p.principal = cl, principal
	return nil
}

func (p *provider) loginKeytab() error {
	kt, err := keytab.Load(p.id.Keytab)
	if err != nil {
		return fmt.Errorf("%w: reading keytab %s: %v (check the path, --krb-keytab or KRB5_CLIENT_KTNAME, and that this user may read it)", ErrKeytab, p.id.Keytab, err)
	}
	principal := p.id.Principal
	if principal == "" {
		seen := map[string]bool{}
		var all []string
		for _, e := range kt.Entries {
			name := e.Principal.String()
			if !seen[name] {
				seen[name] = true
				all = append(all, name)
			}
		}
		switch len(all) {
		case 0:
			return fmt.Errorf("%w: keytab %s holds no keys", ErrKeytab, p.id.Keytab)
		case 1:
			principal = all[0]
		default:
			return fmt.Errorf("%w: keytab %s holds several principals (%s): say which with --krb-principal", ErrKeytab, p.id.Keytab, strings.Join(all, ", "))
		}
	}
	cfg, err := p.loadConfig()
	if err != nil {
		return err
	}
	name, realm := principal, cfg.LibDefaults.DefaultRealm
	if i := strings.LastIndexByte(principal, '@'); i >= 0 {
		name, realm = principal[:i], principal[i+1:]
	}
	if realm == "" {
		return fmt.Errorf("%w: principal %s has no realm and krb5.conf %s names no default_realm", ErrKeytab, principal, p.id.Config)
	}
	cl := client.NewWithKeytab(name, realm, kt, cfg, client.DisablePAFXFAST(true))
	p.principal = name + "@" + realm
	if err := cl.Login(); err != nil {
		return p.explain(err, "")
	}
	p.cl = cl
	return nil
}

// explain maps gokrb5's errors to the sentinel errors with advice. gokrb5
// reports KDC errors by their RFC 4120 names inside its messages.
func (p *provider) explain(err error, spn string) error {
	msg := err.Error()
	has := func(s ...string) bool {
		for _, x := range s {
			if strings.Contains(msg, x) {
				return true
			}
		}
		return false
	}
	who := p.principal
	switch {
	case has("KDC_ERR_S_PRINCIPAL_UNKNOWN"):
		return fmt.Errorf("%w: the KDC knows no service principal %s: connect to the database by the host name in its keytab (postgres/<host name>, never an IP address), or set krbsrvname/krbspn: %v", ErrServicePrincipal, spn, err)
	case has("KRB_AP_ERR_SKEW", "clock skew"):
		return fmt.Errorf("%w: this machine's clock differs from the KDC's by more than allowed (5 minutes by default): synchronise it (NTP): %v", ErrClockSkew, err)
	case has("KDC_ERR_C_PRINCIPAL_UNKNOWN"):
		return fmt.Errorf("%w: the KDC knows no principal %s: check the keytab or --krb-principal: %v", ErrClientPrincipal, who, err)
	case has("KDC_ERR_PREAUTH_FAILED", "KRB_AP_ERR_BAD_INTEGRITY", "KDC_ERR_ETYPE_NOSUPP", "Decrypt", "decrypt", "KRB_AP_ERR_BADKEYVER"):
		return fmt.Errorf("%w: the KDC refused the key for %s from %s (the keytab is out of date, for example after a new ktadd): %v", ErrKeytab, who, p.id.describe(), err)
	case has("KDC_ERR_CLIENT_REVOKED", "KDC_ERR_KEY_EXPIRED", "KDC_ERR_POLICY"):
		return fmt.Errorf("%w: the KDC refuses %s (disabled, locked or expired): ask the Kerberos administrator: %v", ErrClientPrincipal, who, err)
	case has("KRB_AP_ERR_TKT_EXPIRED", "no valid existing session", "expired"):
		return fmt.Errorf("%w: %s has no valid ticket-granting ticket: run kinit again: %v", ErrTicketExpired, who, err)
	case has("networking", "dial", "connection refused", "i/o timeout", "no KDCs defined", "could not get KDC"):
		return fmt.Errorf("%w: cannot reach a KDC for %s (check [realms] in %s and that the KDC runs): %v", ErrKDCUnreachable, who, p.id.Config, err)
	}
	return fmt.Errorf("logging in to Kerberos as %s from %s: %w", who, p.id.describe(), err)
}
