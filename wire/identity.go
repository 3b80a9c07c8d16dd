package wire

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/identity"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/pgbool"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/sqlscope"
	"github.com/jackc/pgx/v5/pgproto3"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// This file holds the proxy's identities from signed tokens:
//
//   - token logins: a login whose Login.Token is set authenticates with a
//     signed token sent as its password (AuthenticationCleartextPassword);
//   - per-transaction end users: a login whose Login.EndUserTokens is set may,
//     inside a transaction block, run
//
//     SET LOCAL dbal.token = '<token>'
//     SELECT set_config('dbal.token', '<token>' or $n, true)
//
//     and until the transaction ends (a ReadyForQuery 'I', or a COMMIT or
//     ROLLBACK the proxy forwards) the policies see the token's role and
//     claims, plans are cached under that principal, and audit records carry
//     the end user beside the login. The statement itself is forwarded, so the
//     client gets exactly PostgreSQL's answer (a SET tag, or set_config's row).
//
// The token never reaches a log or an audit record: the switch statement is
// audited under a fixed text, and errors carry the verifier's reason only.

// Values of Config.TokenTransport.
const (
	TokenOverTLS           = "tls"             // tokens only over TLS (the default)
	TokenOverTLSOrLoopback = "tls_or_loopback" // also plaintext from a loopback address
	TokenOverAny           = "any"             // also plaintext from anywhere
)

// CodeNoActiveTransaction is PostgreSQL's no_active_sql_transaction, for an
// end-user switch outside a transaction block.
const CodeNoActiveTransaction = "25P01"

// tokenSetting is the setting whose SET LOCAL switches the end user.
const tokenSetting = "dbal.token"

// The texts under which switches are audited, in place of the statement
// (which carries the token).
const (
	auditSetLocal  = "SET LOCAL dbal.token = $1"
	auditSetConfig = "SELECT set_config('dbal.token', $1, true)"
)

// endUser is an end user a login switched to, stamped on each run decided
// while it is in effect so that the run's audit records name it.
type endUser struct {
	role, userID, name string
}

// apply puts the end user into an audit record (nothing for nil).
func (e *endUser) apply(r *audit.Record) {
	if e == nil {
		return
	}
	r.Role, r.UserID, r.EndUser = e.role, e.userID, e.name
}

// identityState is a session's per-transaction end user. Only run's
// goroutine touches it.
type identityState struct {
	who *endUser // in effect now; nil when the login acts for itself
	// switched is set once the session has had an end user: from then on
	// prepared statements are decided again at Bind, for whoever is in
	// effect then.
	switched bool
}

// stampRun records on r who it is decided for. It runs on run's goroutine
// before the run is queued for the pump.
func (sess *session) stampRun(r *stmtRun) {
	if r != nil {
		r.who = sess.ident.who
	}
}

// tokenTransportOK refuses tokens over a connection the configuration does
// not trust with them.
func (sess *session) tokenTransportOK() *Error {
	switch sess.srv.cfg.TokenTransport {
	case TokenOverAny:
		return nil
	case TokenOverTLSOrLoopback:
		if sess.tls || isLoopback(sess.conn.RemoteAddr()) {
			return nil
		}
	default:
		if sess.tls {
			return nil
		}
	}
	return &Error{Code: CodeInvalidAuthorization, Message: "signed tokens are accepted only over TLS (connect with sslmode=require)"}
}

func isLoopback(a net.Addr) bool {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.IsLoopback()
	}
	_, ok := a.(*net.UnixAddr)
	return ok
}

// authenticateToken authenticates a token login: it asks for a password
// in clear text, verifies it as a token, and returns a Login with the
// token's role and claims.
func (sess *session) authenticateToken(login *Login) (*Login, error) {
	if e := sess.tokenTransportOK(); e != nil {
		e.Severity = "FATAL"
		return nil, e
	}
	if err := sess.sendStartupMsg(&pgproto3.AuthenticationCleartextPassword{}); err != nil {
		return nil, err
	}
	body, err := sess.readAuthMessage(identity.MaxTokenBytes + 1)
	if err != nil {
		return nil, err
	}
	var pm pgproto3.PasswordMessage
	if err := pm.Decode(body); err != nil {
		return nil, fatalf(CodeProtocolViolation, "invalid password message")
	}
	id, err := login.Token.Verify(pm.Password)
	if err != nil {
		return nil, fatalf(CodeInvalidPassword, "token authentication failed for user %q: %s", sess.user, tokenReason(err))
	}
	return &Login{Name: login.Name, Role: id.Role, Claims: id.Claims}, nil
}

// tokenReason is the safe reason of a verification error.
func tokenReason(err error) string {
	var ie *identity.Error
	if errors.As(err, &ie) {
		return ie.Reason
	}
	return "the token could not be verified"
}

// identityDecide is the first step of deciding a statement text. It ends a
// per-transaction end user whose transaction is over, and plans a statement
// that switches the end user itself (the policy does not see it): a plan
// with switchTo set, or a denial if the statement may not switch. It returns
// nil for every other statement.
func (sess *session) identityDecide(sql string) *plan.Plan {
	if sess.ident.who != nil && sess.txStatus.Load() == 'I' {
		sess.endIdentity()
	}
	if !containsFold(sql, "dbal") || !containsFold(sql, "token") {
		return nil // not about dbal.token: no parse here
	}
	tree, err := parser.ParseTree(sql)
	var de *parser.DepthError
	if errors.As(err, &de) && sess.decider != nil {
		// Too deep to tell whether it switches the end user: refused in
		// every mode, as a switch that may not happen is.
		v := sess.decider.Version()
		return &plan.Plan{Version: v, Statements: []plan.Statement{{Decision: audit.DecisionDeny, Reason: parser.DepthMessage, PolicyVersion: v}},
			Deny: &plan.Denial{Code: de.SQLState(), Message: parser.DepthMessage, Hint: parser.DepthHint}}
	}
	if err != nil {
		return nil // the planner reports the syntax error
	}
	var src *plan.TokenSource
	command, mentions, problem := "", false, ""
	for _, raw := range tree.Stmts {
		c, s, m, p := switchShape(raw.Stmt)
		if !m {
			continue
		}
		if mentions || len(tree.Stmts) > 1 {
			problem = "a statement that sets dbal.token must be sent on its own, not with other statements in one query string"
		}
		mentions, command, src = true, c, s
		if problem == "" {
			problem = p
		}
	}
	if !mentions {
		return nil
	}
	if command == "" {
		command = "SET"
	}
	if problem != "" {
		return sess.identityDenial(command, CodeFeatureNotSupported, problem,
			"switch the end user with SET LOCAL dbal.token = '<token>' or SELECT set_config('dbal.token', <token>, true), inside a transaction")
	}
	login, _ := sess.srv.cfg.Logins.Login(sess.principal.User)
	if login == nil || login.EndUserTokens == nil {
		return sess.identityDenial(command, CodeInsufficientPriv,
			"login \""+sess.principal.User+"\" may not switch the end user with dbal.token", "")
	}
	q := auditSetLocal
	if command == "SELECT" {
		q = auditSetConfig
	}
	return &plan.Plan{
		SQL: switchText(command, src, sql), Version: sess.decider.Version(), SwitchTo: src,
		Statements: []plan.Statement{{
			Command: command, Query: q, QueryRaw: q, Decision: audit.DecisionAllow,
			Reason: "end user switched for this transaction", PolicyVersion: sess.decider.Version(),
		}},
	}
}

// switchText is what the backend receives for an accepted switch: the
// statement with its token literal unsigned (see unsignedToken), so that the
// token, a bearer credential, never stands in the backend's query text,
// where pg_stat_activity, pg_prepared_statements and statement logging show
// it to others. A token passed as a Bind parameter is not in the text.
func switchText(command string, src *plan.TokenSource, sql string) string {
	if src == nil || src.Param > 0 {
		return sql
	}
	lit := "'" + strings.ReplaceAll(unsignedToken(src.Literal), "'", "''") + "'"
	if command == "SELECT" {
		return "SELECT set_config('dbal.token', " + lit + ", true)"
	}
	return "SET LOCAL dbal.token = " + lit
}

// unsignedToken is a JWT without its signature ("header.payload."): the
// claims stay readable for current_setting('dbal.token') in the database,
// but it is no longer a credential (the proxy refuses unsigned tokens). Any
// other text becomes "".
func unsignedToken(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	return parts[0] + "." + parts[1] + "."
}

// identityDenial is a plan that refuses an end-user switch with code.
func (sess *session) identityDenial(command, code, msg, hint string) *plan.Plan {
	q := auditSetLocal
	if command == "SELECT" {
		q = auditSetConfig
	}
	return sess.identityRefusal(command, q, code, msg, hint)
}

// identityRefusal is a plan that refuses a statement about the end user,
// audited as query.
func (sess *session) identityRefusal(command, query, code, msg, hint string) *plan.Plan {
	v := sess.decider.Version()
	detail := "statement: " + command
	if query == auditSetLocal || query == auditSetConfig {
		detail += " " + tokenSetting
	}
	return &plan.Plan{
		Version: v,
		Statements: []plan.Statement{{
			Command: command, Query: query, QueryRaw: query, Decision: audit.DecisionDeny, Reason: msg, PolicyVersion: v,
		}},
		Deny: &plan.Denial{Code: code, Message: msg, Detail: detail, Hint: hint},
	}
}

// identityQuery finishes a simple Query's plan: it performs an end-user
// switch (or refuses it), and ends the end user after a statement that ends
// the transaction.
func (sess *session) identityQuery(pl *plan.Plan) *plan.Plan {
	if pl.SwitchTo != nil {
		return sess.switchEndUser(pl, pl.SwitchTo.Literal)
	}
	if sess.ident.who != nil && pl.Deny == nil {
		for i := range pl.Statements {
			if !endsTransaction(&pl.Statements[i]) {
				continue
			}
			if i != len(pl.Statements)-1 {
				return sess.identityRefusal(pl.Statements[i].Command, pl.Statements[i].Query, CodeFeatureNotSupported,
					"while an end user is in effect, COMMIT or ROLLBACK must be the last statement of its query string", "")
			}
			sess.endIdentity()
		}
	}
	return pl
}

// endsTransaction reports whether a planned statement ends the transaction
// block (COMMIT, ROLLBACK but not ROLLBACK TO SAVEPOINT, PREPARE
// TRANSACTION).
func endsTransaction(ps *plan.Statement) bool {
	switch ps.Command {
	case "COMMIT", "PREPARE TRANSACTION":
		return true
	case "ROLLBACK":
		tree, err := parser.ParseTree(ps.QueryRaw)
		if err != nil || len(tree.Stmts) != 1 {
			return true
		}
		ts := tree.Stmts[0].Stmt.GetTransactionStmt()
		return ts == nil || ts.Kind != pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO
	}
	return false
}

// identityBind performs the end-user switch of a Bind to a switch statement
// (plan.SwitchTo set), with the token from the statement's literal or from
// the Bind's parameter. It returns plan, or the denial to send instead.
func (sess *session) identityBind(n int, pl *plan.Plan) *plan.Plan {
	if pl.SwitchTo.Param == 0 {
		return sess.identityBindBody(nil, pl)
	}
	b, err := sess.cr.r.Peek(5 + n)
	if err != nil {
		return sess.identityDenial("SELECT", CodeInvalidPassword, "invalid end-user token: the Bind message is too long", "")
	}
	return sess.identityBindBody(b[5:], pl)
}

// identityBindBody is identityBind for a Bind whose body (without type and
// length) was already read.
func (sess *session) identityBindBody(body []byte, pl *plan.Plan) *plan.Plan {
	token := pl.SwitchTo.Literal
	if p := pl.SwitchTo.Param; p > 0 {
		v, ok := bindParam(body, p)
		if !ok {
			return sess.identityDenial("SELECT", CodeInvalidPassword, "invalid end-user token: no token in the bind parameters", "")
		}
		token = v
	}
	return sess.switchEndUser(pl, token)
}

// bindParam returns the text of parameter number p (1-based) of a Bind
// body, false if it is missing or NULL.
func bindParam(body []byte, p int) (string, bool) {
	_, rest, ok := cstring(body) // portal
	if !ok {
		return "", false
	}
	_, rest, ok = cstring(rest) // statement
	if !ok || len(rest) < 2 {
		return "", false
	}
	nf := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < 2*nf+2 {
		return "", false
	}
	rest = rest[2*nf:]
	np := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if p > np {
		return "", false
	}
	for i := 1; i <= np; i++ {
		if len(rest) < 4 {
			return "", false
		}
		l := int(int32(binary.BigEndian.Uint32(rest)))
		rest = rest[4:]
		if l < 0 {
			if i == p {
				return "", false
			}
			continue
		}
		if len(rest) < l {
			return "", false
		}
		if i == p {
			return string(rest[:l]), true
		}
		rest = rest[l:]
	}
	return "", false
}

// switchEndUser verifies token and makes its end user the session's
// principal until the transaction ends. It returns plan, or a denial.
func (sess *session) switchEndUser(pl *plan.Plan, token string) *plan.Plan {
	command := pl.Statements[0].Command
	switch sess.txStatus.Load() {
	case 'I':
		return sess.identityDenial(command, CodeNoActiveTransaction,
			"dbal.token can only be set inside a transaction block", "send BEGIN first, and SET LOCAL dbal.token after it")
	case 'E':
		// The backend refuses the statement itself (25P02), as it would
		// without the proxy; nothing changes.
		return pl
	}
	if e := sess.tokenTransportOK(); e != nil {
		return sess.identityDenial(command, e.Code, e.Message, "")
	}
	login, _ := sess.srv.cfg.Logins.Login(sess.principal.User)
	if login == nil || login.EndUserTokens == nil {
		return sess.identityDenial(command, CodeInsufficientPriv,
			"login \""+sess.principal.User+"\" may not switch the end user with dbal.token", "")
	}
	id, err := login.EndUserTokens.Verify(token)
	if err != nil {
		sess.log.Info().Str("reason", tokenReason(err)).Msg("end-user token refused")
		return sess.identityDenial(command, CodeInvalidPassword, "invalid end-user token: "+tokenReason(err), "")
	}
	name := id.Subject
	if name == "" {
		name = id.UserID
	}
	if name == "" {
		name = "(no sub)"
	}
	sess.ident.who = &endUser{role: id.Role, userID: id.UserID, name: name}
	sess.ident.switched = true
	// plans are cached per effective principal
	sess.info.SetPrincipal(plan.Principal{User: sess.principal.User, Role: id.Role, Claims: id.Claims})
	sess.log.Debug().Str("end_user", name).Str("role", id.Role).Msg("end user in effect for this transaction")
	return pl
}

// endIdentity gives the session back to its login.
func (sess *session) endIdentity() {
	sess.ident.who = nil
	sess.info.SetPrincipal(sess.principal)
}

// switchShape looks at one statement for dbal.token. mentions says whether
// it touches the setting at all; if it does, problem is empty for an
// accepted switch (whose command and token source are returned) and says
// what is wrong otherwise.
func switchShape(stmt *pg_query.Node) (command string, src *plan.TokenSource, mentions bool, problem string) {
	if vs := stmt.GetVariableSetStmt(); vs != nil {
		if !strings.EqualFold(vs.Name, tokenSetting) {
			return "", nil, false, ""
		}
		if vs.Kind != pg_query.VariableSetKind_VAR_SET_VALUE || !vs.IsLocal {
			return "SET", nil, true, "dbal.token can only be set with SET LOCAL (for one transaction)"
		}
		if len(vs.Args) != 1 || !isStringConst(vs.Args[0]) {
			return "SET", nil, true, "SET LOCAL dbal.token needs one string literal, the token"
		}
		return "SET", &plan.TokenSource{Literal: vs.Args[0].GetAConst().GetSval().GetSval()}, true, ""
	}
	var calls []*pg_query.FuncCall
	sqlscope.Walk(stmt, func(m proto.Message) bool {
		fc, ok := m.(*pg_query.FuncCall)
		if !ok {
			return true
		}
		if isSetConfig(fc) && len(fc.Args) >= 1 && isStringConst(fc.Args[0]) &&
			strings.EqualFold(fc.Args[0].GetAConst().GetSval().GetSval(), tokenSetting) {
			calls = append(calls, fc)
		}
		return true
	})
	if len(calls) == 0 {
		return "", nil, false, ""
	}
	const shape = "set_config('dbal.token', ...) must be the whole statement: SELECT set_config('dbal.token', <token or $n>, true)"
	sel := stmt.GetSelectStmt()
	if len(calls) != 1 || sel == nil || len(sel.TargetList) != 1 || !bareSelect(sel) {
		return "SELECT", nil, true, shape
	}
	rt := sel.TargetList[0].GetResTarget()
	fc := rt.GetVal().GetFuncCall()
	if rt == nil || fc == nil || fc != calls[0] || len(fc.Args) != 3 || len(rt.Indirection) > 0 || fc.AggFilter != nil ||
		fc.Over != nil || len(fc.AggOrder) > 0 || fc.AggStar || fc.AggDistinct || fc.FuncVariadic {
		return "SELECT", nil, true, shape
	}
	if !isTrue(uncast(fc.Args[2])) {
		return "SELECT", nil, true, "set_config('dbal.token', ...) must be local to the transaction: pass true as its third argument"
	}
	switch v := uncast(fc.Args[1]); {
	case isStringConst(v):
		return "SELECT", &plan.TokenSource{Literal: v.GetAConst().GetSval().GetSval()}, true, ""
	case v.GetParamRef() != nil && v.GetParamRef().Number > 0:
		return "SELECT", &plan.TokenSource{Param: int(v.GetParamRef().Number)}, true, ""
	}
	return "SELECT", nil, true, shape
}

// bareSelect reports whether sel is a plain SELECT of its target list.
func bareSelect(sel *pg_query.SelectStmt) bool {
	return len(sel.DistinctClause) == 0 && sel.IntoClause == nil && len(sel.FromClause) == 0 &&
		sel.WhereClause == nil && len(sel.GroupClause) == 0 && sel.HavingClause == nil &&
		len(sel.WindowClause) == 0 && len(sel.ValuesLists) == 0 && len(sel.SortClause) == 0 &&
		sel.LimitOffset == nil && sel.LimitCount == nil && len(sel.LockingClause) == 0 &&
		sel.WithClause == nil && sel.Op == pg_query.SetOperation_SETOP_NONE
}

func isSetConfig(fc *pg_query.FuncCall) bool {
	names := make([]string, 0, len(fc.Funcname))
	for _, n := range fc.Funcname {
		names = append(names, strings.ToLower(n.GetString_().GetSval()))
	}
	switch len(names) {
	case 1:
		return names[0] == "set_config"
	case 2:
		return names[0] == "pg_catalog" && names[1] == "set_config"
	}
	return false
}

// uncast returns the operand of a cast ($1::text, 'true'::boolean), or n.
func uncast(n *pg_query.Node) *pg_query.Node {
	for n.GetTypeCast() != nil && n.GetTypeCast().Arg != nil {
		n = n.GetTypeCast().Arg
	}
	return n
}

func isStringConst(n *pg_query.Node) bool {
	c := n.GetAConst()
	return c != nil && !c.Isnull && c.GetSval() != nil
}

// isTrue reports whether n is the constant true ('true', 't', 'on' and
// 'yes' as strings, as PostgreSQL reads them for a boolean).
func isTrue(n *pg_query.Node) bool {
	c := n.GetAConst()
	if c == nil || c.Isnull {
		return false
	}
	if b := c.GetBoolval(); b != nil {
		return b.Boolval
	}
	if s := c.GetSval(); s != nil {
		return pgbool.IsTrue(s.Sval)
	}
	return false
}
