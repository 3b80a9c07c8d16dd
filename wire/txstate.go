package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/pgbool"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/sqlscope"
	lru "github.com/hashicorp/golang-lru/v2"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// Transaction pooling keeps a client's prepared statements in the proxy and
// prepares them on whichever backend connection serves a transaction, under
// a name derived from the statement's text as sent (after rewriting) and its
// parameter types. This file holds that bookkeeping.

// beStmtPrefix starts the name of every statement the proxy prepares on a
// backend connection in transaction pooling. Client names with this prefix
// that the proxy does not know are renamed, so that a client can never reach
// a statement another client prepared.
const beStmtPrefix = "dbal_"

// maxBackendStmts bounds the statements kept prepared on one backend
// connection; past it the least recently used one is closed.
const maxBackendStmts = 1000

// backendStmtName is the name under which a statement text (as sent to the
// backend) with its parameter types is prepared on backend connections.
func backendStmtName(sql string, oids []uint32) string {
	h := sha256.New()
	h.Write([]byte(sql))
	var b [4]byte
	for _, o := range oids {
		binary.BigEndian.PutUint32(b[:], o)
		h.Write(b[:])
	}
	sum := h.Sum(nil)
	return beStmtPrefix + hex.EncodeToString(sum[:16])
}

// stmtNameCacheSize bounds a session's cache of backend statement names.
const stmtNameCacheSize = 256

type stmtNameEntry struct {
	oids []uint32
	name string
}

// stmtName is backendStmtName, remembered per session: a client that sends
// the same Parse for every execution (the extended protocol with unnamed
// statements) hashes its text once.
func (h *txHold) stmtName(sql string, oids []uint32) string {
	if e, ok := h.stmtNames[sql]; ok && slices.Equal(e.oids, oids) {
		return e.name
	}
	name := backendStmtName(sql, oids)
	if h.stmtNames == nil || len(h.stmtNames) >= stmtNameCacheSize {
		h.stmtNames = make(map[string]stmtNameEntry)
	}
	h.stmtNames[sql] = stmtNameEntry{oids: slices.Clone(oids), name: name}
	return name
}

// safeStmtName maps a statement name the client uses but the proxy does not
// know to one the backend cannot have prepared for someone else.
func safeStmtName(name string) string {
	if strings.HasPrefix(name, beStmtPrefix) {
		return "dbalc_" + name[len(beStmtPrefix):]
	}
	return name
}

// Statement states on a backend connection.
const (
	stmtPending = iota + 1 // Parse sent, ParseComplete not seen yet
	stmtPresent            // prepared on the backend
)

type beStmt struct {
	state uint8
	epoch uint64 // the beState epoch it was sent in
	seq   uint64 // prepare sequence number, for staleness
	used  uint64 // last use, for eviction
}

// beState is what the proxy knows of one backend connection's session state
// in transaction pooling; it lives in the connection (beStates). "present" always means
// the statement exists on the backend; absent means it may or may not, so a
// statement is prepared with Close before Parse, which is right either way.
type beState struct {
	mu    sync.Mutex
	stmts map[string]*beStmt
	epoch uint64 // bumped when the backend's statements were dropped wholesale
	clock uint64
	// unnamed is the key of the statement in the backend's unnamed slot,
	// "" when none or unknown.
	unnamed string
	// settings are parameters the backend does not report that the proxy
	// set on it for a client (search_path from a startup packet, say).
	settings map[string]string
	stale    *staleness
	// paramGen counts the changes of the backend's reported parameters
	// seen in its messages; syncedFor and syncedGen say whose parameters
	// the backend was last made to show, and at which paramGen, so a lease
	// by the same client of an unchanged backend needs no comparison.
	paramGen  atomic.Uint64
	syncedFor uint64
	syncedGen uint64
	// leaseParams are the reported parameters the backend showed when the
	// current lease began (after the client's parameters were set), nil
	// between leases; leased says whether it is current.
	leaseParams map[string]string
	leaseGen    uint64 // paramGen when the lease began
	leased      bool
}

// beginLease notes the parameters the backend reports as a lease begins.
func (st *beState) beginLease(params map[string]string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.leaseParams == nil {
		st.leaseParams = make(map[string]string, len(params))
	}
	clear(st.leaseParams)
	for k, v := range params {
		st.leaseParams[k] = v
	}
	st.leaseGen = st.paramGen.Load()
	st.leased = true
}

// endLease ends the lease begun by beginLease and returns the name of a
// reported parameter whose value changed during it and stayed changed, or
// "". The client's own visible session settings pin it to the connection,
// and SET LOCAL ends with its transaction: a parameter that is still
// changed when the connection would go to another client was changed where
// the proxy could not see it (set_config in a function body, say). Only the
// server's own state (in_hot_standby) may change under everyone.
func (st *beState) endLease(params map[string]string) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.leased {
		return ""
	}
	st.leased = false
	if st.paramGen.Load() == st.leaseGen {
		return "" // the backend reported nothing
	}
	for k, v := range params {
		if k == "in_hot_standby" {
			continue
		}
		if old, ok := st.leaseParams[k]; !ok || old != v {
			return k
		}
	}
	return ""
}

// wantIDs numbers the parameter sets of sessions (computeWantParams).
var wantIDs atomic.Uint64

// paramSets gives sessions with the same parameters the same wantID, so
// that a backend synced for one of them needs no sync for the others (the
// usual case: every connection of an application says the same at
// startup). It is bounded; past the bound, sets get an ID of their own.
var paramSets struct {
	sync.Mutex
	ids map[string]uint64
}

const maxParamSets = 4096

// paramSetID returns the ID of the parameter set want.
func paramSetID(want map[string]string) uint64 {
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(want[k])
		b.WriteByte(0)
	}
	key := b.String()
	paramSets.Lock()
	defer paramSets.Unlock()
	if id, ok := paramSets.ids[key]; ok {
		return id
	}
	id := wantIDs.Add(1)
	if paramSets.ids == nil {
		paramSets.ids = map[string]uint64{}
	}
	if len(paramSets.ids) < maxParamSets {
		paramSets.ids[key] = id
	}
	return id
}

// beStates is each backend connection's beState.
var beStates pool.State[*beState]

// stateOf returns the bookkeeping of be, creating it for a connection that
// has none (new, or reset by the pool).
func stateOf(be *pool.Conn, tx *txShared) *beState {
	if st, ok := beStates.Get(be); ok {
		return st
	}
	st := &beState{stmts: map[string]*beStmt{}, settings: map[string]string{}, stale: &tx.stale}
	beStates.Set(be, st)
	return st
}

// clearStmts forgets every statement: the backend dropped them (DEALLOCATE
// ALL, DISCARD ALL) or may have.
func (st *beState) clearStmts() {
	st.mu.Lock()
	st.stmts = map[string]*beStmt{}
	st.epoch++
	st.unnamed = ""
	st.mu.Unlock()
}

// confirm records a ParseComplete for name sent in epoch.
func (st *beState) confirm(name string, epoch uint64) {
	st.mu.Lock()
	if e := st.stmts[name]; e != nil && e.epoch == epoch && st.epoch == epoch {
		e.state = stmtPresent
		e.seq = st.stale.next()
	}
	st.mu.Unlock()
}

// forget records that name is not (or may not be) prepared any more.
func (st *beState) forget(name string, epoch uint64) {
	st.mu.Lock()
	if e := st.stmts[name]; e != nil && e.epoch == epoch {
		delete(st.stmts, name)
	}
	st.mu.Unlock()
}

func (st *beState) setUnnamed(key string) {
	st.mu.Lock()
	st.unnamed = key
	st.mu.Unlock()
}

// staleness remembers statements whose result type changed under them
// ("cached plan must not change result type"): copies prepared on backend
// connections before the change are prepared again before their next use.
type staleness struct {
	seq   atomic.Uint64
	mu    sync.RWMutex
	m     map[string]uint64
	floor uint64 // everything prepared before it is stale (set when m overflows)
	// change is the sequence number of the last committed schema change.
	change atomic.Uint64
}

const maxStale = 10000

func (s *staleness) next() uint64 { return s.seq.Add(1) }

func (s *staleness) mark(name string) {
	n := s.seq.Add(1)
	s.mu.Lock()
	if len(s.m) >= maxStale {
		s.m = map[string]uint64{}
		s.floor = n
	}
	if s.m == nil {
		s.m = map[string]uint64{}
	}
	s.m[name] = n
	s.mu.Unlock()
}

// schemaChanged notes a committed schema change. A copy prepared before it
// may name what changed (a dropped type, a changed result): it is not used
// for a client statement parsed after the change (see predates); a client
// statement parsed before it keeps its copies, and meets PostgreSQL's own
// answer ("cached plan must not change result type"), as it would
// straight on the server.
func (s *staleness) schemaChanged() { s.change.Store(s.seq.Add(1)) }

// predates reports whether a copy prepared at seq predates a schema change
// that a client statement parsed at parsed comes after.
func (s *staleness) predates(seq, parsed uint64) bool {
	c := s.change.Load()
	return c != 0 && seq < c && c < parsed
}

// markOf is the sequence number at which name was last found changed, 0 if
// never.
func (s *staleness) markOf(name string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[name]
}

// isStale reports whether a copy of name prepared at seq is stale.
func (s *staleness) isStale(name string, seq uint64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if seq <= s.floor {
		return true
	}
	return seq <= s.m[name]
}

// txShared is the server-wide state of transaction pooling.
type txShared struct {
	parser  StatementParser
	effects *lru.Cache[string, *txEffect]
	stale   staleness
}

// newTxShared classifies statements with p (the planner's parser, so a
// text it parsed is found in its cache), or with a parser of its own.
func newTxShared(p StatementParser) *txShared {
	c, _ := lru.New[string, *txEffect](10000)
	t := &txShared{effects: c, parser: p}
	if t.parser == nil {
		t.parser = parser.New(parser.Options{})
	}
	return t
}

// StatementParser reads the facts of a statement text; *parser.Parser
// implements it.
type StatementParser interface {
	Parse(sql string) (*parser.Result, error)
}

// effectWords are what every statement with a session effect contains
// (lower-cased): texts with none of them, and no Unicode-escaped
// identifier, are not parsed again.
var effectWords = []string{"set", "listen", "load", "prepare", "execute", "deallocate", "discard", "declare",
	"temp", "advisory", "dblink", "lo_open", "u&"}

// effectStarts[c] lists the effectWords that start with the lower-case
// ASCII letter c, so that mayHaveEffect reads the text once.
var effectStarts = func() (t [256][]string) {
	for _, w := range effectWords {
		t[w[0]] = append(t[w[0]], w)
		t[w[0]-'a'+'A'] = append(t[w[0]-'a'+'A'], w)
	}
	return t
}()

// mayHaveEffect reports whether sql may have a session effect.
func mayHaveEffect(sql string) bool {
	for i := 0; i < len(sql); i++ {
		for _, w := range effectStarts[sql[i]] {
			if hasPrefixFold(sql[i:], w) {
				return true
			}
		}
	}
	return false
}

// hasPrefixFold reports whether s starts with the lower-case ASCII word w,
// ignoring ASCII case.
func hasPrefixFold(s, w string) bool {
	if len(s) < len(w) {
		return false
	}
	for j := 0; j < len(w); j++ {
		c := s[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[j] {
			return false
		}
	}
	return true
}

// containsFold reports whether s contains the lower-case ASCII word w,
// ignoring ASCII case, without allocating.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if hasPrefixFold(s[i:], w) {
			return true
		}
	}
	return false
}

// txEffect is what a statement text does to session state that transaction
// pooling must know.
type txEffect struct {
	// pin, when set, is why the client must keep its backend connection for
	// the rest of its session.
	pin string
	// dropsStmts: DEALLOCATE ALL or DISCARD ALL drop every prepared statement.
	dropsStmts bool
	// resetsSettings: DISCARD ALL sets every parameter back to its default.
	resetsSettings bool
	// prepares are the names an SQL-level PREPARE creates; executes the names
	// EXECUTE runs; deallocates the names DEALLOCATE drops.
	prepares, executes, deallocates []string
	// statements is the number of statements in the text.
	statements int
}

var noEffect = &txEffect{}

// effectOf classifies sql, cached by text. A text the parser rejects has no
// effect: it is refused by the policy or by the server.
func (t *txShared) effectOf(sql string) *txEffect {
	if !mayHaveEffect(sql) {
		return noEffect
	}
	if e, ok := t.effects.Get(sql); ok {
		return e
	}
	e := noEffect
	if res, err := t.parser.Parse(sql); err == nil {
		e = classify(res)
	}
	if len(sql) <= 64<<10 {
		t.effects.Add(sql, e)
	}
	return e
}

// classify derives the session effects of parsed statements.
func classify(res *parser.Result) *txEffect {
	e := &txEffect{}
	any := false
	pin := func(why string) {
		if e.pin == "" {
			e.pin = why
		}
		any = true
	}
	for _, st := range res.Statements {
		if st.Setting != nil && !st.Setting.Local && st.Setting.Name != "transaction" {
			pin("SET")
		}
		var node proto.Message
		if st.Tree != nil && st.Tree.Stmt != nil {
			node = st.Tree.Stmt
		}
		switch st.Command {
		case "SET", "RESET":
			if st.Setting == nil {
				pin(st.Command)
			}
		case "LISTEN":
			pin("LISTEN")
		case "LOAD":
			pin("LOAD")
		case "PREPARE":
			pin("PREPARE")
			if p := st.Tree.GetStmt().GetPrepareStmt(); p != nil {
				e.prepares = append(e.prepares, p.Name)
			}
		case "DEALLOCATE", "DEALLOCATE ALL":
			if d := st.Tree.GetStmt().GetDeallocateStmt(); d != nil {
				if d.Name == "" || d.Isall {
					e.dropsStmts = true
				} else {
					e.deallocates = append(e.deallocates, d.Name)
				}
			}
			any = true
		case "DISCARD ALL":
			e.dropsStmts = true
			e.resetsSettings = true
			any = true
		case "DECLARE CURSOR":
			if d := st.Tree.GetStmt().GetDeclareCursorStmt(); d != nil && d.Options&0x0020 != 0 { // CURSOR_OPT_HOLD
				pin("DECLARE ... WITH HOLD")
			}
		}
		if node != nil && createsTemp(node) {
			pin("temporary object")
		}
		if node != nil {
			// EXECUTE also stands inside EXPLAIN and CREATE TABLE AS.
			sqlscope.Walk(node, func(m proto.Message) bool {
				if x, ok := m.(*pg_query.ExecuteStmt); ok {
					pin("EXECUTE")
					e.executes = append(e.executes, x.Name)
				}
				return true
			})
		}
		for _, f := range st.Functions {
			switch f.Name {
			case "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared":
				pin("session advisory lock")
			case "set_config":
				if node == nil || !setConfigIsLocal(node) {
					pin("set_config(..., false)")
				}
			case "dblink_connect", "dblink_connect_u", "lo_open":
				pin(f.Name)
			}
		}
	}
	if !any {
		return noEffect
	}
	e.statements = len(res.Statements)
	return e
}

// createsTemp reports whether a statement creates a temporary object.
func createsTemp(m proto.Message) bool {
	found := false
	sqlscope.Walk(m, func(n proto.Message) bool {
		if rv, ok := n.(*pg_query.RangeVar); ok {
			if rv.Relpersistence == "t" || strings.EqualFold(rv.Schemaname, "pg_temp") {
				found = true
			}
		}
		return !found
	})
	return found
}

// setConfigIsLocal reports whether every set_config call in a statement has
// the constant true as its third argument (is_local).
func setConfigIsLocal(m proto.Message) bool {
	local := true
	sqlscope.Walk(m, func(n proto.Message) bool {
		fc, ok := n.(*pg_query.FuncCall)
		if !ok || len(fc.Funcname) == 0 {
			return true
		}
		if fc.Funcname[len(fc.Funcname)-1].GetString_().GetSval() != "set_config" {
			return true
		}
		if len(fc.Args) != 3 {
			local = false
			return false
		}
		c := fc.Args[2].GetAConst()
		if c == nil {
			if tc := fc.Args[2].GetTypeCast(); tc != nil {
				c = tc.Arg.GetAConst()
			}
		}
		switch {
		case c == nil:
			local = false
		case c.GetBoolval() != nil:
			local = c.GetBoolval().Boolval
		case c.GetSval() != nil:
			local = pgbool.IsTrue(c.GetSval().Sval)
		default:
			local = false
		}
		return local
	})
	return local
}
