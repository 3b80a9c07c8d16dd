package parser

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	pgparser "github.com/pganalyze/pg_query_go/v6/parser"
)

// Class is the broad kind of a statement. See the package documentation for
// the rule that assigns it.
type Class string

// The statement classes.
const (
	ClassRead        Class = "read"
	ClassWrite       Class = "write"
	ClassDDL         Class = "ddl"
	ClassDCL         Class = "dcl"
	ClassTransaction Class = "transaction"
	ClassUtility     Class = "utility"
)

// Access is a kind of access a statement makes to a table.
type Access string

// The access kinds, in the order Table.Access sorts them.
const (
	AccessDelete   Access = "delete"
	AccessInsert   Access = "insert"
	AccessSelect   Access = "select"
	AccessTruncate Access = "truncate"
	AccessUpdate   Access = "update"
)

// Flags a Statement may carry.
const (
	FlagCopyProgram             = "copy_program"              // COPY ... TO/FROM PROGRAM
	FlagCopyFile                = "copy_file"                 // COPY ... TO/FROM a server-side file
	FlagCopyFromStdin           = "copy_from_stdin"           // COPY ... FROM STDIN
	FlagCopyToStdout            = "copy_to_stdout"            // COPY ... TO STDOUT
	FlagSetRole                 = "set_role"                  // SET [LOCAL] ROLE, RESET ROLE
	FlagSetSessionAuthorization = "set_session_authorization" // SET/RESET SESSION AUTHORIZATION
	FlagDataModifyingCTE        = "data_modifying_cte"        // WITH x AS (INSERT/UPDATE/DELETE/MERGE ...)
	FlagSelectForUpdate         = "select_for_update"         // FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE
	FlagHasParams               = "has_params"                // a $n parameter appears
	FlagExplainAnalyze          = "explain_analyze"           // EXPLAIN ANALYZE: the statement is executed
	FlagAmbiguousColumn         = "ambiguous_column"          // an unqualified column could belong to more than one relation, one of them a table
	FlagDynamicRelation         = "dynamic_relation"          // a sequence function (nextval, setval, currval) names its sequence by a value that is not a constant
)

// Table is one base table, view or other relation a statement references,
// with everything the statement does to it merged.
type Table struct {
	// Schema is the schema as written (folded as PostgreSQL folds
	// identifiers); "" when the name is unqualified.
	Schema string
	// Name is the relation name as written (folded).
	Name string
	// Access lists the kinds of access, sorted and unique. It is empty for a
	// relation that is only named (DDL, LOCK, GRANT, the new table of CREATE
	// TABLE AS). A write target whose columns are read (WHERE, SET
	// expressions, RETURNING) gets "select" entries in Columns/Star but not in
	// Access.
	Access []Access
	// Columns lists, per access kind, the columns known to be used, sorted
	// and unique. Never nil.
	Columns map[Access][]string
	// Star lists the access kinds for which all columns are used (SELECT *,
	// t.*, a whole-row reference, INSERT or COPY without a column list),
	// sorted and unique.
	Star []Access
}

// Function is a function a statement calls, or may call: a FuncCall
// anywhere (including table functions in FROM and CALL), and every name
// written as a field selection. PostgreSQL treats `x.name` and `(x).name`
// as the call name(x) when x has no column or field of that name, so
// `(pid).pg_terminate_backend` is a call without a FuncCall node; whether
// such a name is a call is known only from the catalog (see Field).
type Function struct {
	Schema string // as written; "" when unqualified
	Name   string // folded as PostgreSQL folds identifiers
	// Args is the number of arguments written, or -1 when it is not known
	// (a VARIADIC argument).
	Args int
	// Field is true for a name spelled as a field selection: the call
	// Name(x) with one argument, if a function of that name takes one.
	Field bool
	// Operator is true for an operator (Name is its symbol, "+", "~~";
	// Args is 1 for a prefix operator, else 2): it runs the function
	// behind it (pg_operator.oprcode).
	Operator bool
}

// ConfigUnknown is the ConfigNames entry of a set_config call whose
// setting name is not a string constant.
const ConfigUnknown = "?"

// Setting describes a SET, SET LOCAL or RESET statement.
type Setting struct {
	// Name is the lowercased parameter name: "search_path", "role",
	// "session_authorization", "timezone", "dbal.token", "all" for RESET
	// ALL, "transaction" for SET TRANSACTION.
	Name string
	// Local is true for SET LOCAL.
	Local bool
	// Value is the value as text when it is a single constant, else "".
	Value string
	// IsReset is true for RESET, RESET ALL and SET name TO DEFAULT.
	IsReset bool
}

// Statement holds the facts of one statement. It is shared through the
// cache: callers must treat it, and everything it points to, as read-only.
type Statement struct {
	// Command is the PostgreSQL command tag (see the package documentation).
	Command string
	// Class is the statement class (see the package documentation).
	Class Class
	// Tables lists every relation referenced, merged per (schema, name),
	// sorted by schema then name. Never nil.
	Tables []Table
	// Functions lists every function called, sorted and unique. Never nil.
	Functions []Function
	// Flags lists markers (the Flag constants), sorted and unique. Never nil.
	Flags []string
	// Setting is set for SET, SET LOCAL and RESET statements, else nil.
	Setting *Setting
	// DefaultSetting is set for ALTER SYSTEM, ALTER ROLE ... SET/RESET and
	// ALTER DATABASE ... SET/RESET: the setting whose default (the
	// server's, a role's or a database's) the statement changes. Else nil.
	DefaultSetting *Setting
	// ConfigNames lists the settings the statement's set_config calls
	// change (the first argument, lower-cased), sorted; ConfigUnknown
	// stands for a name that is not a string constant. Nil when there is
	// no set_config call.
	ConfigNames []string
	// Text is this statement's own text, sliced from the input: leading
	// whitespace and comments and trailing whitespace and semicolons are
	// trimmed.
	Text string
	// Location is the byte offset of Text in the input.
	Location int
	// Length is the byte length of Text.
	Length int
	// Fingerprint is the pg_query fingerprint (hex) of Text.
	Fingerprint string
	// Normalized is Text with constants replaced by $n (pg_query
	// Normalize); safe to log.
	Normalized string
	// ParamCount is the highest $n used in Text (0 if none).
	ParamCount int
	// Tree is the parse tree of this statement, for the rewriter. It is
	// shared and cached: callers must not mutate it (clone it with
	// proto.Clone first). Node locations in it are byte offsets into the
	// whole input, not into Text.
	Tree *pg_query.RawStmt `json:"-"`
}

// Result holds the statements of one query string, in input order. It is
// empty (len 0) for an empty or comment-only query.
type Result struct {
	Statements []*Statement
}

// Options configures a Parser. The zero value is usable.
type Options struct {
	// CacheSize is the number of query texts whose results are cached.
	// Zero or negative means 10000.
	CacheSize int
	// MaxCachedTextLen is the longest text (in bytes) that is cached;
	// longer texts are parsed every time. Zero or negative means 64 KiB.
	MaxCachedTextLen int
}

const (
	defaultCacheSize        = 10000
	defaultMaxCachedTextLen = 64 << 10
)

// Parser parses query texts into statement facts and caches the results by
// text. It is safe for concurrent use.
type Parser struct {
	cache  *lru.Cache[string, cacheEntry]
	maxLen int
	hits   atomic.Uint64
	misses atomic.Uint64
}

// cacheEntry is the cached outcome of one text: a result or an error.
type cacheEntry struct {
	res *Result
	err error
}

// New returns a Parser configured by opts.
func New(opts Options) *Parser {
	size := opts.CacheSize
	if size <= 0 {
		size = defaultCacheSize
	}
	maxLen := opts.MaxCachedTextLen
	if maxLen <= 0 {
		maxLen = defaultMaxCachedTextLen
	}
	cache, err := lru.New[string, cacheEntry](size)
	if err != nil {
		// lru.New fails only for a non-positive size, excluded above.
		panic(fmt.Sprintf("parser: create cache: %v", err))
	}
	return &Parser{cache: cache, maxLen: maxLen}
}

// Parse returns the facts of sql, from the cache when the same text was
// parsed before. The returned Result is shared and immutable. A text the
// grammar rejects yields a *SyntaxError, one whose parse tree could be too
// deep for pg_query (see CheckDepth) a *DepthError; errors are cached like
// results.
func (p *Parser) Parse(sql string) (*Result, error) {
	return p.ParseNormalized(sql, "")
}

// ParseNormalized is Parse for a text whose normalized form, Normalize(sql),
// the caller already has (a planner looking texts up by shape does): when
// the text is one statement spanning all of it, the statement's Normalized
// is that form, and the text goes through libpg_query once less. An empty
// normalized means unknown.
func (p *Parser) ParseNormalized(sql, normalized string) (*Result, error) {
	cacheable := len(sql) <= p.maxLen
	if cacheable {
		if e, ok := p.cache.Get(sql); ok {
			p.hits.Add(1)
			return e.res, e.err
		}
	}
	p.misses.Add(1)
	// Clone so that the cache (and every Text sliced from the key) does not
	// pin a larger buffer the caller's string may point into.
	key := strings.Clone(sql)
	res, err := analyze(key, normalized)
	if cacheable {
		p.cache.Add(key, cacheEntry{res: res, err: err})
	}
	return res, err
}

// CacheStats returns the number of cache hits and misses so far.
func (p *Parser) CacheStats() (hits, misses uint64) {
	return p.hits.Load(), p.misses.Load()
}

// SyntaxError is returned for a query PostgreSQL's grammar rejects.
type SyntaxError struct {
	// Message is PostgreSQL's message, e.g. `syntax error at or near "FROM"`.
	Message string
	// Position is the 1-based character position of the error in the input
	// (as the 'P' field of an ErrorResponse), or 0 when unknown.
	Position int
}

// Error implements error.
func (e *SyntaxError) Error() string {
	if e.Position > 0 {
		return fmt.Sprintf("parser: %s (position %d)", e.Message, e.Position)
	}
	return "parser: " + e.Message
}

// SQLState returns "42601" (syntax_error). PostgreSQL's raw parser raises a
// few other codes for rare lexical errors; they are all reported as 42601.
func (e *SyntaxError) SQLState() string { return "42601" }

// analyze parses input and extracts the facts of each statement;
// normalized is Normalize(input) or "".
func analyze(input, normalized string) (*Result, error) {
	if i := strings.IndexByte(input, 0); i >= 0 {
		// The C parser would silently stop at the NUL; PostgreSQL never
		// receives one inside a query string.
		return nil, &SyntaxError{Message: "query text contains a NUL byte", Position: charPos(input, i)}
	}
	tree, err := ParseTree(input) // refuses a tree too deep for pg_query's C code
	var de *DepthError
	if errors.As(err, &de) {
		return nil, de
	}
	if err != nil {
		var pe *pgparser.Error
		if errors.As(err, &pe) {
			return nil, &SyntaxError{Message: pe.Message, Position: pe.Cursorpos}
		}
		return nil, fmt.Errorf("parser: parse: %w", err)
	}
	res := &Result{Statements: make([]*Statement, 0, len(tree.Stmts))}
	for i, raw := range tree.Stmts {
		norm := ""
		if len(tree.Stmts) == 1 {
			norm = normalized
		}
		st, err := analyzeStmt(input, raw, norm)
		if err != nil {
			return nil, fmt.Errorf("parser: statement %d: %w", i+1, err)
		}
		res.Statements = append(res.Statements, st)
	}
	return res, nil
}

// analyzeStmt builds the facts of one raw statement of input; normalized,
// when not "", is Normalize(input).
func analyzeStmt(input string, raw *pg_query.RawStmt, normalized string) (*Statement, error) {
	loc, length := stmtSpan(input, int(raw.StmtLocation), int(raw.StmtLen))
	text := input[loc : loc+length]
	st := factsOf(raw.Stmt)
	st.Text, st.Location, st.Length, st.Tree = text, loc, length, raw
	var err error
	if normalized != "" && text == input {
		st.Normalized = normalized
	} else if st.Normalized, err = Normalize(text); err != nil {
		return nil, fmt.Errorf("normalize: %w", err)
	}
	if st.Fingerprint, err = fingerprint(text); err != nil {
		return nil, fmt.Errorf("fingerprint: %w", err)
	}
	return st, nil
}

// stmtSpan turns PostgreSQL's statement location and length (0 meaning "to
// the end") into the trimmed span of the statement in input.
func stmtSpan(input string, loc, length int) (int, int) {
	if loc < 0 || loc > len(input) {
		loc = 0
	}
	end := loc + length
	if length <= 0 || end > len(input) {
		end = len(input)
	}
	loc = skipLeading(input, loc, end)
	for end > loc && (isSpace(input[end-1]) || input[end-1] == ';') {
		end--
	}
	return loc, end - loc
}

// skipLeading returns the offset of the first byte in input[i:end] that is
// neither whitespace nor part of a comment.
func skipLeading(input string, i, end int) int {
	for i < end {
		switch {
		case isSpace(input[i]):
			i++
		case strings.HasPrefix(input[i:end], "--"):
			nl := strings.IndexByte(input[i:end], '\n')
			if nl < 0 {
				return end
			}
			i += nl + 1
		case strings.HasPrefix(input[i:end], "/*"):
			// Block comments nest in PostgreSQL.
			depth, j := 0, i
			for j < end {
				if strings.HasPrefix(input[j:end], "/*") {
					depth++
					j += 2
				} else if strings.HasPrefix(input[j:end], "*/") {
					depth--
					j += 2
					if depth == 0 {
						break
					}
				} else {
					j++
				}
			}
			if depth != 0 {
				return i // unterminated: the grammar would have failed; keep it
			}
			i = j
		default:
			return i
		}
	}
	return i
}

// isSpace reports whether c is whitespace to PostgreSQL's scanner.
func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\f', '\v':
		return true
	}
	return false
}

// charPos returns the 1-based character position of byte offset i in s.
func charPos(s string, i int) int {
	return len([]rune(s[:i])) + 1
}
