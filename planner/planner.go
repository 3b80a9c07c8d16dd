package planner

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/catalog"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/plan"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/rs/zerolog"
)

// PolicyEngine is what the planner needs of the policy layer;
// *policy.Engine implements it.
type PolicyEngine interface {
	Decide(ctx context.Context, in *decision.Input) (decision.Decision, error)
	Version() string
	Mode() decision.Mode
	// InputUse says what the policy set in force reads of its input, so
	// that decisions can be memoized by the fields it reads (memo.go); ok
	// false (nothing is evaluated, or the engine cannot tell) memoizes
	// nothing.
	InputUse() (use *decision.InputUse, ok bool)
}

// StatementParser is what the planner needs of the parser; *parser.Parser
// implements it.
type StatementParser interface {
	Parse(sql string) (*parser.Result, error)
	// ParseNormalized is Parse with Normalize(sql) known (from the shape
	// lookup), so it is not computed again.
	ParseNormalized(sql, normalized string) (*parser.Result, error)
}

// Rewriter applies a decision's row filters and column rules to a statement;
// *rewrite.Rewriter implements it. It returns the statement's new text and
// whether it changed; an error means the statement must not run.
type Rewriter interface {
	// tables is the database's catalog of relations, nil for none.
	Rewrite(st *parser.Statement, d *decision.Decision, tables catalog.Relations) (sql string, changed bool, err error)
}

// Config configures NewPlanner.
type Config struct {
	Parser StatementParser // required
	Policy PolicyEngine    // required
	// Rewriter enforces filters and column rules. Nil enforces them by
	// denying any statement whose decision carries them (fail closed).
	Rewriter Rewriter
	// Catalog resolves the functions statements call, so that policies
	// see what each call may run (see package catalog). Nil leaves them
	// unresolved, which the shipped policies deny to every role but
	// supergod: only tools without a database (explain) run without one.
	Catalog FunctionCatalog
	// CacheSize is the number of plans kept, keyed by statement text,
	// principal and policy version. Zero means 10000.
	CacheSize int
	// MemoSize is the number of policy decisions kept by a hash of their
	// input (see memo.go). Zero means CacheSize; negative, none.
	MemoSize int
	// EvalTimeout bounds one policy evaluation. Zero means 2s.
	EvalTimeout time.Duration
	Logger      zerolog.Logger
}

// Planner is the Decider of a running proxy: it parses a statement text,
// asks the policy about each statement, and caches the resulting plan, so a
// text seen before for the same principal and policy version reaches neither
// the parser nor OPA. A new text is parsed, and its statements' decisions
// come from the memo (memo.go) when an input with the same facts, session
// and backend was decided by the same policy set: only a statement whose
// facts are new reaches OPA.
type Planner struct {
	cfg   Config
	cache *lru.Cache[planKey, *plan.Plan]
	// shapes holds, by normalized text, the plans of single statements
	// whose texts differ only in their constants: a text seen for the
	// first time whose shape is known skips OPA (and, when no rewrite is
	// needed, the parser too).
	shapes *lru.Cache[planKey, *shape]
	// memo holds policy decisions by a hash of their input (see
	// memo.go): a new text whose facts were decided before skips OPA.
	// Nil when MemoSize is negative.
	memo  *lru.Cache[memoKey, decision.Decision]
	masks atomic.Pointer[memoMask]
}

// shape is a plan for every text of one normalized form.
type shape struct {
	plan *plan.Plan // the plan of the text that made it: one statement
	// decision is set when the statement is rewritten: each text is then
	// parsed and rewritten under it (the rewrite carries its constants),
	// unless splice can put its constants into the shape's rewrite.
	decision *decision.Decision
	splice   *splice
}

// planKey is what a plan depends on. The principal is in canonical form, so
// two sessions of the same login share plans.
type planKey struct {
	principal string
	version   string
	database  string // functions resolve in its catalog
	catalog   uint64 // the catalog's generation
	inTx      bool
	sql       string
}

// NewPlanner returns a Planner.
func New(cfg Config) (*Planner, error) {
	if cfg.Parser == nil || cfg.Policy == nil {
		return nil, errors.New("wire: a planner needs a parser and a policy engine")
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	if cfg.EvalTimeout <= 0 {
		cfg.EvalTimeout = 2 * time.Second
	}
	c, err := lru.New[planKey, *plan.Plan](cfg.CacheSize)
	if err != nil {
		return nil, err
	}
	shapes, err := lru.New[planKey, *shape](cfg.CacheSize)
	if err != nil {
		return nil, err
	}
	pl := &Planner{cfg: cfg, cache: c, shapes: shapes}
	if cfg.MemoSize == 0 {
		cfg.MemoSize = cfg.CacheSize
	}
	if cfg.MemoSize > 0 {
		if pl.memo, err = lru.New[memoKey, decision.Decision](cfg.MemoSize); err != nil {
			return nil, err
		}
	}
	return pl, nil
}

// Decide implements Decider.
//
// A text seen before for the same principal, policy version and transaction
// state is served from the plan cache. A new text of one statement without
// parameters is normalized (its constants replaced by $n, a few
// microseconds) and looked up by shape: the facts and the decision do not
// depend on constants (policies see the normalized text), so a known shape
// costs no OPA evaluation; a statement that needs no rewrite is sent as
// written, one that does is parsed and rewritten under the cached decision.
// Plans made from a shape are not added to the plan cache, so texts that
// differ only in their constants (pgbench -S, an ORM with inline literals)
// do not evict the texts that repeat.
func (p *Planner) Decide(ctx context.Context, s *plan.Session, sql string) (*plan.Plan, error) {
	key := planKey{principal: s.PrincipalKey(), version: p.cfg.Policy.Version(), database: s.Database, inTx: s.InTransaction, sql: sql}
	if p.cfg.Catalog != nil {
		key.catalog = p.cfg.Catalog.Generation()
	}
	if pl, ok := p.cache.Get(key); ok {
		return pl, nil
	}
	if len(sql) <= maxShapeText {
		var buf [512]byte
		var cs [16]string
		if norm, consts, ok := quickShape(sql, buf[:0], cs[:0]); ok {
			qkey := key
			qkey.sql = string(norm)
			if sh, ok := p.shapes.Get(qkey); ok {
				if pl := p.fromShapeConsts(sh, sql, consts, s.Database); pl != nil {
					return pl, nil
				}
			}
		}
	}
	skey, shaped := p.shapeKey(key)
	if shaped {
		if sh, ok := p.shapes.Get(skey); ok {
			if pl := p.fromShape(sh, sql, skey.sql, s.Database); pl != nil {
				return pl, nil
			}
		}
	}
	norm := "" // Normalize(sql), when the shape lookup computed it
	if shaped {
		norm = skey.sql
	}
	pl, decisions, keep := p.planText(ctx, s, sql, norm, key.version)
	if keep.noCache {
		return pl, nil
	}
	p.cache.Add(key, pl)
	if shaped && !keep.noShape && len(pl.Statements) == 1 && len(decisions) == 1 && shapeCommands[pl.Statements[0].Command] {
		sh := &shape{plan: pl}
		if pl.Deny == nil && pl.SQL != sql {
			d := decisions[0]
			sh.decision = &d
			sh.splice = p.newSplice(skey.sql, &d, sql, pl.SQL)
		}
		p.shapes.Add(skey, sh)
	}
	return pl, nil
}

// shapeKey returns key with the text replaced by its normalized form, and
// whether the text has a shape other than itself: it has constants, and no
// parameters or dollar quotes of its own (whose $ would make a normalized
// text ambiguous).
func (p *Planner) shapeKey(key planKey) (planKey, bool) {
	// The parser refuses what its protobuf cannot carry (invalid UTF-8);
	// such a text must meet that refusal, not a shape.
	if strings.IndexByte(key.sql, '$') >= 0 || len(key.sql) > maxShapeText || !utf8.ValidString(key.sql) {
		return key, false
	}
	norm, err := parser.Normalize(key.sql) // a text too deep is refused by plan
	if err != nil || norm == key.sql {
		return key, false
	}
	key.sql = norm
	return key, true
}

// catalogWait bounds waiting for a database's catalog while planning.
const catalogWait = 10 * time.Second

// shapeCommands are the commands planned by shape: their facts come from
// the parse tree's relations, columns and functions, never from a constant.
// (A SET's value, for one, is a constant; so it is planned per text.)
var shapeCommands = map[string]bool{"SELECT": true, "INSERT": true, "UPDATE": true, "DELETE": true, "MERGE": true}

// maxShapeText bounds the texts looked up by shape: a long text is rarely
// repeated with other constants, and normalizing it costs more.
const maxShapeText = 8 << 10

// fromShape makes the plan of sql from the plan of another text of its
// shape, or returns nil when it cannot (the caller then plans sql afresh).
func (p *Planner) fromShape(sh *shape, sql, norm, database string) *plan.Plan {
	if sh.decision == nil {
		return sh.planFor(sql, sql)
	}
	if sh.splice != nil {
		if out, ok := sh.splice.apply(sql); ok {
			return sh.planFor(sql, out)
		}
	}
	res, err := p.cfg.Parser.ParseNormalized(sql, norm)
	if err != nil || len(res.Statements) != 1 || res.Statements[0].Fingerprint != sh.plan.Statements[0].Fingerprint {
		return nil
	}
	st := res.Statements[0]
	ctx, cancel := context.WithTimeout(context.Background(), catalogWait)
	defer cancel()
	out, changed, err := p.rewrite(st, sh.decision, &functionResolver{ctx: ctx, cat: p.cfg.Catalog, database: database})
	if err != nil || !changed {
		return nil
	}
	return sh.planFor(st.Text, out)
}

// fromShapeConsts is fromShape for a text whose constants quickShape found:
// the text is of the shape by construction, so a splice needs no scan.
func (p *Planner) fromShapeConsts(sh *shape, sql string, consts []string, database string) *plan.Plan {
	if sh.decision != nil && sh.splice != nil {
		out, ok := sh.splice.fill(consts)
		if !ok {
			return nil
		}
		return sh.planFor(sql, out)
	}
	return p.fromShape(sh, sql, "", database)
}

// planFor is the shape's plan for the client's text sql, sending send.
func (sh *shape) planFor(sql, send string) *plan.Plan {
	pl := *sh.plan
	pl.Statements = slices.Clone(sh.plan.Statements)
	pl.Statements[0].QueryRaw = sql
	pl.SQL = send
	return &pl
}

// Parser is the parser the planner uses: give it to whatever else parses
// statement texts (wire's transaction pooling), so a text is parsed once.
func (p *Planner) Parser() StatementParser { return p.cfg.Parser }

// Version implements Decider.
func (p *Planner) Version() string { return p.cfg.Policy.Version() }

// cacheHints say how a new plan may be reused.
type cacheHints struct {
	noShape bool // never plan other texts of this one's shape from it
	noCache bool // a passing failure (the catalog could not be read): decide the text again next time
}

// planText decides every statement of sql, and returns the policy's
// decision of each statement it reached. norm is Normalize(sql), or ""
// when not known.
func (p *Planner) planText(ctx context.Context, s *plan.Session, sql, norm, version string) (*plan.Plan, []decision.Decision, cacheHints) {
	mode := p.cfg.Policy.Mode()
	res, err := p.cfg.Parser.ParseNormalized(sql, norm)
	if err != nil {
		return p.unparsable(sql, err, mode, version), nil, cacheHints{}
	}
	var keep cacheHints
	decisions := make([]decision.Decision, 0, len(res.Statements))
	pl := &plan.Plan{SQL: sql, Version: version, Statements: make([]plan.Statement, len(res.Statements))}
	in := decision.Input{
		Session: decision.Session{
			User: s.Principal.User, Role: s.Principal.Role, Claims: s.Principal.Claims,
			Database: s.Database, ApplicationName: s.ApplicationName, ClientAddr: s.ClientAddr, TLS: s.TLS,
		},
		Transaction: decision.Transaction{Active: s.InTransaction},
		Backend:     backendInput(s.BackendParams),
	}
	texts := make([]string, len(res.Statements)) // each statement as sent, when any is rewritten
	rewritten := false
	// Reading the catalog has a bound of its own: a load right after a
	// schema change may take longer than one policy evaluation.
	cctx, ccancel := context.WithTimeout(ctx, catalogWait)
	defer ccancel()
	funcs := functionResolver{ctx: cctx, cat: p.cfg.Catalog, database: s.Database}
	for i, st := range res.Statements {
		ps := &pl.Statements[i]
		ps.Command = st.Command
		ps.Fingerprint = st.Fingerprint
		ps.Query = st.Normalized
		ps.QueryRaw = st.Text
		ps.PolicyVersion = version
		ps.Tables = make([]string, len(st.Tables))
		for j, t := range st.Tables {
			ps.Tables[j] = qualified(t.Schema, t.Name)
		}
		texts[i] = st.Text
		in.Statement = statementInput(st)
		ectx, cancel := context.WithTimeout(ctx, p.cfg.EvalTimeout)
		fns, names, ferr := funcs.resolve(cctx, st)
		in.Statement.Functions, ps.Functions = fns, names
		var d decision.Decision
		var err error
		if ferr != nil {
			p.cfg.Logger.Error().Err(ferr).Str("database", s.Database).Msg("function catalog unavailable; the statement is denied")
			d = decision.Decision{Reason: catalogDenial(ferr)}
			keep.noCache = true
		} else {
			d, err = p.decide(ectx, &in)
		}
		cancel()
		decisions = append(decisions, d)
		if err != nil {
			p.cfg.Logger.Error().Err(err).Str("command", st.Command).Str("fingerprint", st.Fingerprint).
				Msg("policy evaluation failed; the statement is denied")
		}
		ps.Reason = d.Reason
		ps.MaxRows, ps.TimeoutMS = d.MaxRows, d.TimeoutMS
		allowed := err == nil && d.Allow
		if len(st.ConfigNames) > 0 {
			keep.noShape = true // what set_config changes is a constant
		}
		if why := st.LexerHazard(); why != "" {
			// Whatever the policy says: see lexguard.go.
			allowed, ps.Reason = false, why
		}
		if allowed {
			if d.WouldDeny {
				ps.Decision = audit.DecisionWouldDeny
			} else {
				ps.Decision = audit.DecisionAllow
			}
			if len(d.Filters) > 0 || len(d.Checks) > 0 || len(d.Columns) > 0 {
				out, changed, rerr := p.rewrite(st, &d, &funcs)
				switch {
				case rerr != nil:
					allowed = false
					ps.Reason = rerr.Error()
				case changed:
					texts[i], rewritten = out, true
					ps.Rewritten = normalized(out)
					if ps.Decision == audit.DecisionAllow {
						ps.Decision = audit.DecisionRewrite
					}
				}
			}
		}
		if !allowed {
			ps.Decision = audit.DecisionDeny
			if ps.Reason == "" {
				ps.Reason = "denied by policy"
			}
			prefix := prefixSQL(sql, res.Statements[:i])
			if rewritten {
				prefix = strings.Join(texts[:i], ";\n")
			}
			pl.Deny = &plan.Denial{
				Index:   i,
				Prefix:  prefix,
				Code:    plan.CodeInsufficientPriv,
				Message: ps.Reason,
				Detail:  denialDetail(st.Command, ps.Tables),
			}
			pl.Statements = pl.Statements[:i+1]
			return pl, decisions, keep
		}
	}
	if rewritten {
		pl.SQL = strings.Join(texts, ";\n")
	}
	return pl, decisions, keep
}

// rewrite applies a decision's filters and column rules, or, with no
// Rewriter, refuses the statement.
func (p *Planner) rewrite(st *parser.Statement, d *decision.Decision, tables catalog.Relations) (string, bool, error) {
	if p.cfg.Rewriter == nil {
		return "", false, errors.New("the policy requires row filters or column rules, and this proxy has no rewriter")
	}
	return p.cfg.Rewriter.Rewrite(st, d, tables)
}

// normalized is sql with its literals replaced, for the audit log; the
// rewritten text carries the filter's values. It is "" for a text too deep
// to normalize safely.
func normalized(sql string) string {
	n, err := parser.Normalize(sql)
	if err != nil {
		return ""
	}
	return n
}

// unparsable plans a text the parser rejects: denied in strict mode (the
// backend never sees it), forwarded in the other modes. The denial is
// 42601 for a syntax error, 54001 for a text nested too deeply.
func (p *Planner) unparsable(sql string, err error, mode decision.Mode, version string) *plan.Plan {
	msg, code, hint, pos := "the proxy could not parse this statement", plan.CodeSyntaxError, "", 0
	var se *parser.SyntaxError
	var de *parser.DepthError
	switch {
	case errors.As(err, &se):
		// PostgreSQL's own message; the position goes in its own field.
		msg, pos = se.Message, se.Position
	case errors.As(err, &de):
		// PostgreSQL's answer to a statement nested too deeply (54001);
		// pg_query never saw the text.
		msg, code, hint = parser.DepthMessage, de.SQLState(), parser.DepthHint
	}
	ps := plan.Statement{Reason: msg, PolicyVersion: version}
	switch mode {
	case decision.ModeDisabled:
		ps.Decision = audit.DecisionAllow
		return &plan.Plan{SQL: sql, Version: version, Statements: []plan.Statement{ps}}
	case decision.ModePermissive:
		ps.Decision = audit.DecisionWouldDeny
		return &plan.Plan{SQL: sql, Version: version, Statements: []plan.Statement{ps}}
	}
	ps.Decision = audit.DecisionDeny
	return &plan.Plan{Version: version, Statements: []plan.Statement{ps}, Deny: &plan.Denial{Code: code, Message: msg, Hint: hint, Position: pos}}
}

// prefixSQL is the text of the statements that run before a denied one.
func prefixSQL(sql string, before []*parser.Statement) string {
	if len(before) == 0 {
		return ""
	}
	last := before[len(before)-1]
	return sql[:last.Location+last.Length]
}

// denialDetail is a denial's DETAIL: the command and the tables it names,
// each qualified as the server resolves it (see qualified).
func denialDetail(command string, tables []string) string {
	if command == "" {
		return ""
	}
	if len(tables) == 0 {
		return "statement: " + command
	}
	return "statement: " + command + " on " + strings.Join(tables, ", ")
}

// qualified is a table's name as reported in audit records and denials: an
// unqualified name is resolved as the server does on the default search
// path, where pg_catalog comes first, so a pg_* relation (pg_class,
// pg_stat_activity, ...; every relation in pg_catalog is named pg_*) is
// pg_catalog's and any other is public's. The shipped policies' qname
// resolves names the same way.
func qualified(schema, name string) string {
	if schema == "" {
		schema = "public"
		if strings.HasPrefix(name, "pg_") {
			schema = "pg_catalog"
		}
	}
	return schema + "." + name
}

// statementInput converts parser facts to the policy's input.
func statementInput(st *parser.Statement) decision.Statement {
	out := decision.Statement{
		Command: st.Command, Class: string(st.Class), Flags: st.Flags,
		Fingerprint: st.Fingerprint, Text: st.Normalized,
		Tables:    make([]decision.Table, len(st.Tables)),
		Functions: make([]decision.Function, len(st.Functions)),
	}
	for i, t := range st.Tables {
		pt := decision.Table{Schema: t.Schema, Name: t.Name, Access: make([]string, len(t.Access))}
		for j, a := range t.Access {
			pt.Access[j] = string(a)
		}
		if len(t.Columns) > 0 {
			pt.Columns = make(map[string][]string, len(t.Columns))
			for a, cols := range t.Columns {
				pt.Columns[string(a)] = cols
			}
		}
		out.Tables[i] = pt
	}
	for i, f := range st.Functions {
		out.Functions[i] = decision.Function{Schema: f.Schema, Name: f.Name, Args: f.Args, Field: f.Field, Operator: f.Operator}
	}
	out.Configs = st.ConfigNames
	if st.Setting != nil {
		out.Setting = &decision.Setting{Name: st.Setting.Name, Local: st.Setting.Local}
	}
	return out
}

// backendInput describes the backend server for capability checks.
func backendInput(params map[string]string) decision.Backend {
	b := decision.Backend{Settings: params, Version: params["server_version"]}
	// server_version is like "15.18 (Debian 15.18-0+deb12u1)" or "17.2".
	v, _, _ := strings.Cut(b.Version, " ")
	major, minor, _ := strings.Cut(v, ".")
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if err1 == nil {
		if err2 != nil {
			mi = 0
		}
		b.VersionNum = ma*10000 + mi
	}
	return b
}
