package planner

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/catalog"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/sqlscope"
)

// FunctionCatalog tells what the functions a statement names are, from
// the database's pg_proc, and what its relations' columns are;
// *catalog.Cache implements it.
type FunctionCatalog interface {
	// Snapshot returns the functions of database.
	Snapshot(ctx context.Context, database string) (*catalog.Snapshot, error)
	// Refresh reads them again (rate-limited), for a name the snapshot
	// does not know.
	Refresh(ctx context.Context, database string) (*catalog.Snapshot, error)
	// Generation changes whenever what a snapshot says changes.
	Generation() uint64
	// InvalidateDatabase drops what is known of database (after a schema
	// change): its next use reads it again, and Generation changes.
	InvalidateDatabase(database string)
}

// CatalogChanged implements Decider.
func (p *Planner) CatalogChanged(database string) {
	if p.cfg.Catalog != nil {
		p.cfg.Catalog.InvalidateDatabase(database)
	}
}

// functionResolver resolves the functions of the statements of one text
// against one database's catalog, loading it only when a statement calls
// something, and refreshing it once when a name is unknown.
//
// It also gives the rewriter the relations of the same snapshot
// (rewrite.Tables), loading it on first use.
type functionResolver struct {
	ctx          context.Context // bounds loading the catalog for Relation
	cat          FunctionCatalog // nil: nothing is resolved
	database     string
	snap         *catalog.Snapshot
	err          error
	refreshed    bool
	relRefreshed bool
}

// Relation implements rewrite.Tables: the relation in the database's
// catalog (read again once if it is unknown), or nil without a catalog.
func (r *functionResolver) Relation(schema, name string) *catalog.Relation {
	if r == nil || r.cat == nil {
		return nil
	}
	ctx := r.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if r.snap == nil && r.err == nil {
		r.snap, r.err = r.cat.Snapshot(ctx, r.database)
	}
	if r.err != nil {
		return nil
	}
	rel := r.snap.Relation(schema, name)
	if rel == nil && !r.relRefreshed {
		r.relRefreshed = true
		if snap, err := r.cat.Refresh(ctx, r.database); err == nil {
			r.snap = snap
			rel = snap.Relation(schema, name)
		}
	}
	return rel
}

// resolve returns the policy's view of st's functions and the names of
// those it calls, for the audit record ("schema.name" of each resolved
// candidate). A field selection that is no function's name is a column or
// a field, not a call, and is left out. An error means the catalog could
// not be read: the statement must be denied.
func (r *functionResolver) resolve(ctx context.Context, st *parser.Statement) ([]decision.Function, []string, error) {
	if len(st.Functions) == 0 {
		return nil, nil, nil
	}
	if r.cat == nil {
		// No catalog (explain without a database): report the names,
		// unresolved; policies deny what they cannot look at.
		out := make([]decision.Function, 0, len(st.Functions))
		var names []string
		for _, f := range st.Functions {
			if f.Operator {
				continue // operators are looked at only in a catalog
			}
			out = append(out, decision.Function{Schema: f.Schema, Name: f.Name, Args: f.Args, Field: f.Field})
			if !f.Field {
				names = append(names, qualifiedFunction(f.Schema, f.Name))
			}
		}
		return out, names, nil
	}
	if r.snap == nil && r.err == nil {
		r.snap, r.err = r.cat.Snapshot(ctx, r.database)
	}
	if r.err != nil {
		return nil, nil, r.err
	}
	out, names, unknown := resolveWith(r.snap, st.Functions)
	if unknown && !r.refreshed {
		// Created since the snapshot was read? Look once more.
		r.refreshed = true
		if snap, err := r.cat.Refresh(ctx, r.database); err == nil {
			r.snap = snap
			out, names, _ = resolveWith(snap, st.Functions)
		}
	}
	return out, names, nil
}

// resolveWith resolves fns in snap; unknown reports a called name (not a
// field selection) that matches no function.
func resolveWith(snap *catalog.Snapshot, fns []parser.Function) (out []decision.Function, names []string, unknown bool) {
	out = make([]decision.Function, 0, len(fns))
	seen := map[string]bool{}
	for _, f := range fns {
		var cands []*catalog.Function
		if f.Operator {
			own, known := snap.ResolveOperator(f.Schema, f.Name, f.Args)
			if !known {
				unknown = true // created since? PostgreSQL would refuse it otherwise
			}
			if len(own) == 0 {
				continue // built-in operators only (see ResolveOperator)
			}
			cands = own
		} else {
			cands = snap.Resolve(f.Schema, f.Name, f.Args)
		}
		if len(cands) == 0 {
			if f.Field {
				continue
			}
			unknown = true
			if n := qualifiedFunction(f.Schema, f.Name); !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
		pf := decision.Function{Schema: f.Schema, Name: f.Name, Args: f.Args, Field: f.Field, Operator: f.Operator, Resolved: true,
			Candidates: make([]decision.FunctionCandidate, len(cands))}
		for i, c := range cands {
			pf.Candidates[i] = decision.FunctionCandidate{
				Schema: c.Schema, Name: c.Name, Arguments: c.Arguments, OID: c.OID, Builtin: c.Builtin(),
				Kind: c.Kind, Volatility: c.Volatility, Language: c.Language,
				SecurityDefiner: c.SecurityDefiner, ReturnsSet: c.ReturnsSet,
			}
			if n := c.Schema + "." + c.Name; !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
		out = append(out, pf)
	}
	return out, names, unknown
}

func qualifiedFunction(schema, name string) string {
	if schema == "" {
		return name
	}
	return schema + "." + name
}

// catalogDenial is the reason a statement is denied when the catalog could
// not be read.
func catalogDenial(err error) string {
	return fmt.Sprintf("the proxy could not look up the functions this statement calls in the database's catalog, so it is denied: %v", err)
}

// DecideFunctionCall implements Decider. The function is looked up by OID
// in the database's catalog (read again once if the OID is unknown) and
// decided as the SQL call "schema"."name"($1, …, $n): the policy sees the
// same input (every candidate of that name and arity, so never less than
// the OID's own function), and the audit record the same query. Without a
// catalog, or for an OID no function has, the call is denied.
func (p *Planner) DecideFunctionCall(ctx context.Context, s *plan.Session, oid uint32, args int) (*plan.Plan, error) {
	version := p.cfg.Policy.Version()
	deny := func(code, msg string) *plan.Plan {
		return &plan.Plan{Version: version,
			Statements: []plan.Statement{{Command: "FUNCTION CALL", Decision: audit.DecisionDeny, Reason: msg, PolicyVersion: version}},
			Deny:       &plan.Denial{Code: code, Message: msg}}
	}
	if p.cfg.Catalog == nil {
		return deny(plan.CodeInsufficientPriv, "a fast-path function call needs the proxy's function catalog, which is not configured"), nil
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.EvalTimeout)
	defer cancel()
	snap, err := p.cfg.Catalog.Snapshot(cctx, s.Database)
	if err != nil {
		p.cfg.Logger.Error().Err(err).Str("database", s.Database).Msg("function catalog unavailable; the fast-path call is denied")
		return deny(plan.CodeInsufficientPriv, catalogDenial(err)), nil
	}
	f := snap.ByOID(oid)
	if f == nil {
		if snap, err = p.cfg.Catalog.Refresh(cctx, s.Database); err == nil {
			f = snap.ByOID(oid)
		}
	}
	if f == nil {
		return deny(plan.CodeUndefinedFunction, fmt.Sprintf("function with OID %d does not exist", oid)), nil
	}
	if args < 0 || args > 100 {
		return deny(plan.CodeProtocolViolation, "invalid number of arguments in a function call"), nil
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	b.WriteString(sqlscope.QuoteIdent(f.Schema))
	b.WriteByte('.')
	b.WriteString(sqlscope.QuoteIdent(f.Name))
	b.WriteByte('(')
	for i := 1; i <= args; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(i))
	}
	b.WriteByte(')')
	pl, err := p.Decide(ctx, s, b.String())
	if err != nil || pl == nil {
		return pl, err
	}
	if pl.Deny == nil && (len(pl.Statements) != 1 || pl.SQL != b.String()) {
		// The policy would rewrite the call: there is nothing to rewrite
		// in a FunctionCall message, so it is denied.
		return deny(plan.CodeInsufficientPriv, "the policy rewrites this function call, which the fast-path protocol cannot carry"), nil
	}
	out := *pl // plans are shared: copy what changes
	out.Statements = append([]plan.Statement(nil), pl.Statements...)
	for i := range out.Statements {
		out.Statements[i].Command = "FUNCTION CALL"
	}
	return &out, nil
}
