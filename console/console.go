// Package console is dbalproxy's admin console: operators connect with psql
// to a special database (dbalproxy by default) with a login whose role the
// console admits and run PgBouncer-style commands (SHOW POOLS, SHOW
// CLIENTS, SHOW SERVERS, SHOW STATS, SHOW CONFIG, SHOW POLICY, SHOW HELP,
// RELOAD, PAUSE, RESUME, KILL, SHUTDOWN) over the simple query protocol.
//
// The console works on an authenticated client connection handed over by
// the protocol server (a status.ConsoleConn, through the server's
// wire.Console hook); everything it shows or changes is behind small
// interfaces and functions in Config, so that it depends on no running
// component directly. It does not import package wire: the value types it
// shares with the server are in package status, and cmd/dbalproxy connects
// the two.
package console

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/status"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

// DefaultDatabase is the console's database name unless Config says
// otherwise.
const DefaultDatabase = "dbalproxy"

// DefaultAdminRoles are the roles that may use every command unless Config
// says otherwise: the top of the role matrix (user, admin, god, supergod).
// The console can kill sessions, pause traffic and stop the proxy, which is
// more than the application's own admin role should do.
var DefaultAdminRoles = []string{"supergod"}

// Sessions lists and kills client sessions; *wire.Server implements it.
type Sessions interface {
	Sessions() []status.Session
	KillSession(id string) bool
}

// Pools reports the backend pool per database; *pool.Pool implements it.
type Pools interface {
	DatabaseStats() []pool.DatabaseStats
}

// PolicyStatus is what SHOW POLICY shows.
type PolicyStatus struct {
	Mode       string   // strict, permissive or disabled
	Version    string   // the loaded set's version ("" when none)
	Dir        string   // the policy directory
	Files      []string // the files of the set, relative to Dir
	LastReload time.Time
	// LastResult is "ok" or why the last reload was refused ("" before
	// any reload).
	LastResult string
}

// Setting is one row of SHOW CONFIG.
type Setting struct {
	Key, Value, Default string
	// Changeable: a reload (RELOAD, SIGHUP) applies a new value; otherwise
	// it takes a restart.
	Changeable bool
}

// Config configures a Console. Nil functions make their commands answer
// that the information is not available.
type Config struct {
	// Database is the database name that selects the console; "" means
	// DefaultDatabase.
	Database string
	// AdminRoles may use every command; nil means DefaultAdminRoles.
	AdminRoles []string
	// StatsRoles may use the SHOW commands only (PgBouncer's stats_users).
	StatsRoles []string
	// Sessions lists and kills sessions (SHOW CLIENTS, SHOW SERVERS, KILL).
	Sessions Sessions
	// Pools reports the backend pools (SHOW POOLS).
	Pools Pools
	// PoolMode is the pooling mode, session or transaction (SHOW POOLS).
	PoolMode string
	// BackendUser and BackendAddr (host:port) describe the proxy's backend
	// connections (SHOW SERVERS, SHOW POOLS).
	BackendUser, BackendAddr string
	// Gate pauses and resumes databases (PAUSE, RESUME); the server's
	// backends must be wrapped with Gate.Backends.
	Gate *Gate
	// Stats counts statements (SHOW STATS); put Stats.Auditor in the
	// server's audit path.
	Stats *Stats
	// Policy reports the policy set (SHOW POLICY).
	Policy func() PolicyStatus
	// Settings are the configuration in force (SHOW CONFIG), secrets
	// already hidden.
	Settings func() []Setting
	// Reload reloads the configuration, the policies and reopens the audit
	// file (RELOAD), as SIGHUP does.
	Reload func() error
	// Shutdown starts the graceful drain, as SIGTERM does (SHUTDOWN). It
	// must not wait for the drain.
	Shutdown func()
	// Version is the proxy's version (SHOW VERSION, server_version).
	Version string
	// Logger receives one line per command that changes something.
	Logger zerolog.Logger
}

// Console serves console sessions; it implements wire.Console.
type Console struct {
	cfg Config
}

// New returns a console for cfg.
func New(cfg Config) *Console {
	if cfg.Database == "" {
		cfg.Database = DefaultDatabase
	}
	if cfg.AdminRoles == nil {
		cfg.AdminRoles = DefaultAdminRoles
	}
	return &Console{cfg: cfg}
}

// Database implements wire.Console.
func (c *Console) Database() string { return c.cfg.Database }

// Admits implements wire.Console: admin and stats roles may log in.
func (c *Console) Admits(role string) bool {
	return slices.Contains(c.cfg.AdminRoles, role) || slices.Contains(c.cfg.StatsRoles, role)
}

// session is one console client.
type session struct {
	c     *Console
	conn  *status.ConsoleConn
	be    *pgproto3.Backend
	admin bool // may change things, not only SHOW
	log   zerolog.Logger
}

// Serve implements wire.Console.
func (c *Console) Serve(conn *status.ConsoleConn) {
	s := &session{
		c: c, conn: conn, be: conn.Backend, admin: slices.Contains(c.cfg.AdminRoles, conn.Session.Role),
		log: c.cfg.Logger.With().Str("session_id", conn.Session.ID).Str("user", conn.Session.User).Logger(),
	}
	s.greet()
	if err := s.be.Flush(); err != nil {
		return
	}
	s.loop()
}

// greet sends what a server sends after authentication.
func (s *session) greet() {
	s.be.Send(&pgproto3.AuthenticationOk{})
	params := [][2]string{
		{"server_version", serverVersion(s.c.cfg.Version)},
		{"server_encoding", "UTF8"},
		{"client_encoding", "UTF8"},
		{"DateStyle", "ISO, MDY"},
		{"integer_datetimes", "on"},
		{"standard_conforming_strings", "on"},
		{"TimeZone", "UTC"},
		{"is_superuser", "off"},
		{"session_authorization", s.conn.Session.User},
		{"application_name", s.conn.Params["application_name"]},
	}
	for _, p := range params {
		s.be.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
}

// serverVersion is PgBouncer's convention, "<version>/<name>", with a
// version libpq can read as a number.
func serverVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	if v == "" || v[0] < '0' || v[0] > '9' {
		v = "0.0.0"
	}
	return v + "/dbalproxy"
}

// loop answers the client's messages until it leaves.
func (s *session) loop() {
	skipping := false // extended protocol: errors sent, waiting for Sync
	for {
		msg, err := s.be.Receive()
		if err != nil {
			if s.conn.Killed != nil && s.conn.Killed() && errors.Is(err, os.ErrDeadlineExceeded) {
				_ = s.conn.Conn.SetWriteDeadline(time.Now().Add(time.Second))
				s.be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01",
					Message: "terminating connection due to administrator command"})
				_ = s.be.Flush()
			} else if !isClosed(err) {
				s.be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08P01",
					Message: "invalid message: " + err.Error()})
				_ = s.be.Flush()
			}
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			s.query(m.String)
			s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Terminate:
			return
		case *pgproto3.Sync:
			skipping = false
			s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Parse, *pgproto3.Bind, *pgproto3.Describe, *pgproto3.Execute, *pgproto3.Close, *pgproto3.Flush:
			if !skipping {
				skipping = true
				s.sendError("0A000", "the admin console supports only the simple query protocol",
					"with pgx use default_query_exec_mode=simple_protocol; psql works as it is")
			}
		default:
			s.be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08P01",
				Message: fmt.Sprintf("unexpected message %T on the admin console", msg)})
			_ = s.be.Flush()
			return
		}
		if err := s.be.Flush(); err != nil {
			return
		}
	}
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// consoleError is a command's failure, sent as an ErrorResponse.
type consoleError struct {
	code, msg, hint string
}

func (e *consoleError) Error() string { return e.msg }

func errorf(code, format string, args ...any) *consoleError {
	return &consoleError{code: code, msg: fmt.Sprintf(format, args...)}
}

func (s *session) sendError(code, msg, hint string) {
	s.be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg, Hint: hint})
}

// query runs each command of a simple query in turn and stops at the first
// error, as PostgreSQL does.
func (s *session) query(text string) {
	cmds := splitCommands(text)
	if len(cmds) == 0 {
		s.be.Send(&pgproto3.EmptyQueryResponse{})
		return
	}
	for _, cmd := range cmds {
		if err := s.run(cmd); err != nil {
			var ce *consoleError
			if !errors.As(err, &ce) {
				ce = &consoleError{code: "XX000", msg: err.Error()}
			}
			s.sendError(ce.code, ce.msg, ce.hint)
			return
		}
	}
}

// splitCommands splits a query at semicolons outside quotes and drops
// empty commands and comments.
func splitCommands(text string) [][]string {
	var out [][]string
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	endWord := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(text); i++ {
		ch := text[i]
		switch {
		case quoted:
			if ch == '"' {
				if i+1 < len(text) && text[i+1] == '"' {
					cur.WriteByte('"')
					i++
				} else {
					quoted = false
				}
			} else {
				cur.WriteByte(ch)
			}
		case ch == '"':
			quoted, inWord = true, true
			cur.WriteByte(0) // marks a quoted word: not case-folded
		case ch == '-' && i+1 < len(text) && text[i+1] == '-':
			endWord()
			for i < len(text) && text[i] != '\n' {
				i++
			}
		case ch == ';':
			endWord()
			if len(words) > 0 {
				out = append(out, words)
			}
			words = nil
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			endWord()
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	endWord()
	if len(words) > 0 {
		out = append(out, words)
	}
	return out
}

// ident is a word as an identifier: a quoted word as written, else
// lower-cased, as PostgreSQL folds names.
func ident(w string) string {
	if strings.HasPrefix(w, "\x00") {
		return w[1:]
	}
	return strings.ToLower(w)
}

func keyword(w string) string {
	if strings.HasPrefix(w, "\x00") {
		return w // a quoted word is never a keyword
	}
	return strings.ToUpper(w)
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// run executes one command.
func (s *session) run(words []string) error {
	verb := keyword(words[0])
	args := words[1:]
	if verb == "SHOW" {
		if len(args) != 1 {
			return &consoleError{code: "42601", msg: "SHOW takes one word, e.g. SHOW POOLS", hint: "SHOW HELP lists the commands"}
		}
		return s.show(keyword(args[0]))
	}
	known := map[string]bool{"RELOAD": true, "PAUSE": true, "RESUME": true, "KILL": true, "KILL_CLIENT": true, "SHUTDOWN": true}
	if !known[verb] {
		return &consoleError{code: "42601", msg: fmt.Sprintf("unrecognized admin console command %q", strings.TrimPrefix(words[0], "\x00")),
			hint: "the admin console runs no SQL; SHOW HELP lists its commands"}
	}
	if !s.admin {
		return errorf("42501", "role %q may only use SHOW commands on the admin console", s.conn.Session.Role)
	}
	s.log.Info().Str("command", strings.ReplaceAll(strings.Join(words, " "), "\x00", "")).Msg("admin console command")
	switch verb {
	case "RELOAD":
		if len(args) != 0 {
			return errorf("42601", "RELOAD takes no argument")
		}
		return s.reload()
	case "PAUSE", "RESUME":
		db := ""
		switch len(args) {
		case 0:
		case 1:
			db = ident(args[0])
		default:
			return errorf("42601", "%s takes at most one database name", verb)
		}
		if verb == "PAUSE" {
			return s.pause(db)
		}
		return s.resume(db)
	case "KILL", "KILL_CLIENT":
		if len(args) != 1 {
			return errorf("42601", "%s takes one client id (the id column of SHOW CLIENTS)", verb)
		}
		return s.kill(ident(args[0]))
	case "SHUTDOWN":
		if len(args) != 0 {
			return errorf("42601", "SHUTDOWN takes no argument")
		}
		return s.shutdown()
	}
	return nil
}

const help = `SHOW POOLS|CLIENTS|SERVERS|STATS|CONFIG|POLICY|VERSION|HELP
RELOAD                 configuration, policies, audit file (as SIGHUP)
PAUSE [db]             new transactions wait until RESUME
RESUME [db]
KILL <id>              close a client session (id from SHOW CLIENTS); also KILL_CLIENT <id>
SHUTDOWN               drain and exit (as SIGTERM)`

// column types of result sets.
const (
	typeText = 25
	typeInt8 = 20
)

type col struct {
	name string
	oid  uint32
}

func textCols(names ...string) []col {
	out := make([]col, len(names))
	for i, n := range names {
		out[i] = col{n, typeText}
	}
	return out
}

// sendRows sends a result set: each value is a string, an integer, a bool
// (sent as 0 or 1, as PgBouncer does) or nil (NULL).
func (s *session) sendRows(cols []col, rows [][]any) {
	fields := make([]pgproto3.FieldDescription, len(cols))
	for i, c := range cols {
		size := int16(-1)
		if c.oid == typeInt8 {
			size = 8
		}
		fields[i] = pgproto3.FieldDescription{Name: []byte(c.name), DataTypeOID: c.oid, DataTypeSize: size, TypeModifier: -1}
	}
	s.be.Send(&pgproto3.RowDescription{Fields: fields})
	for _, r := range rows {
		vals := make([][]byte, len(r))
		for i, v := range r {
			switch v := v.(type) {
			case nil:
				vals[i] = nil
			case string:
				vals[i] = []byte(v)
			case int:
				vals[i] = strconv.AppendInt(nil, int64(v), 10)
			case int64:
				vals[i] = strconv.AppendInt(nil, v, 10)
			case uint64:
				vals[i] = strconv.AppendUint(nil, v, 10)
			case bool:
				vals[i] = []byte("0")
				if v {
					vals[i] = []byte("1")
				}
			default:
				vals[i] = []byte(fmt.Sprint(v))
			}
		}
		s.be.Send(&pgproto3.DataRow{Values: vals})
	}
	s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SHOW")})
}

func (s *session) show(what string) error {
	cfg := &s.c.cfg
	switch what {
	case "HELP":
		s.be.Send(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000",
			Message: "Console usage", Detail: help})
		s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SHOW")})
	case "VERSION":
		s.sendRows(textCols("version"), [][]any{{"dbalproxy " + cfg.Version}})
	case "POOLS":
		s.showPools()
	case "CLIENTS":
		s.showClients()
	case "SERVERS":
		s.showServers()
	case "STATS":
		s.showStats()
	case "CONFIG":
		if cfg.Settings == nil {
			return errorf("55000", "the configuration is not available")
		}
		var rows [][]any
		for _, st := range cfg.Settings() {
			ch := "no"
			if st.Changeable {
				ch = "yes"
			}
			rows = append(rows, []any{st.Key, st.Value, st.Default, ch})
		}
		s.sendRows(textCols("key", "value", "default", "changeable"), rows)
	case "POLICY":
		if cfg.Policy == nil {
			return errorf("55000", "the policy status is not available")
		}
		p := cfg.Policy()
		var last, result any
		if !p.LastReload.IsZero() {
			last = formatTime(p.LastReload)
		}
		if p.LastResult != "" {
			result = p.LastResult
		}
		s.sendRows(textCols("mode", "version", "dir", "files", "last_reload", "last_reload_result"),
			[][]any{{p.Mode, p.Version, p.Dir, strings.Join(p.Files, ","), last, result}})
	default:
		return &consoleError{code: "42704", msg: fmt.Sprintf("unrecognized SHOW target %q", strings.ToLower(strings.TrimPrefix(what, "\x00"))),
			hint: "SHOW HELP lists the commands"}
	}
	return nil
}

func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func (s *session) sessions() []status.Session {
	if s.c.cfg.Sessions == nil {
		return nil
	}
	return s.c.cfg.Sessions.Sessions()
}

// showPools is PgBouncer's SHOW POOLS, one row per database (the proxy
// pools per database, with its own backend login), and a paused column.
func (s *session) showPools() {
	cfg := &s.c.cfg
	type row struct {
		clients int
		st      pool.DatabaseStats
	}
	dbs := map[string]*row{}
	get := func(db string) *row {
		if dbs[db] == nil {
			dbs[db] = &row{}
		}
		return dbs[db]
	}
	if cfg.Pools != nil {
		for _, st := range cfg.Pools.DatabaseStats() {
			get(st.Database).st = st
		}
	}
	for _, ss := range s.sessions() {
		if !ss.Console {
			get(ss.Database).clients++
		}
	}
	names := make([]string, 0, len(dbs))
	for n := range dbs {
		names = append(names, n)
	}
	slices.Sort(names)
	cols := []col{{"database", typeText}, {"user", typeText}}
	for _, n := range []string{"cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active",
		"sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us"} {
		cols = append(cols, col{n, typeInt8})
	}
	cols = append(cols, col{"pool_mode", typeText}, col{"paused", typeInt8})
	var rows [][]any
	for _, n := range names {
		r := dbs[n]
		waiting := r.st.Waiting
		var maxwait time.Duration
		paused := false
		if cfg.Gate != nil {
			w, oldest := cfg.Gate.Waiting(n)
			waiting += w
			maxwait = oldest
			paused = cfg.Gate.Paused(n) || cfg.Gate.Paused("")
		}
		rows = append(rows, []any{n, cfg.BackendUser, max(r.clients-waiting, 0), waiting, 0, 0, r.st.InUse, 0, 0, r.st.Idle, 0, 0, 0,
			int64(maxwait / time.Second), int64(maxwait%time.Second) / 1000, cfg.PoolMode, paused})
	}
	s.sendRows(cols, rows)
}

// showClients is PgBouncer's SHOW CLIENTS with the columns that apply, and
// the login's role, its transaction status and the backend it holds.
func (s *session) showClients() {
	cols := textCols("type", "user", "role", "database", "state", "addr")
	cols = append(cols, col{"port", typeInt8})
	cols = append(cols, textCols("local_addr")...)
	cols = append(cols, col{"local_port", typeInt8})
	cols = append(cols, textCols("connect_time", "tls", "application_name", "id", "tx_status")...)
	cols = append(cols, col{"server_pid", typeInt8})
	var rows [][]any
	for _, ss := range s.sessions() {
		state := "idle"
		if ss.BackendPID != 0 || ss.Console || ss.TxStatus != 'I' {
			state = "active"
		}
		host, port := splitAddr(ss.ClientAddr)
		lhost, lport := splitAddr(ss.LocalAddr)
		tls := ""
		if ss.TLS {
			tls = "TLS"
		}
		tx := map[byte]string{'I': "idle", 'T': "in transaction", 'E': "in failed transaction"}[ss.TxStatus]
		var pid any
		if ss.BackendPID != 0 {
			pid = int64(ss.BackendPID)
		}
		rows = append(rows, []any{"C", ss.User, ss.Role, ss.Database, state, host, port, lhost, lport,
			formatTime(ss.Connected), tls, ss.ApplicationName, ss.ID, tx, pid})
	}
	s.sendRows(cols, rows)
}

// showServers is PgBouncer's SHOW SERVERS for the backend connections
// linked to a client now (idle ones are counted in SHOW POOLS, sv_idle).
func (s *session) showServers() {
	cfg := &s.c.cfg
	host, port := splitAddr(cfg.BackendAddr)
	cols := textCols("type", "user", "database", "state", "addr")
	cols = append(cols, col{"port", typeInt8}, col{"link", typeText}, col{"remote_pid", typeInt8}, col{"application_name", typeText})
	var rows [][]any
	for _, ss := range s.sessions() {
		if ss.BackendPID == 0 {
			continue
		}
		rows = append(rows, []any{"S", cfg.BackendUser, ss.Database, "active", host, port, ss.ID, int64(ss.BackendPID), ss.ApplicationName})
	}
	s.sendRows(cols, rows)
}

// showStats is SHOW STATS with the totals the proxy keeps (times in
// microseconds, as PgBouncer's).
func (s *session) showStats() {
	cols := []col{{"database", typeText}}
	for _, n := range []string{"total_query_count", "total_query_time", "total_denied_count", "total_failed_count",
		"total_login_count", "total_login_failed_count", "avg_query_time"} {
		cols = append(cols, col{n, typeInt8})
	}
	var rows [][]any
	if s.c.cfg.Stats != nil {
		for _, d := range s.c.cfg.Stats.Snapshot() {
			if d.Database == s.c.cfg.Database {
				continue
			}
			avg := int64(0)
			if d.Queries > 0 {
				avg = d.QueryTime.Microseconds() / int64(d.Queries)
			}
			rows = append(rows, []any{d.Database, d.Queries, d.QueryTime.Microseconds(), d.Denied, d.Failed,
				d.Logins, d.LoginFailures, avg})
		}
	}
	s.sendRows(cols, rows)
}

func splitAddr(a string) (host any, port any) {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return a, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return h, nil
	}
	return h, n
}

func (s *session) complete(tag string) {
	s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

func (s *session) reload() error {
	if s.c.cfg.Reload == nil {
		return errorf("55000", "this proxy has no configuration file to reload")
	}
	if err := s.c.cfg.Reload(); err != nil {
		return errorf("F0000", "reload refused; the running configuration stays: %v", err)
	}
	s.complete("RELOAD")
	return nil
}

// pausePoll is how often PAUSE looks whether the database's backend
// connections were all given back.
const pausePoll = 20 * time.Millisecond

// pause pauses db (or everything) and returns once no backend connection
// of it is in use, as PgBouncer's PAUSE: in transaction pooling when the
// running transactions ended, in session pooling when their clients left.
func (s *session) pause(db string) error {
	g := s.c.cfg.Gate
	if g == nil {
		return errorf("55000", "PAUSE is not available")
	}
	g.Pause(db)
	for {
		busy := 0
		if s.c.cfg.Pools != nil {
			for _, st := range s.c.cfg.Pools.DatabaseStats() {
				if db == "" || st.Database == db {
					busy += st.InUse
				}
			}
		}
		if busy == 0 {
			break
		}
		if !g.Paused(db) {
			return errorf("57014", "PAUSE was ended by RESUME before the connections in use were given back")
		}
		if s.conn.Killed != nil && s.conn.Killed() {
			return errorf("57P01", "terminating connection due to administrator command")
		}
		time.Sleep(pausePoll)
	}
	s.complete("PAUSE")
	return nil
}

func (s *session) resume(db string) error {
	g := s.c.cfg.Gate
	if g == nil {
		return errorf("55000", "RESUME is not available")
	}
	if err := g.Resume(db); err != nil {
		return errorf("55000", "%v", err)
	}
	s.complete("RESUME")
	return nil
}

func (s *session) kill(id string) error {
	if s.c.cfg.Sessions == nil {
		return errorf("55000", "KILL is not available")
	}
	if !s.c.cfg.Sessions.KillSession(id) {
		return errorf("42704", "no client with id %s (see SHOW CLIENTS)", id)
	}
	s.complete("KILL")
	return nil
}

func (s *session) shutdown() error {
	if s.c.cfg.Shutdown == nil {
		return errorf("55000", "SHUTDOWN is not available")
	}
	s.complete("SHUTDOWN")
	s.c.cfg.Shutdown()
	return nil
}
