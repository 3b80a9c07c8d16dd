// Package catalog knows the functions of a backend database, read from its
// pg_proc, so that the proxy can say what a statement really calls, and the
// columns of its relations with their defaults (pg_attribute, pg_attrdef),
// so that a write without a column list, or one that leaves a checked
// column to its default, can still be checked.
//
// A statement names functions; what runs depends on the catalog: whether
// `ts_rewrite` is the immutable overload or the one that runs its second
// argument as a query, whether `(x).name` is a field or the call name(x),
// whether a function is built into the server or was created by someone.
// The parser reports each name with its number of arguments (see
// parser.Function); Snapshot.Resolve returns every function that name could
// be, so that a policy can allow a call only when every candidate is known
// to be safe.
//
// Resolution is deliberately wider than PostgreSQL's, never narrower: an
// unqualified name matches functions of that name in every schema (any
// schema may be on a client's search_path), and every overload whose
// number of parameters fits the call (argument types are not known before
// the server plans the statement). A name that matches nothing is reported
// as such; the shipped policies deny it to every role but supergod.
//
// A Cache keeps one Snapshot per database, loaded through a connection with
// the proxy's own credentials, reloaded when it is older than its MaxAge
// (in the background) or when a statement names a function the snapshot
// does not know (at most once per MinInterval), and dropped by Invalidate
// (on a policy reload), or for one database by InvalidateDatabase (after DDL
// through the proxy commits). Generation changes whenever a snapshot's content
// does, so that plans decided under an older catalog are not reused.
package catalog

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// FirstNormalObjectID is PostgreSQL's FirstNormalObjectId: objects with a
// lower OID were created by initdb, i.e. are built into the server.
const FirstNormalObjectID = 16384

// Function is one pg_proc entry.
type Function struct {
	OID    uint32
	Schema string
	Name   string
	// MinArgs and MaxArgs bound the number of arguments a call may pass
	// (parameters with defaults may be left out); MaxArgs is -1 for a
	// VARIADIC function.
	MinArgs, MaxArgs int
	// Kind is "function", "aggregate", "window" or "procedure".
	Kind string
	// Volatility is "immutable", "stable" or "volatile".
	Volatility string
	// Language is the pg_language name: internal, c, sql, plpgsql, ...
	Language        string
	SecurityDefiner bool
	ReturnsSet      bool
	// Arguments is the identity argument list, e.g. "tsquery, text".
	Arguments string
}

// Builtin reports whether the function was created by initdb.
func (f *Function) Builtin() bool { return f.OID < FirstNormalObjectID }

// fits reports whether a call with args arguments (-1: unknown) may be
// this function.
func (f *Function) fits(args int) bool {
	if args < 0 {
		return true
	}
	return args >= f.MinArgs && (f.MaxArgs < 0 || args <= f.MaxArgs)
}

// operator is one pg_operator entry.
type operator struct {
	schema string
	prefix bool   // a prefix (unary) operator
	code   uint32 // the function's OID (0 for a shell operator)
}

// Snapshot is the functions of one database at one moment. It is immutable.
type Snapshot struct {
	byName map[string][]*Function
	byOID  map[uint32]*Function
	ops    map[string][]operator
	inval  uint64               // the entry's inval when its load started
	rels   map[string]*Relation // "schema.name"
	hash   [32]byte
	count  int
	// Loaded is when the snapshot was read.
	Loaded time.Time
}

// Len is the number of functions in the snapshot.
func (s *Snapshot) Len() int { return s.count }

// ByOID returns the function with that OID, or nil.
func (s *Snapshot) ByOID(oid uint32) *Function { return s.byOID[oid] }

// Resolve returns every function a call of schema.name (schema "" for an
// unqualified name) with args arguments (-1 when unknown) may be. The
// result is shared: callers must not modify it.
func (s *Snapshot) Resolve(schema, name string, args int) []*Function {
	all := s.byName[name]
	var out []*Function
	for _, f := range all {
		if schema != "" && f.Schema != schema {
			continue
		}
		if f.fits(args) {
			out = append(out, f)
		}
	}
	return out
}

// ResolveOperator returns the functions an operator of that name (schema
// "" for an unqualified one) with args operands (1: prefix, 2: infix) may
// run that are not built into the server, and whether any operator of
// that name exists. Built-in operators are left out: every one runs an
// immutable function or one of a few stable date, time and text search
// functions (the tests check this against the server), and listing them
// for every = and + would drown what matters, the operators a database
// defines with functions of its own.
func (s *Snapshot) ResolveOperator(schema, name string, args int) (own []*Function, known bool) {
	for _, op := range s.ops[name] {
		if schema != "" && op.schema != schema {
			continue
		}
		if op.prefix != (args == 1) {
			continue
		}
		known = true
		f := s.byOID[op.code]
		if f == nil || f.Builtin() {
			continue
		}
		own = append(own, f)
	}
	return own, known
}

// BuiltinOperatorFunctions returns the functions behind built-in
// operators, for tests that check what ResolveOperator leaves out.
func (s *Snapshot) BuiltinOperatorFunctions() []*Function {
	var out []*Function
	seen := map[uint32]bool{}
	for _, ops := range s.ops {
		for _, op := range ops {
			if f := s.byOID[op.code]; f != nil && f.Builtin() && !seen[f.OID] {
				seen[f.OID] = true
				out = append(out, f)
			}
		}
	}
	return out
}

// operatorQuery reads every operator with the function it runs.
const operatorQuery = `SELECT n.nspname, o.oprname, o.oprleft = 0, o.oprcode::oid
FROM pg_catalog.pg_operator o
JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
ORDER BY o.oid`

// query reads every function with what Resolve and the policies need.
const query = `SELECT p.oid, n.nspname, p.proname, p.pronargs, p.pronargdefaults,
	p.provariadic <> 0, p.prokind, p.provolatile, l.lanname, p.prosecdef, p.proretset,
	pg_catalog.pg_get_function_identity_arguments(p.oid)
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
ORDER BY p.oid`

// maxFunctions bounds a snapshot: a database with more functions than this
// is refused rather than held in memory without limit.
const maxFunctions = 200000

// Load reads the functions of the database conn is connected to.
func Load(ctx context.Context, conn *pgconn.PgConn) (*Snapshot, error) {
	res := conn.ExecParams(ctx, query, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, fmt.Errorf("catalog: read pg_proc: %w", res.Err)
	}
	if len(res.Rows) > maxFunctions {
		return nil, fmt.Errorf("catalog: %d functions, more than the %d the proxy keeps", len(res.Rows), maxFunctions)
	}
	s := &Snapshot{byName: make(map[string][]*Function, len(res.Rows)), byOID: make(map[uint32]*Function, len(res.Rows)),
		ops: map[string][]operator{}, Loaded: time.Now()}
	h := sha256.New()
	for _, row := range res.Rows {
		if len(row) != 12 {
			return nil, errors.New("catalog: unexpected pg_proc row")
		}
		for _, c := range row {
			h.Write(c)
			h.Write([]byte{0})
		}
		f, err := function(row)
		if err != nil {
			return nil, err
		}
		s.byName[f.Name] = append(s.byName[f.Name], f)
		s.byOID[f.OID] = f
		s.count++
	}
	ores := conn.ExecParams(ctx, operatorQuery, nil, nil, nil, nil).Read()
	if ores.Err != nil {
		return nil, fmt.Errorf("catalog: read pg_operator: %w", ores.Err)
	}
	if len(ores.Rows) > maxFunctions {
		return nil, fmt.Errorf("catalog: %d operators, more than the %d the proxy keeps", len(ores.Rows), maxFunctions)
	}
	for _, row := range ores.Rows {
		if len(row) != 4 {
			return nil, errors.New("catalog: unexpected pg_operator row")
		}
		for _, c := range row {
			h.Write(c)
			h.Write([]byte{1})
		}
		code, err := strconv.ParseUint(string(row[3]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("catalog: pg_operator oprcode %q: %w", row[3], err)
		}
		name := string(row[1])
		s.ops[name] = append(s.ops[name], operator{schema: string(row[0]), prefix: isTrue(row[2]), code: uint32(code)})
	}
	cres := conn.ExecParams(ctx, columnQuery, nil, nil, nil, nil).Read()
	if cres.Err != nil {
		return nil, fmt.Errorf("catalog: read pg_attribute: %w", cres.Err)
	}
	if err := s.loadRelations(cres.Rows, h); err != nil {
		return nil, err
	}
	copy(s.hash[:], h.Sum(nil))
	return s, nil
}

func function(row [][]byte) (*Function, error) {
	oid, err := strconv.ParseUint(string(row[0]), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("catalog: pg_proc oid %q: %w", row[0], err)
	}
	nargs, err1 := strconv.Atoi(string(row[3]))
	ndefaults, err2 := strconv.Atoi(string(row[4]))
	if err1 != nil || err2 != nil {
		return nil, errors.New("catalog: unexpected pg_proc argument counts")
	}
	f := &Function{
		OID: uint32(oid), Schema: string(row[1]), Name: string(row[2]),
		MinArgs: nargs - ndefaults, MaxArgs: nargs,
		Language: string(row[8]), SecurityDefiner: isTrue(row[9]), ReturnsSet: isTrue(row[10]),
		Arguments: string(row[11]),
	}
	if isTrue(row[5]) {
		// The variadic parameter takes any number of arguments, even none
		// (unless it has a default, it is counted in MinArgs).
		f.MaxArgs = -1
		if ndefaults == 0 {
			f.MinArgs--
		}
	}
	f.MinArgs = max(f.MinArgs, 0)
	switch string(row[6]) {
	case "a":
		f.Kind = "aggregate"
	case "w":
		f.Kind = "window"
	case "p":
		f.Kind = "procedure"
	default:
		f.Kind = "function"
	}
	switch string(row[7]) {
	case "i":
		f.Volatility = "immutable"
	case "s":
		f.Volatility = "stable"
	default:
		f.Volatility = "volatile"
	}
	return f, nil
}

func isTrue(b []byte) bool { return len(b) == 1 && b[0] == 't' }

// Connector opens a connection to a database with the proxy's own
// credentials; *pool.Pool implements it.
type Connector interface {
	Connect(ctx context.Context, database string) (*pgconn.PgConn, error)
}

// CacheConfig configures NewCache.
type CacheConfig struct {
	Connector Connector // required
	// MaxAge is how old a snapshot may be before it is reloaded in the
	// background (the old one serves meanwhile). Zero means 1 minute.
	MaxAge time.Duration
	// MinInterval is the least time between two reloads of one database
	// asked for by Refresh. Zero means 1 second.
	MinInterval time.Duration
	// LoadTimeout bounds one load. Zero means 10 seconds.
	LoadTimeout time.Duration
}

// Cache keeps a Snapshot per database. It is safe for concurrent use.
type Cache struct {
	cfg CacheConfig
	gen atomic.Uint64

	mu  sync.Mutex
	dbs map[string]*entry
}

type entry struct {
	snap    atomic.Pointer[Snapshot]
	loading chan struct{} // closed when the load under way ends; nil when none
	err     error         // the last load's error
	tried   time.Time     // when the last load started
	// inval counts the invalidations of this database (guarded by the
	// cache's mu); a snapshot loaded by a load that started before the
	// latest one is stale. loadInval is inval when the load under way
	// started.
	inval, loadInval uint64
}

// NewCache returns a Cache.
func NewCache(cfg CacheConfig) *Cache {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = time.Minute
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = time.Second
	}
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = 10 * time.Second
	}
	return &Cache{cfg: cfg, dbs: map[string]*entry{}}
}

// Generation changes whenever a snapshot's content changes or Invalidate is
// called; results computed from an older generation may be stale.
func (c *Cache) Generation() uint64 { return c.gen.Load() }

// Snapshot returns the functions of database, loading them the first time
// (or after Invalidate) and reloading them in the background when they are
// older than MaxAge.
func (c *Cache) Snapshot(ctx context.Context, database string) (*Snapshot, error) {
	e := c.entry(database)
	c.mu.Lock()
	want := e.inval
	c.mu.Unlock()
	if s := e.snap.Load(); s != nil && s.inval >= want {
		if time.Since(s.Loaded) > c.cfg.MaxAge {
			c.startLoad(database, e, false)
		}
		return s, nil
	}
	return c.wait(ctx, database, e, want)
}

// Refresh reloads database's functions unless that was done less than
// MinInterval ago, and returns the newest snapshot. The planner calls it
// when a statement names a function the snapshot does not know (created
// since).
func (c *Cache) Refresh(ctx context.Context, database string) (*Snapshot, error) {
	e := c.entry(database)
	c.mu.Lock()
	recent := time.Since(e.tried) < c.cfg.MinInterval
	want := e.inval
	c.mu.Unlock()
	if recent {
		if s := e.snap.Load(); s != nil && s.inval >= want {
			return s, nil
		}
	}
	c.startLoad(database, e, true)
	return c.wait(ctx, database, e, want)
}

// Invalidate drops every snapshot: the next use of a database loads it
// again.
func (c *Cache) Invalidate() {
	c.mu.Lock()
	for _, e := range c.dbs {
		e.inval++
		e.tried = time.Time{}
	}
	c.mu.Unlock()
	c.gen.Add(1)
}

// InvalidateDatabase drops the snapshot of one database (after a schema
// change): its next use loads it again.
func (c *Cache) InvalidateDatabase(database string) {
	c.mu.Lock()
	if e := c.dbs[database]; e != nil {
		e.inval++
		e.tried = time.Time{}
	}
	c.mu.Unlock()
	c.gen.Add(1)
}

func (c *Cache) entry(database string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.dbs[database]
	if e == nil {
		e = &entry{}
		c.dbs[database] = e
	}
	return e
}

// wait waits for a load of database that started after the invalidation
// want counts (starting one when none is under way and the snapshot is
// older) and returns its result.
func (c *Cache) wait(ctx context.Context, database string, e *entry, want uint64) (*Snapshot, error) {
	for {
		c.mu.Lock()
		ch := e.loading
		c.mu.Unlock()
		if ch == nil {
			if s := e.snap.Load(); s != nil && s.inval >= want {
				return s, nil
			}
			c.startLoad(database, e, true)
			c.mu.Lock()
			ch = e.loading
			err := e.err
			c.mu.Unlock()
			if ch == nil {
				// Too soon after a failed load.
				if err == nil {
					err = errors.New("catalog: not loaded")
				}
				return nil, err
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if s := e.snap.Load(); s != nil && s.inval >= want {
			return s, nil
		}
		c.mu.Lock()
		err := e.err
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

// startLoad starts a load of database unless one is under way, or, when
// force is false, one started within MinInterval. A failed load is not
// retried within MinInterval either way.
func (c *Cache) startLoad(database string, e *entry, force bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.loading != nil {
		return
	}
	if since := time.Since(e.tried); since < c.cfg.MinInterval && (!force || e.err != nil) {
		return
	}
	e.tried = time.Now()
	e.loadInval = e.inval
	e.loading = make(chan struct{})
	go c.load(database, e)
}

func (c *Cache) load(database string, e *entry) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.LoadTimeout)
	defer cancel()
	s, err := c.loadFrom(ctx, database)
	c.mu.Lock()
	defer c.mu.Unlock()
	e.err = err
	if err == nil {
		s.inval = e.loadInval
		if old := e.snap.Load(); old == nil || old.hash != s.hash {
			c.gen.Add(1)
		}
		e.snap.Store(s)
	}
	close(e.loading)
	e.loading = nil
}

func (c *Cache) loadFrom(ctx context.Context, database string) (*Snapshot, error) {
	conn, err := c.cfg.Connector.Connect(ctx, database)
	if err != nil {
		return nil, fmt.Errorf("catalog: connect to database %q: %w", database, err)
	}
	defer conn.Close(context.Background())
	return Load(ctx, conn)
}

// Describe is a one-line description of f for messages and audit records,
// e.g. "pg_catalog.ts_rewrite(tsquery, text)".
func Describe(f *Function) string {
	var b strings.Builder
	b.WriteString(f.Schema)
	b.WriteByte('.')
	b.WriteString(f.Name)
	b.WriteByte('(')
	b.WriteString(f.Arguments)
	b.WriteByte(')')
	return b.String()
}

// NewSnapshot is a snapshot of the given functions (and no operators), for
// tools and tests that have no database.
func NewSnapshot(fns ...Function) *Snapshot {
	s := &Snapshot{byName: map[string][]*Function{}, byOID: map[uint32]*Function{}, ops: map[string][]operator{}, Loaded: time.Now()}
	h := sha256.New()
	for i := range fns {
		f := fns[i]
		s.byName[f.Name] = append(s.byName[f.Name], &f)
		s.byOID[f.OID] = &f
		s.count++
		fmt.Fprintf(h, "%d\x00%s\x00%s\x00%s\x00", f.OID, f.Schema, f.Name, f.Arguments)
	}
	copy(s.hash[:], h.Sum(nil))
	return s
}

// Static serves one snapshot for every database and never reloads it (for
// tools and tests).
type Static struct{ S *Snapshot }

// Snapshot returns the snapshot.
func (c Static) Snapshot(context.Context, string) (*Snapshot, error) { return c.S, nil }

// Refresh returns the snapshot.
func (c Static) Refresh(context.Context, string) (*Snapshot, error) { return c.S, nil }

// Generation is always 0.
func (c Static) Generation() uint64 { return 0 }

// InvalidateDatabase does nothing: the snapshot is static.
func (c Static) InvalidateDatabase(string) {}
