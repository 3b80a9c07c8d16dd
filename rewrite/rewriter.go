package rewrite

import (
	"encoding/json"
	"fmt"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/parser"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Rewriter applies decisions to statements, compiling each distinct set of
// rules once: the rules for a principal, its tables and a policy version
// repeat across statements, so their predicates are parsed and checked once
// and reused. It is safe for concurrent use.
type Rewriter struct {
	compiled *lru.Cache[string, compiled]
}

type compiled struct {
	c   *Compiled
	err error
}

// NewRewriter returns a Rewriter that keeps up to size compiled rule sets
// (0 means 1000).
func NewRewriter(size int) *Rewriter {
	if size <= 0 {
		size = 1000
	}
	c, _ := lru.New[string, compiled](size)
	return &Rewriter{compiled: c}
}

// Rewrite applies d's filters, checks and column rules to st. It returns the new
// text and whether it differs; an error (invalid rules, a forbidden column,
// a statement the rules cannot be applied to) means st must not run.
// tables is the database's catalog (see ApplyWith); nil for none.
func (r *Rewriter) Rewrite(st *parser.Statement, d *decision.Decision, tables Tables) (string, bool, error) {
	rules := Rules{Filters: d.Filters, Checks: d.Checks, Columns: d.Columns}
	key, err := json.Marshal(rules) // map keys are sorted: a canonical key
	if err != nil {
		return "", false, fmt.Errorf("the policy's row rules cannot be encoded: %v", err)
	}
	e, ok := r.compiled.Get(string(key))
	if !ok {
		c, err := Compile(rules)
		e = compiled{c: c, err: err}
		r.compiled.Add(string(key), e)
	}
	if e.err != nil {
		return "", false, fmt.Errorf("the policy's row rules are invalid: %v", e.err)
	}
	return ApplyWith(st, e.c, tables)
}
