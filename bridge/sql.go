package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// sqlQuery is one query of a request: SQL text and positional parameters.
type sqlQuery struct {
	Query  string            `json:"query"`
	Params []json.RawMessage `json:"params"`
}

// sqlRequest is the body neon() POSTs: one query, or {"queries": [...]}
// to run in one transaction.
type sqlRequest struct {
	sqlQuery
	Queries []sqlQuery `json:"queries"`
	batch   bool
	params  [][][]byte // per query, the text of each parameter (nil: NULL)
}

// parseSQLRequest decodes and checks a request body.
func parseSQLRequest(body []byte) (*sqlRequest, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("invalid JSON body: %w", err)
	}
	var req sqlRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("invalid request: %w", err)
	}
	_, hasQueries := raw["queries"]
	_, hasQuery := raw["query"]
	switch {
	case hasQueries && hasQuery:
		return nil, errors.New(`invalid request: "query" and "queries" together`)
	case hasQueries:
		if req.Queries == nil {
			return nil, errors.New(`invalid request: "queries" must be an array`)
		}
		req.batch = true
	case hasQuery:
		req.Queries = []sqlQuery{req.sqlQuery}
	default:
		return nil, errors.New(`invalid request: no "query" or "queries"`)
	}
	if len(req.Queries) > maxBatch {
		return nil, fmt.Errorf("invalid request: more than %d queries", maxBatch)
	}
	for i, q := range req.Queries {
		if len(q.Params) > maxParams {
			return nil, fmt.Errorf("invalid request: query %d has more than %d parameters", i, maxParams)
		}
		vals := make([][]byte, len(q.Params))
		for j, p := range q.Params {
			v, err := paramText(p)
			if err != nil {
				return nil, fmt.Errorf("invalid request: query %d parameter $%d: %w", i, j+1, err)
			}
			vals[j] = v
		}
		req.params = append(req.params, vals)
	}
	return &req, nil
}

const (
	maxBatch  = 1000
	maxParams = 65535 // the protocol's int16 count
)

// paramText turns a JSON parameter into PostgreSQL text: strings as they
// are, numbers and booleans as written, null as NULL, arrays as array
// literals ({...}), objects as JSON text. The driver sends strings (it
// formats values as node-postgres does); the rest is for other clients.
func paramText(p json.RawMessage) ([]byte, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(p))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []byte(x), nil
	case json.Number:
		return []byte(x.String()), nil
	case bool:
		return []byte(strconv.FormatBool(x)), nil
	case []any:
		var b strings.Builder
		if err := arrayLiteral(&b, x, 0); err != nil {
			return nil, err
		}
		return []byte(b.String()), nil
	default:
		var b bytes.Buffer
		if err := json.Compact(&b, p); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
}

// arrayLiteral writes a PostgreSQL array literal of a JSON array.
func arrayLiteral(b *strings.Builder, a []any, depth int) error {
	if depth > 6 { // PostgreSQL's MAXDIM
		return errors.New("array nested too deeply")
	}
	b.WriteByte('{')
	for i, e := range a {
		if i > 0 {
			b.WriteByte(',')
		}
		switch x := e.(type) {
		case nil:
			b.WriteString("NULL")
		case []any:
			if err := arrayLiteral(b, x, depth+1); err != nil {
				return err
			}
		case string:
			quoteElem(b, x)
		case json.Number:
			b.WriteString(x.String())
		case bool:
			b.WriteString(strconv.FormatBool(x))
		default:
			j, err := json.Marshal(x)
			if err != nil {
				return err
			}
			quoteElem(b, string(j))
		}
	}
	b.WriteByte('}')
	return nil
}

func quoteElem(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
}

// sqlField describes a result column, as node-postgres does.
type sqlField struct {
	Name             string `json:"name"`
	TableID          uint32 `json:"tableID"`
	ColumnID         uint16 `json:"columnID"`
	DataTypeID       uint32 `json:"dataTypeID"`
	DataTypeSize     int16  `json:"dataTypeSize"`
	DataTypeModifier int32  `json:"dataTypeModifier"`
	Format           string `json:"format"`
}

// sqlResult is one query's result in the driver's format.
type sqlResult struct {
	Fields     []sqlField `json:"fields"`
	Command    string     `json:"command"`
	RowCount   *int64     `json:"rowCount"`
	Rows       []any      `json:"rows"`
	RowAsArray bool       `json:"rowAsArray"`
}

// sqlError is an error in the driver's format: the fields of node-postgres's
// DatabaseError, and the proxy's decision_id for a denial.
type sqlError struct {
	Message          string `json:"message"`
	Code             string `json:"code,omitempty"`
	Severity         string `json:"severity,omitempty"`
	Detail           string `json:"detail,omitempty"`
	Hint             string `json:"hint,omitempty"`
	Position         string `json:"position,omitempty"`
	InternalPosition string `json:"internalPosition,omitempty"`
	InternalQuery    string `json:"internalQuery,omitempty"`
	Where            string `json:"where,omitempty"`
	Schema           string `json:"schema,omitempty"`
	Table            string `json:"table,omitempty"`
	Column           string `json:"column,omitempty"`
	DataType         string `json:"dataType,omitempty"`
	Constraint       string `json:"constraint,omitempty"`
	File             string `json:"file,omitempty"`
	Line             string `json:"line,omitempty"`
	Routine          string `json:"routine,omitempty"`
	DecisionID       string `json:"decision_id,omitempty"`
}

func itoaNZ(n int32) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(int(n))
}

func fromPgError(pe *pgconn.PgError) *sqlError {
	e := &sqlError{
		Message: pe.Message, Code: pe.Code, Severity: pe.Severity, Detail: pe.Detail, Hint: pe.Hint,
		Position: itoaNZ(pe.Position), InternalPosition: itoaNZ(pe.InternalPosition), InternalQuery: pe.InternalQuery,
		Where: pe.Where, Schema: pe.SchemaName, Table: pe.TableName, Column: pe.ColumnName, DataType: pe.DataTypeName,
		Constraint: pe.ConstraintName, File: pe.File, Line: itoaNZ(pe.Line), Routine: pe.Routine,
	}
	if _, after, ok := strings.Cut(pe.Detail, "decision_id="); ok {
		id, _, _ := strings.Cut(after, ";")
		e.DecisionID = strings.TrimSpace(id)
	}
	return e
}

// httpError is a request the bridge refuses itself, with its HTTP status.
type httpError struct {
	status int
	err    sqlError
}

func (e *httpError) Error() string { return e.err.Message }

func badRequest(code, format string, args ...any) *httpError {
	return &httpError{status: http.StatusBadRequest, err: sqlError{Message: fmt.Sprintf(format, args...), Code: code, Severity: "ERROR"}}
}

// serveSQL answers POST /sql: one short session per request.
func (b *Bridge) serveSQL(w http.ResponseWriter, r *http.Request) {
	if !b.cors(w, r) {
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		writeJSON(w, http.StatusMethodNotAllowed, sqlError{Message: "use POST", Code: "08P01"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), b.cfg.RequestTimeout)
	defer cancel()
	out, err := b.runSQL(ctx, r)
	if err != nil {
		var he *httpError
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &he):
			writeJSON(w, he.status, he.err)
		case errors.As(err, &pe):
			writeJSON(w, http.StatusBadRequest, fromPgError(pe))
		case ctx.Err() != nil:
			writeJSON(w, http.StatusBadRequest, sqlError{Message: "canceling statement due to request timeout", Code: "57014", Severity: "ERROR"})
		default:
			b.cfg.Logger.Debug().Err(err).Str("client_addr", r.RemoteAddr).Msg("sql over http failed")
			writeJSON(w, http.StatusBadRequest, sqlError{Message: "could not run the request: " + err.Error(), Code: "08006", Severity: "ERROR"})
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// cors answers a preflight and sets the CORS headers for an allowed
// origin; it refuses a browser origin that is not allowed. It reports
// whether to go on.
func (b *Bridge) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin != "" {
		if !b.originAllowed(r) {
			b.cfg.Logger.Warn().Str("client_addr", r.RemoteAddr).Str("origin", origin).Msg("sql over http refused: origin not allowed")
			writeJSON(w, http.StatusForbidden, sqlError{Message: "origin not allowed", Code: "28000"})
			return false
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Neon-Connection-String, Neon-Raw-Text-Output, Neon-Array-Mode, Neon-Batch-Isolation-Level, Neon-Batch-Read-Only, Neon-Batch-Deferrable, Neon-Pool-Opt-In")
		h.Set("Access-Control-Max-Age", "600")
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// credentials are what a request logs in with.
type credentials struct {
	user, password, database, appName string
}

// parseConnString takes the login from a Neon-Connection-String
// (postgres://user:password@host/db?...). The host is ignored: the proxy
// never dials what a client names.
func parseConnString(s, bearer string) (*credentials, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.User == nil || u.User.Username() == "" {
		// Never echo the string: it carries a password.
		return nil, badRequest("08P01", "Neon-Connection-String is missing or not a postgres:// URL with a user")
	}
	c := &credentials{user: u.User.Username(), database: strings.TrimPrefix(u.Path, "/")}
	c.password, _ = u.User.Password()
	if bearer != "" {
		c.password = bearer
	}
	c.appName = u.Query().Get("application_name")
	return c, nil
}

// batchBegin is the BEGIN of a batch, from its headers.
func batchBegin(h http.Header) (string, error) {
	var b strings.Builder
	b.WriteString("BEGIN")
	switch v := h.Get("Neon-Batch-Isolation-Level"); v {
	case "":
	case "Serializable", "ReadUncommitted", "ReadCommitted", "RepeatableRead":
		level := map[string]string{"Serializable": "SERIALIZABLE", "ReadUncommitted": "READ UNCOMMITTED",
			"ReadCommitted": "READ COMMITTED", "RepeatableRead": "REPEATABLE READ"}[v]
		b.WriteString(" ISOLATION LEVEL " + level)
	default:
		return "", badRequest("22023", "invalid Neon-Batch-Isolation-Level %q", v)
	}
	for _, f := range []struct{ header, yes, no string }{
		{"Neon-Batch-Read-Only", " READ ONLY", " READ WRITE"},
		{"Neon-Batch-Deferrable", " DEFERRABLE", " NOT DEFERRABLE"},
	} {
		switch v := h.Get(f.header); v {
		case "":
		case "true":
			b.WriteString(f.yes)
		case "false":
			b.WriteString(f.no)
		default:
			return "", badRequest("22023", "invalid %s %q", f.header, v)
		}
	}
	return b.String(), nil
}

// runSQL runs a request and returns the response body.
func (b *Bridge) runSQL(ctx context.Context, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, b.cfg.MaxBodySize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &httpError{status: http.StatusRequestEntityTooLarge, err: sqlError{Message: fmt.Sprintf("request body larger than %d bytes", b.cfg.MaxBodySize), Code: "54000", Severity: "ERROR"}}
		}
		return nil, err
	}
	req, err := parseSQLRequest(body)
	if err != nil {
		return nil, badRequest("08P01", "%s", err.Error())
	}
	bearer := ""
	if a := r.Header.Get("Authorization"); a != "" {
		t, ok := strings.CutPrefix(a, "Bearer ")
		if !ok {
			return nil, badRequest("28000", "Authorization must be a Bearer token")
		}
		bearer = strings.TrimSpace(t)
	}
	creds, err := parseConnString(r.Header.Get("Neon-Connection-String"), bearer)
	if err != nil {
		return nil, err
	}
	begin := ""
	if req.batch {
		if begin, err = batchBegin(r.Header); err != nil {
			return nil, err
		}
	}
	arrayMode := r.Header.Get("Neon-Array-Mode") == "true"

	conn, err := b.connect(ctx, r, creds)
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	budget := b.cfg.MaxResponseSize
	var results []*sqlResult
	if begin != "" {
		if _, err := conn.Exec(ctx, begin).ReadAll(); err != nil {
			return nil, err
		}
	}
	for i, q := range req.Queries {
		res, err := runOne(ctx, conn, q.Query, req.params[i], arrayMode, &budget)
		if err != nil {
			return nil, err
		}
		results = append(results, res)
	}
	if begin != "" {
		if _, err := conn.Exec(ctx, "COMMIT").ReadAll(); err != nil {
			return nil, err
		}
		if conn.TxStatus() != 'I' {
			return nil, errors.New("the transaction did not commit")
		}
		return json.Marshal(struct {
			Results []*sqlResult `json:"results"`
		}{results})
	}
	return json.Marshal(results[0])
}

// runOne runs one query with the extended protocol, all in text.
func runOne(ctx context.Context, conn *pgconn.PgConn, sql string, params [][]byte, arrayMode bool, budget *int) (*sqlResult, error) {
	rr := conn.ExecParams(ctx, sql, params, nil, nil, nil)
	fds := rr.FieldDescriptions()
	res := &sqlResult{Fields: make([]sqlField, len(fds)), Rows: []any{}, RowAsArray: arrayMode}
	for i, f := range fds {
		res.Fields[i] = sqlField{Name: f.Name, TableID: f.TableOID, ColumnID: f.TableAttributeNumber, DataTypeID: f.DataTypeOID,
			DataTypeSize: f.DataTypeSize, DataTypeModifier: f.TypeModifier, Format: "text"}
	}
	var tooBig bool
	for rr.NextRow() {
		vals := rr.Values()
		cells := make([]*string, len(vals))
		for i, v := range vals {
			*budget -= len(v) + 8
			if v != nil {
				s := string(v)
				cells[i] = &s
			}
		}
		if *budget < 0 {
			tooBig = true
			break
		}
		if arrayMode {
			res.Rows = append(res.Rows, cells)
		} else {
			m := make(map[string]*string, len(cells))
			for i, c := range cells {
				m[fds[i].Name] = c
			}
			res.Rows = append(res.Rows, m)
		}
	}
	if tooBig {
		conn.Close(ctx)
		return nil, badRequest("54000", "the result is larger than the bridge's response limit")
	}
	tag, err := rr.Close()
	if err != nil {
		return nil, err
	}
	cmd := tag.String()
	res.Command, _, _ = strings.Cut(cmd, " ")
	if i := strings.LastIndexByte(cmd, ' '); i >= 0 {
		if n, err := strconv.ParseInt(cmd[i+1:], 10, 64); err == nil {
			res.RowCount = &n
		}
	}
	return res, nil
}

// connect logs in to the wire server over an in-memory connection, as the
// request's login. A cancelled context cancels the running query with a
// CancelRequest over another in-memory connection, as a client would.
func (b *Bridge) connect(ctx context.Context, r *http.Request, c *credentials) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig("postgres://bridge@bridge.invalid/?sslmode=disable&connect_timeout=0")
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password, cfg.Database = c.user, c.password, c.database
	// Nothing from the process's PG* environment may add steps.
	cfg.Fallbacks, cfg.ValidateConnect, cfg.AfterConnect, cfg.AfterNetConnect = nil, nil, nil, nil
	cfg.TLSConfig = nil
	cfg.RuntimeParams = map[string]string{}
	if c.appName != "" {
		cfg.RuntimeParams["application_name"] = c.appName
	}
	remote, local, secure := remoteAddr(r), localAddr(r), r.TLS != nil
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"bridge.invalid"}, nil }
	cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		if err := b.cfg.Server.ServeConn(&addrConn{Conn: server, remote: remote, local: local}, secure); err != nil {
			client.Close()
			return nil, err
		}
		return client, nil
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, CancelRequestDelay: 0, DeadlineDelay: 2 * time.Second}
	}
	return pgconn.ConnectConfig(ctx, cfg)
}
