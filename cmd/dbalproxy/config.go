package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/policy"
	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration file. Every scalar key can be overridden
// by an environment variable (DBALPROXY_ + the key path in upper case with
// dots as underscores, e.g. DBALPROXY_POOL_MAX_CONNS) and by a flag of the
// same path (--pool.max_conns); flags win over the environment, which wins
// over the file. Scalars in the file may name environment variables as
// ${NAME}, so secrets can stay out of the file.
type Config struct {
	// Listen is the client-facing address. Default 127.0.0.1:6432.
	Listen  string        `yaml:"listen" doc:"client-facing listen address"`
	Backend BackendConfig `yaml:"backend"`
	Pool    PoolConfig    `yaml:"pool"`
	Auth    AuthConfig    `yaml:"auth"`
	TLS     TLSConfig     `yaml:"tls"`
	Limits  LimitsConfig  `yaml:"limits"`
	Log     LogConfig     `yaml:"log"`
	Policy  PolicyConfig  `yaml:"policy"`
	Audit   AuditConfig   `yaml:"audit"`
	Admin   AdminConfig   `yaml:"admin"`
	Peering PeeringConfig `yaml:"peering"`
	// DecisionLog also writes statement decisions in OPA's decision-log
	// format, for OPA log pipelines.
	DecisionLog DecisionLogConfig `yaml:"decision_log"`
	Console     ConsoleConfig     `yaml:"console"` // the admin console: consolecmd.go
	// WebSocket is the bridge for the Neon serverless driver and
	// @prisma/adapter-neon: PostgreSQL over WebSocket and SQL over HTTP.
	WebSocket WebSocketConfig `yaml:"websocket"`
	// JWT are the verifiers of signed identity tokens, by name; logins use
	// them to log in with a token (logins[].jwt) or to switch the end user
	// for a transaction (logins[].end_user_jwt).
	JWT []JWTConfig `yaml:"jwt"`
	// Logins are the identities clients log in as.
	Logins []LoginConfig `yaml:"logins"`
}

// BackendConfig says where PostgreSQL is and with which credentials the proxy
// itself logs in. Clients never see these credentials.
type BackendConfig struct {
	// URL is a libpq-style URL or key=value string (sslmode honoured).
	URL string `yaml:"url" doc:"backend URL with the proxy's own credentials"`
	// Databases clients may ask for besides the URL's; "*" for any.
	Databases []string `yaml:"databases" doc:"extra databases clients may use (comma list; * for any)"`
}

// PoolConfig configures backend connection pooling.
type PoolConfig struct {
	// Mode is "session" (a client holds one backend connection from login
	// to logout) or "transaction" (a client holds one for the length of a
	// transaction, or of a statement outside one).
	Mode           string   `yaml:"mode" doc:"pooling mode: session or transaction"`
	MaxConns       int      `yaml:"max_conns" doc:"most backend connections per database"`
	AcquireTimeout Duration `yaml:"acquire_timeout" doc:"how long a client waits for a backend connection before 53300"`
	IdleTimeout    Duration `yaml:"idle_timeout" doc:"close backend connections idle this long"`
	ResetQuery     string   `yaml:"reset_query" doc:"query run on a backend connection before reuse"`
}

// AuthConfig configures client authentication.
type AuthConfig struct {
	// Method is "scram-sha-256" (default) or "trust" (no password; only when
	// chosen explicitly).
	Method string `yaml:"method" doc:"client auth method: scram-sha-256 or trust"`
	// TokenTransport says where signed tokens (token logins, end-user
	// switches) are accepted: tls (default), tls_or_loopback or any. A
	// token travels as a cleartext password or inside SQL.
	TokenTransport string `yaml:"token_transport" doc:"where signed tokens are accepted: tls, tls_or_loopback or any"`
}

// JWTConfig is one verifier of signed identity tokens (JWTs). Exactly one of
// HS256Secret, PublicKeyFile and JWKSFile is required.
type JWTConfig struct {
	Name string `yaml:"name"`
	// HS256Secret is a shared secret of at least 32 bytes (use ${ENV}).
	HS256Secret string `yaml:"hs256_secret"`
	// PublicKeyFile is a PEM public key or certificate: RSA for RS256, EC
	// P-256 for ES256.
	PublicKeyFile string `yaml:"public_key_file"`
	// JWKSFile is a JSON Web Key Set; tokens choose a key with "kid".
	JWKSFile string `yaml:"jwks_file"`
	// Algorithm overrides the PEM key's algorithm (e.g. PS256, RS512).
	Algorithm string `yaml:"algorithm"`
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// Leeway is the clock skew allowed on exp, nbf and iat; default 30s.
	Leeway Duration `yaml:"leeway"`
	// RoleClaim names the claim that becomes the role; default "role".
	RoleClaim string `yaml:"role_claim"`
	// DefaultRole is the role of a token without the role claim; empty
	// refuses such tokens.
	DefaultRole string `yaml:"default_role"`
	// Roles, when set, are the only roles a token may carry.
	Roles []string `yaml:"roles"`
	// UserIDClaim names a claim (e.g. sub) copied to claims.user_id.
	UserIDClaim string `yaml:"user_id_claim"`
}

// TLSConfig enables TLS for clients.
type TLSConfig struct {
	CertFile string `yaml:"cert_file" doc:"PEM certificate for client TLS"`
	KeyFile  string `yaml:"key_file" doc:"PEM private key for client TLS"`
	Required bool   `yaml:"required" doc:"refuse clients without TLS"`
}

// LimitsConfig bounds what clients can make the proxy hold.
type LimitsConfig struct {
	StartupTimeout  Duration `yaml:"startup_timeout" doc:"time allowed from connect to ready"`
	MaxMessageBytes int      `yaml:"max_message_bytes" doc:"largest client message (CopyData exempt)"`
	MaxClientConns  int      `yaml:"max_client_conns" doc:"most open client connections"`
	// MaxConnsPerLogin is the default session limit of each login (a
	// login's max_conns overrides it); 0 means none.
	MaxConnsPerLogin int `yaml:"max_conns_per_login" doc:"most open sessions per login (0: no limit; a login's max_conns overrides it)"`
	// ShutdownTimeout is how long SIGTERM/SIGINT let open transactions run
	// before their sessions are closed.
	ShutdownTimeout Duration `yaml:"shutdown_timeout" doc:"how long a shutdown lets open transactions finish"`
}

// AdminConfig configures the operations HTTP listener (/metrics, /healthz,
// /readyz).
type AdminConfig struct {
	// Listen is the admin address; "off" (or empty) disables it. It has no
	// authentication: keep it on loopback or a private network.
	Listen string `yaml:"listen" doc:"admin HTTP address for /metrics, /healthz, /readyz (off to disable)"`
}

// WebSocketConfig configures the WebSocket and HTTP bridge (package
// bridge). With tls.cert_file it serves wss and https with the same
// certificates.
type WebSocketConfig struct {
	// Listen is the bridge's address; "off" (or empty) disables it.
	Listen string `yaml:"listen" doc:"address for PostgreSQL over WebSocket and SQL over HTTP (off to disable)"`
	// AllowedOrigins are browser origins allowed besides the request's own
	// host: host patterns (*.example.com) or scheme://host patterns.
	AllowedOrigins []string `yaml:"allowed_origins" doc:"browser origins allowed (comma list of host patterns like *.example.com)"`
	MaxFrameBytes  int      `yaml:"max_frame_bytes" doc:"largest WebSocket message a client may send (default 16 MiB)"`
	MaxBodyBytes   int      `yaml:"max_body_bytes" doc:"largest SQL-over-HTTP request body (default 1 MiB)"`
	IdleTimeout    Duration `yaml:"idle_timeout" doc:"close a WebSocket with no traffic for this long (default 1h)"`
	RequestTimeout Duration `yaml:"request_timeout" doc:"bound one SQL-over-HTTP request, login included (default 30s)"`
	// DisableHTTP turns off POST /sql (the neon() function's endpoint).
	DisableHTTP bool `yaml:"disable_http" doc:"serve WebSocket only, not SQL over HTTP"`
}

// LogConfig configures the proxy's own log (not the audit log).
type LogConfig struct {
	Level  string `yaml:"level" doc:"debug, info, warn or error"`
	Format string `yaml:"format" doc:"json or console"`
}

// PolicyConfig says where the Rego policies are and how they are enforced.
type PolicyConfig struct {
	// Dir holds the .rego files (package dbal) and optional data files.
	Dir string `yaml:"dir" doc:"directory of .rego policies and data files"`
	// Mode is strict (enforce), permissive (allow, audit would-deny) or
	// disabled (pass through, still audited).
	Mode string `yaml:"mode" doc:"strict, permissive or disabled"`
	// Watch reloads the policies when a file in Dir changes (SIGHUP always does).
	Watch bool `yaml:"watch" doc:"reload policies when their files change"`
	// RunTests refuses a policy set whose own *_test.rego tests fail.
	RunTests bool `yaml:"run_tests" doc:"refuse a policy set whose Rego tests fail"`
	// CacheSize is how many decided statement plans are kept.
	CacheSize int `yaml:"cache_size" doc:"decided statements kept (text x principal)"`
	// Bundle, with a URL, loads the policies from an OPA bundle service
	// instead of Dir.
	Bundle PolicyBundleConfig `yaml:"bundle"`
}

// PolicyBundleConfig is an OPA bundle service the policies are polled from
// (see policy.BundleOptions).
type PolicyBundleConfig struct {
	URL           string   `yaml:"url" doc:"OPA bundle (opa build .tar.gz) URL to poll instead of policy.dir"`
	MinDelay      Duration `yaml:"min_delay" doc:"shortest wait between bundle polls (default 60s)"`
	MaxDelay      Duration `yaml:"max_delay" doc:"longest wait between bundle polls (default 120s)"`
	Token         string   `yaml:"token" doc:"bearer token for the bundle service (use ${ENV})"`
	PublicKeyFile string   `yaml:"public_key_file" doc:"PEM public key (or HS256 secret file) bundles must be signed with"`
	KeyID         string   `yaml:"key_id" doc:"signing key id (default: default)"`
	Algorithm     string   `yaml:"algorithm" doc:"signing algorithm (default RS256)"`
	Scope         string   `yaml:"scope" doc:"required signature scope"`
	Timeout       Duration `yaml:"timeout" doc:"bound on one bundle download (default 30s)"`
}

// policyOptions are the policy engine's options a configuration asks for.
func policyOptions(cfg *Config) policy.Options {
	opts := policy.Options{Dir: cfg.Policy.Dir, Mode: decision.Mode(cfg.Policy.Mode), RunTests: cfg.Policy.RunTests}
	if b := cfg.Policy.Bundle; b.URL != "" {
		opts.Dir = ""
		opts.Bundle = &policy.BundleOptions{
			URL: b.URL, MinDelay: b.MinDelay.D(), MaxDelay: b.MaxDelay.D(), Token: b.Token,
			PublicKeyFile: b.PublicKeyFile, KeyID: b.KeyID, Algorithm: b.Algorithm, Scope: b.Scope,
			Timeout: b.Timeout.D(),
		}
	}
	return opts
}

// policySource names where the policies come from, for messages.
func policySource(cfg *Config) string {
	if cfg.Policy.Bundle.URL != "" {
		return "bundle " + cfg.Policy.Bundle.URL
	}
	return cfg.Policy.Dir
}

// AuditConfig configures the audit log: one JSON line per decision.
type AuditConfig struct {
	Output       string   `yaml:"output" doc:"stdout, stderr, off, or a file path (appended, mode 0600)"`
	Format       string   `yaml:"format" doc:"json or console"`
	QueueSize    int      `yaml:"queue_size" doc:"records buffered before the sink"`
	BlockTimeout Duration `yaml:"block_timeout" doc:"how long a statement may wait for a full audit queue before the record is dropped"`
	LogLiterals  bool     `yaml:"log_literals" doc:"log statements with their literal values"`
}

// DecisionLogConfig configures OPA-format decision logs (see
// audit.DecisionLogConfig); off unless file or url is set.
type DecisionLogConfig struct {
	File          string   `yaml:"file" doc:"file the decision log is appended to (one OPA decision event per line)"`
	URL           string   `yaml:"url" doc:"HTTP endpoint decision events are POSTed to in gzipped batches (e.g. a service's /logs)"`
	Token         string   `yaml:"token" doc:"bearer token for the decision log endpoint (use ${ENV})"`
	InstanceID    string   `yaml:"instance_id" doc:"labels.id of every decision event (default: the host name)"`
	BatchSize     int      `yaml:"batch_size" doc:"most decision events per upload (default 500)"`
	FlushInterval Duration `yaml:"flush_interval" doc:"longest wait before a partial batch is sent (default 5s)"`
	BufferSize    int      `yaml:"buffer_size" doc:"decision events kept while the endpoint is slow or down; the oldest are dropped past it (default 10000)"`
	RetryMax      Duration `yaml:"retry_max_delay" doc:"longest backoff between upload retries (default 30s)"`
	LogLiterals   bool     `yaml:"log_literals" doc:"log statements with their literal values in decision events"`
}

// PeeringConfig lets several proxies behind one load balancer forward
// cancel requests to the instance that handed out the key.
type PeeringConfig struct {
	// ID is this instance's id, 1 to 127; 0 disables peering.
	ID int `yaml:"id" doc:"this proxy's peer id (1-127) for cancel forwarding; 0 disables"`
	// Peers are every instance's client-facing address by id (this
	// instance's own entry is allowed and ignored).
	Peers map[int]string `yaml:"peers"`
}

// LoginConfig is one client identity.
type LoginConfig struct {
	Name string `yaml:"name"`
	// Password is a plain secret (use ${ENV} for real deployments);
	// SCRAMVerifier a pg_authid-style SCRAM-SHA-256 verifier. One is required
	// unless auth.method is trust.
	Password      string         `yaml:"password"`
	SCRAMVerifier string         `yaml:"scram_verifier"`
	Role          string         `yaml:"role"`
	Claims        map[string]any `yaml:"claims"`
	// JWT names a verifier: the login's password is then a signed token,
	// whose role and claims the session gets (no role, claims or password
	// here).
	JWT string `yaml:"jwt"`
	// EndUserJWT names a verifier whose tokens this login may use to switch
	// the end user for one transaction (SET LOCAL dbal.token).
	EndUserJWT string `yaml:"end_user_jwt"`
	// MaxConns is the most open sessions of this login: 0 takes
	// limits.max_conns_per_login, -1 means no limit.
	MaxConns int `yaml:"max_conns"`
	// Backend, when its user is set, is the backend role this login's
	// sessions run as (a pool of their own on backend.url's server), so
	// the database's own grants and row-level security apply too.
	Backend LoginBackend `yaml:"backend"`
}

// LoginBackend is a login's own backend credentials.
type LoginBackend struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"` // use ${ENV}
}

// Duration is a time.Duration written as "5s", "250ms" or "2m" in the file.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("%q is not a duration like 5s or 250ms", n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func defaultConfig() Config {
	return Config{
		Listen: "127.0.0.1:6432",
		Pool: PoolConfig{
			Mode: "session", MaxConns: 20,
			AcquireTimeout: Duration(5 * time.Second), IdleTimeout: Duration(5 * time.Minute),
			ResetQuery: "DISCARD ALL",
		},
		Auth: AuthConfig{Method: "scram-sha-256", TokenTransport: "tls"},
		Limits: LimitsConfig{StartupTimeout: Duration(15 * time.Second), MaxMessageBytes: 64 << 20, MaxClientConns: 10000,
			ShutdownTimeout: Duration(30 * time.Second)},
		Log:    LogConfig{Level: "info", Format: "json"},
		Policy: PolicyConfig{Dir: "policies", Mode: "strict", Watch: true, RunTests: true, CacheSize: 10000},
		Audit:  AuditConfig{Output: "stdout", Format: "json", QueueSize: 4096},
		Admin:  AdminConfig{Listen: defaultAdminListen},
		// The admin console: consolecmd.go.
		Console: defaultConsole(),
	}
}

// defaultAdminListen is the admin listener's default: off, so that several
// proxies (and test and benchmark runs) on one host never fight over a port.
// Deployments set a loopback or private address, e.g. 127.0.0.1:9432.
const defaultAdminListen = "off"

// configError is a configuration problem at one key.
type configError struct {
	key string
	msg string
	// unsetVar is the environment variable a ${NAME} reference at key
	// names, when the problem is that it is not set.
	unsetVar string
}

func (e *configError) Error() string {
	if e.key == "" {
		return "config: " + e.msg
	}
	return "config: " + e.key + ": " + e.msg
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// parseConfigFile reads YAML into cfg, refusing unknown keys and expanding
// ${NAME} references.
func parseConfigFile(data []byte, cfg *Config) error { return parseConfig(data, cfg, nil) }

// parseConfig is parseConfigFile where the keys in overridden (given by a
// flag or the environment) are left as they are, references included: their
// values come from elsewhere.
func parseConfig(data []byte, cfg *Config, overridden map[string]bool) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return &configError{msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if len(root.Content) == 0 {
		return nil
	}
	doc := root.Content[0]
	var problems, unset []error
	checkKeys(doc, reflect.TypeOf(*cfg), "", &problems)
	expandEnv(doc, "", overridden, &unset)
	// Values that are unset, given elsewhere or of the wrong type leave the
	// document, so that the rest decodes (and is checked) as written.
	dropped := map[string]bool{}
	for k := range overridden {
		dropped[k] = true
	}
	for _, e := range unset {
		dropped[e.(*configError).key] = true
	}
	pruneValues(doc, reflect.TypeOf(*cfg), "", dropped, &problems)
	if len(unset) > 0 {
		// Values are missing: validating them would only repeat the news.
		// The rest is decoded as well as it can be (serve --check goes on
		// to check the policy directory and logins the file names).
		_ = doc.Decode(cfg)
		return errors.Join(append(problems, unset...)...)
	}
	if err := doc.Decode(cfg); err != nil {
		return &configError{msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if len(problems) > 0 {
		// The file decoded: validation may still find more problems.
		return keyProblems{errors.Join(problems...)}
	}
	return nil
}

// keyProblems are unknown keys in a file that decoded nonetheless: loadConfig goes on to validate it, so that one
// run reports every problem.
type keyProblems struct{ error }

func (k keyProblems) Unwrap() []error { return splitErrors(k.error) }

// checkKeys walks n against type t and adds every unknown key and every
// value of the wrong kind to problems, naming the key path.
func checkKeys(n *yaml.Node, t reflect.Type, path string, problems *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeOf(Duration(0)) {
			return
		}
		if n.Kind != yaml.MappingNode {
			*problems = append(*problems, &configError{key: path, msg: fmt.Sprintf("want a mapping of keys (line %d)", n.Line)})
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fieldByTag(t, k.Value)
			if !ok {
				*problems = append(*problems, &configError{key: join(path, k.Value), msg: fmt.Sprintf("unknown key (line %d)", k.Line)})
				continue
			}
			checkKeys(v, f.Type, join(path, k.Value), problems)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if t.Elem().Kind() == reflect.String && n.Kind == yaml.ScalarNode {
				return // a single value stands for a one-element list
			}
			*problems = append(*problems, &configError{key: path, msg: fmt.Sprintf("want a list (line %d)", n.Line)})
			return
		}
		for i, c := range n.Content {
			checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), problems)
		}
	}
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// expandEnv replaces ${NAME} in scalar values, adding a problem for each
// variable that is not set. Keys in skip (and their list elements) are left
// alone.
func expandEnv(n *yaml.Node, path string, skip map[string]bool, problems *[]error) {
	if skip[path] {
		return
	}
	switch n.Kind {
	case yaml.ScalarNode:
		var missing string
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			name := m[2 : len(m)-1]
			v, ok := os.LookupEnv(name)
			if !ok && missing == "" {
				missing = name
			}
			return v
		})
		if missing != "" {
			*problems = append(*problems, &configError{key: path, msg: fmt.Sprintf("environment variable %s is not set", missing), unsetVar: missing})
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			expandEnv(n.Content[i+1], join(path, n.Content[i].Value), skip, problems)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			expandEnv(c, fmt.Sprintf("%s[%d]", path, i), skip, problems)
		}
	}
}

// pruneValues removes from the document the values at the keys in drop
// and the values of the wrong type, adding a problem naming the key for
// each of the latter: one bad value must not keep the others from being
// decoded, nor be reported without its key.
func pruneValues(n *yaml.Node, t reflect.Type, path string, drop map[string]bool, problems *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	keep := func(v *yaml.Node, vt reflect.Type, p string) bool {
		if drop[p] || !scalarOK(v, vt, p, problems) {
			return false
		}
		pruneValues(v, vt, p, drop, problems)
		return true
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct && t != reflect.TypeOf(Duration(0)):
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fieldByTag(t, k.Value)
			if !ok || keep(v, f.Type, join(path, k.Value)) {
				kept = append(kept, k, v)
			}
		}
		n.Content = kept
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		kept := n.Content[:0]
		for i, c := range n.Content {
			if keep(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)) {
				kept = append(kept, c)
			}
		}
		n.Content = kept
	}
}

// scalarOK checks a value meant for a scalar field of type t: a duration,
// a whole number or a boolean, as the field wants. Other fields are
// checked by checkKeys and by decoding.
func scalarOK(v *yaml.Node, t reflect.Type, path string, problems *[]error) bool {
	bad := func(msg string) bool {
		*problems = append(*problems, &configError{key: path, msg: fmt.Sprintf("%s (line %d)", msg, v.Line)})
		return false
	}
	scalar := t == reflect.TypeOf(Duration(0)) || t.Kind() == reflect.Int || t.Kind() == reflect.Bool || t.Kind() == reflect.String
	switch {
	case !scalar:
		return true
	case v.Kind != yaml.ScalarNode:
		return bad("want a single value, not a list or mapping")
	case v.Tag == "!!null":
		return true
	case t == reflect.TypeOf(Duration(0)):
		if _, err := time.ParseDuration(v.Value); err != nil {
			return bad(fmt.Sprintf("%q is not a duration like 5s or 250ms", v.Value))
		}
	case t.Kind() == reflect.Int:
		var n int
		if err := v.Decode(&n); err != nil {
			return bad(fmt.Sprintf("%q is not a whole number", v.Value))
		}
	case t.Kind() == reflect.Bool:
		var b bool
		if err := v.Decode(&b); err != nil {
			return bad(fmt.Sprintf("%q is not true or false", v.Value))
		}
	}
	return true
}

// scalarField is one overridable key.
type scalarField struct {
	path string
	doc  string
	v    reflect.Value
}

// scalarFields lists every scalar key of cfg (structs nested, slices of
// strings as comma lists; other slices and maps, such as logins, are file-only).
func scalarFields(cfg *Config) []scalarField {
	var out []scalarField
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			p := join(path, tag)
			fv := v.Field(i)
			switch {
			case f.Type == reflect.TypeOf(Duration(0)):
				out = append(out, scalarField{p, f.Tag.Get("doc"), fv})
			case f.Type.Kind() == reflect.Struct:
				walk(fv, p)
			case f.Type.Kind() == reflect.String, f.Type.Kind() == reflect.Int, f.Type.Kind() == reflect.Bool,
				f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.String:
				out = append(out, scalarField{p, f.Tag.Get("doc"), fv})
			}
		}
	}
	walk(reflect.ValueOf(cfg).Elem(), "")
	return out
}

func envName(path string) string {
	return "DBALPROXY_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(path))
}

// setScalar parses s into the field.
func setScalar(f scalarField, s string) error {
	v := f.v
	switch {
	case v.Type() == reflect.TypeOf(Duration(0)):
		d, err := time.ParseDuration(s)
		if err != nil {
			return &configError{key: f.path, msg: fmt.Sprintf("%q is not a duration like 5s or 250ms", s)}
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return &configError{key: f.path, msg: fmt.Sprintf("%q is not a whole number", s)}
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return &configError{key: f.path, msg: fmt.Sprintf("%q is not true or false", s)}
		}
		v.SetBool(b)
	case v.Kind() == reflect.Slice:
		var parts []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	}
	return nil
}

// configFlags registers a string flag per scalar key on fs (cfg's fields
// give the documentation). The returned overrides apply, after fs.Parse,
// the environment and then the flags that were set.
func configFlags(fs *flag.FlagSet, cfg *Config) *overrides {
	return configOverrides(fs, cfg)
}

// overrides are the environment's and the flags' values of scalar keys
// (DBALPROXY_POOL_MAX_CONNS, --pool.max_conns).
type overrides struct {
	fs   *flag.FlagSet
	vals map[string]*string
}

// configOverrides registers a string flag per scalar key on fs (cfg's
// fields give the documentation). After fs.Parse, the overrides apply to
// any Config: a reload applies them again to the freshly read file.
func configOverrides(fs *flag.FlagSet, cfg *Config) *overrides {
	fields := scalarFields(cfg)
	o := &overrides{fs: fs, vals: make(map[string]*string, len(fields))}
	for _, f := range fields {
		o.vals[f.path] = fs.String(f.path, "", f.doc+" (env "+envName(f.path)+")")
	}
	return o
}

// keys are the keys given by a flag or an environment variable: a file's
// ${NAME} references at them need not be set.
func (o *overrides) keys() map[string]bool {
	set := map[string]bool{}
	if o == nil {
		return set
	}
	o.fs.Visit(func(f *flag.Flag) {
		if _, ok := o.vals[f.Name]; ok {
			set[f.Name] = true
		}
	})
	for path := range o.vals {
		if _, ok := os.LookupEnv(envName(path)); ok {
			set[path] = true
		}
	}
	return set
}

// apply sets the environment's and then the flags' values in c.
func (o *overrides) apply(c *Config) error {
	if o == nil {
		return nil
	}
	set := map[string]bool{}
	o.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, f := range scalarFields(c) {
		if s, ok := os.LookupEnv(envName(f.path)); ok {
			if err := setScalar(f, s); err != nil {
				return err
			}
		}
		if set[f.path] {
			if err := setScalar(f, *o.vals[f.path]); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadConfig builds the configuration: defaults, then the file (if any), then
// the environment and flags of ov (nil: none). A key that ov gives needs no
// variable its file value names.
func loadConfig(path string, cfg *Config, ov *overrides) error {
	var soft error
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return &configError{msg: fmt.Sprintf("cannot read %s: %v", path, errors.Unwrap(err))}
		}
		if err := parseConfig(data, cfg, ov.keys()); err != nil {
			var kp keyProblems
			if !errors.As(err, &kp) {
				return err
			}
			soft = kp.error
		}
	}
	if err := ov.apply(cfg); err != nil {
		return errors.Join(soft, err)
	}
	return errors.Join(soft, validateConfig(cfg))
}

// checkHostPort checks a TCP address as net.Listen and net.Dial take it:
// host:port (either may be empty) with a port from 0 to 65535 (or a
// service name), and no path.
func checkHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || strings.ContainsAny(host, "/\\") {
		return fmt.Errorf("%q is not host:port (a TCP address such as 127.0.0.1:6432; Unix sockets are not supported)", a)
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 0 || n > 65535 {
			return fmt.Errorf("%q: port %d is out of range (0 to 65535)", a, n)
		}
	} else if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q: %q is not a port number", a, port)
	}
	return nil
}

// validateConfig checks values the types cannot. It reports every problem,
// one configError per line (errors.Join).
func validateConfig(cfg *Config) error {
	var problems []error
	bad := func(key, format string, args ...any) {
		problems = append(problems, &configError{key: key, msg: fmt.Sprintf(format, args...)})
	}
	if cfg.Listen == "" {
		bad("listen", "is empty")
	} else if err := checkHostPort(cfg.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if cfg.Backend.URL == "" {
		bad("backend.url", "is required (the backend URL with the proxy's own credentials)")
	}
	if cfg.Pool.Mode != "session" && cfg.Pool.Mode != "transaction" {
		bad("pool.mode", "%q is not a pooling mode (want session or transaction)", cfg.Pool.Mode)
	}
	if cfg.Pool.MaxConns < 1 {
		bad("pool.max_conns", "must be at least 1")
	}
	if cfg.Pool.AcquireTimeout <= 0 {
		bad("pool.acquire_timeout", "must be positive")
	}
	if cfg.Auth.Method != "scram-sha-256" && cfg.Auth.Method != "trust" {
		bad("auth.method", "%q is not supported (want scram-sha-256 or trust)", cfg.Auth.Method)
	}
	if t := cfg.Auth.TokenTransport; t != "tls" && t != "tls_or_loopback" && t != "any" {
		bad("auth.token_transport", "%q is not tls, tls_or_loopback or any", t)
	}
	if (cfg.TLS.CertFile == "") != (cfg.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	if cfg.TLS.Required && cfg.TLS.CertFile == "" {
		bad("tls.required", "needs tls.cert_file and tls.key_file")
	}
	if cfg.Limits.MaxMessageBytes < 1<<16 {
		bad("limits.max_message_bytes", "must be at least 65536")
	}
	if cfg.Limits.MaxClientConns < 1 {
		bad("limits.max_client_conns", "must be at least 1")
	}
	if cfg.Limits.MaxConnsPerLogin < 0 {
		bad("limits.max_conns_per_login", "must be 0 (no limit) or more")
	}
	if cfg.Limits.StartupTimeout <= 0 {
		bad("limits.startup_timeout", "must be positive")
	}
	if cfg.Limits.ShutdownTimeout < 0 {
		bad("limits.shutdown_timeout", "must not be negative")
	}
	if cfg.Log.Format != "json" && cfg.Log.Format != "console" {
		bad("log.format", "%q is not json or console", cfg.Log.Format)
	}
	switch cfg.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		// Not "disabled": the level is zerolog's global one (so that a reload
		// can change it), and a disabled global level would silence the audit
		// log too.
		bad("log.level", "%q is not trace, debug, info, warn or error", cfg.Log.Level)
	}
	if cfg.Policy.Mode != "strict" && cfg.Policy.Mode != "permissive" && cfg.Policy.Mode != "disabled" {
		bad("policy.mode", "%q is not strict, permissive or disabled", cfg.Policy.Mode)
	}
	if cfg.Policy.Dir == "" && cfg.Policy.Bundle.URL == "" && cfg.Policy.Mode != "disabled" {
		bad("policy.dir", "is required unless policy.bundle.url is set or policy.mode is disabled")
	}
	if b := cfg.Policy.Bundle; b.URL != "" {
		if u, err := url.Parse(b.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("policy.bundle.url", "%q is not an http:// or https:// URL", b.URL)
		}
		if b.MinDelay < 0 || b.MaxDelay < 0 || (b.MinDelay > 0 && b.MaxDelay > 0 && b.MaxDelay < b.MinDelay) {
			bad("policy.bundle.max_delay", "want 0 < min_delay <= max_delay")
		}
		if b.Timeout < 0 {
			bad("policy.bundle.timeout", "must not be negative")
		}
	}
	if cfg.Audit.Format != "json" && cfg.Audit.Format != "console" {
		bad("audit.format", "%q is not json or console", cfg.Audit.Format)
	}
	if dl := cfg.DecisionLog; dl.URL != "" {
		if u, err := url.Parse(dl.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("decision_log.url", "%q is not an http:// or https:// URL", dl.URL)
		}
	}
	if cfg.DecisionLog.BatchSize < 0 {
		bad("decision_log.batch_size", "must not be negative")
	}
	if cfg.DecisionLog.BufferSize < 0 {
		bad("decision_log.buffer_size", "must not be negative")
	}
	if cfg.DecisionLog.FlushInterval < 0 || cfg.DecisionLog.RetryMax < 0 {
		bad("decision_log", "durations must not be negative")
	}
	if cfg.Audit.QueueSize < 0 {
		bad("audit.queue_size", "must not be negative")
	}
	if cfg.Audit.BlockTimeout < 0 {
		bad("audit.block_timeout", "must not be negative")
	}
	if a := cfg.Admin.Listen; a != "" && a != "off" {
		if err := checkHostPort(a); err != nil {
			bad("admin.listen", "%v", err)
		}
	}
	if a := cfg.WebSocket.Listen; a != "" && a != "off" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("websocket.listen", "%q is not host:port or off", a)
		}
	}
	for _, o := range cfg.WebSocket.AllowedOrigins {
		if _, err := path.Match(o, ""); err != nil {
			bad("websocket.allowed_origins", "%q is not a valid pattern", o)
		}
	}
	if cfg.WebSocket.MaxFrameBytes < 0 || cfg.WebSocket.MaxBodyBytes < 0 || cfg.WebSocket.IdleTimeout < 0 || cfg.WebSocket.RequestTimeout < 0 {
		bad("websocket", "sizes and timeouts must not be negative")
	}
	if cfg.Peering.ID < 0 || cfg.Peering.ID > 127 {
		bad("peering.id", "must be 0 (off) or 1 to 127")
	}
	if cfg.Peering.ID > 0 && len(cfg.Peering.Peers) == 0 {
		bad("peering.peers", "is required with peering.id")
	}
	for _, id := range slices.Sorted(maps.Keys(cfg.Peering.Peers)) {
		if id < 1 || id > 127 {
			bad(fmt.Sprintf("peering.peers.%d", id), "a peer id is 1 to 127")
		} else if err := checkHostPort(cfg.Peering.Peers[id]); err != nil {
			bad(fmt.Sprintf("peering.peers.%d", id), "%v", err)
		}
	}
	validateConsole(cfg.Console, bad) // consolecmd.go
	if len(cfg.Logins) == 0 {
		bad("logins", "at least one login is required")
	}
	verifiers := map[string]bool{}
	for i, j := range cfg.JWT {
		key := fmt.Sprintf("jwt[%d]", i)
		keys := 0
		for _, s := range []string{j.HS256Secret, j.PublicKeyFile, j.JWKSFile} {
			if s != "" {
				keys++
			}
		}
		switch {
		case j.Name == "":
			bad(key+".name", "is required")
		case verifiers[j.Name]:
			bad(key+".name", "verifier %q appears twice", j.Name)
		case keys != 1:
			bad(key, "needs exactly one of hs256_secret, public_key_file and jwks_file")
		case j.HS256Secret != "" && len(j.HS256Secret) < 32:
			bad(key+".hs256_secret", "must be at least 32 bytes")
		}
		verifiers[j.Name] = true
	}
	seen := map[string]bool{}
	for i, l := range cfg.Logins {
		key := fmt.Sprintf("logins[%d]", i)
		switch {
		case l.Name == "":
			bad(key+".name", "is required")
		case seen[l.Name]:
			bad(key+".name", "login %q appears twice", l.Name)
		case l.JWT != "" && !verifiers[l.JWT]:
			bad(key+".jwt", "no jwt verifier named %q", l.JWT)
		case l.EndUserJWT != "" && !verifiers[l.EndUserJWT]:
			bad(key+".end_user_jwt", "no jwt verifier named %q", l.EndUserJWT)
		case l.JWT != "" && (l.Role != "" || len(l.Claims) > 0 || l.Password != "" || l.SCRAMVerifier != ""):
			bad(key, "a token login (jwt) takes its role and claims from the token: drop role, claims and password")
		case l.JWT != "":
			// A token login needs nothing else.
		case l.Role == "":
			bad(key+".role", "is required")
		case cfg.Auth.Method == "scram-sha-256" && l.Password == "" && l.SCRAMVerifier == "":
			bad(key, "needs password or scram_verifier")
		case l.Password != "" && l.SCRAMVerifier != "":
			bad(key, "has both password and scram_verifier; keep one")
		}
		if l.MaxConns < -1 {
			bad(key+".max_conns", "must be -1 (no limit), 0 (limits.max_conns_per_login) or more")
		}
		seen[l.Name] = true
	}
	return errors.Join(problems...)
}
