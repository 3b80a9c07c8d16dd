package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/dbalproxy/dbalproxy/catalog"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/planner"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/rewrite"
	"github.com/rs/zerolog"
)

// policyCmd runs `dbalproxy policy test [dir]`: the Rego unit tests of a
// policy directory, with the OPA built into the proxy.
func policyCmd(args []string, stdout, stderr io.Writer) error {
	const use = "usage: dbalproxy policy test [-v] [--coverage [--json]] [DIR]   run the Rego tests of a policy directory (default policies) and check that the proxy would load it"
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help") {
		fmt.Fprintln(stdout, use)
		return nil
	}
	if len(args) == 0 || args[0] != "test" {
		return usageError{errors.New(use)}
	}
	fs := flag.NewFlagSet("policy test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), use)
		fs.PrintDefaults()
	}
	verbose := fs.Bool("v", false, "list every test and its print() output")
	coverage := fs.Bool("coverage", false, "report which lines of the policy files the tests reach")
	asJSON := fs.Bool("json", false, "with --coverage: print only OPA's coverage report, as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *asJSON && !*coverage {
		return usageError{errors.New("--json goes with --coverage")}
	}
	dir := "policies"
	if fs.NArg() > 0 {
		dir = fs.Arg(0)
	}
	out := stdout
	if *asJSON {
		out = stderr // the test report; stdout carries the JSON alone
	}
	rep, err := policy.Test(context.Background(), dir, out, policy.TestOptions{Verbose: *verbose, Coverage: *coverage})
	if rep == nil {
		return err
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", rep.Passed, rep.Failed)
	if rep.Coverage != nil {
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep.Coverage); err != nil {
				return err
			}
		} else {
			policy.WriteCoverage(stdout, rep.Coverage)
		}
	}
	if err != nil {
		return err // the proxy would refuse the set
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%d policy test(s) failed", rep.Failed)
	}
	return nil
}

// exitDenied is explain's exit status when the statement is denied (0:
// allowed; 1: explain itself failed; 2: unknown command).
const exitDenied = 3

// explainReport is what explain found, printed as text or, with --json, as
// one JSON object.
type explainReport struct {
	Principal struct {
		User   string         `json:"user"`
		Role   string         `json:"role"`
		Claims map[string]any `json:"claims"`
	} `json:"principal"`
	Policies struct {
		Dir     string `json:"dir"`
		Version string `json:"version"`
		Mode    string `json:"mode"`
	} `json:"policies"`
	// FunctionsResolved is false without --backend: calls are then not
	// looked up, and the shipped policies deny them.
	FunctionsResolved bool               `json:"functions_resolved"`
	ParseError        string             `json:"parse_error,omitempty"`
	Statements        []explainStatement `json:"statements"`
	Decision          string             `json:"decision"` // allow or deny: whether the text runs
	Denial            *explainDenial     `json:"denial,omitempty"`
	BackendSQL        string             `json:"backend_sql,omitempty"` // what the backend receives when allowed
}

type explainStatement struct {
	Command     string         `json:"command"`
	Class       string         `json:"class,omitempty"`
	Tables      []explainTable `json:"tables"`
	Functions   []string       `json:"functions"`
	Flags       []string       `json:"flags,omitempty"`
	Fingerprint string         `json:"fingerprint,omitempty"`
	Normalized  string         `json:"normalized,omitempty"`
	Decision    string         `json:"decision"` // allow, rewrite, would_deny or deny
	Reason      string         `json:"reason"`
	Rewritten   string         `json:"rewritten,omitempty"`
	MaxRows     int            `json:"max_rows,omitempty"`
	TimeoutMS   int            `json:"timeout_ms,omitempty"`
}

type explainTable struct {
	Name    string              `json:"name"` // schema.table, as audit records name it
	Access  []string            `json:"access"`
	Columns map[string][]string `json:"columns,omitempty"`
}

type explainDenial struct {
	Statement int    `json:"statement"` // 1-based
	SQLState  string `json:"sqlstate"`
	Message   string `json:"message"`
	Detail    string `json:"detail,omitempty"`
}

// explainCmd runs `dbalproxy explain`: the facts, decision and plan of a
// statement for a login or a role, without a database (or with --backend,
// whose catalog resolves the calls). Its exit status is 0 when the text
// would run and exitDenied when it would be refused.
func explainCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv("DBALPROXY_CONFIG"), "configuration file: its logins and policy settings (env DBALPROXY_CONFIG)")
	loginName := fs.String("login", "", "decide as this login from the config (without --config: a demo login, alice, bob, carol or dave)")
	role := fs.String("role", "", "decide as a principal with this role (instead of --login)")
	claimsJSON := fs.String("claims", "{}", `claims of the --role principal, as JSON (e.g. {"user_id":"u_alice"})`)
	dir := fs.String("policies", "", "policy directory (default: the config's policy.dir, else policies)")
	mode := fs.String("mode", "", "strict, permissive or disabled (default: the config's policy.mode)")
	backendURL := fs.String("backend", "", "resolve the functions the statement calls in this database's catalog (a PostgreSQL URL); without it, calls are not resolved and the shipped policies deny them")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: dbalproxy explain [--login NAME | --role ROLE --claims JSON] [--config FILE] [--policies DIR] [--backend URL] [--json] 'SQL'")
		fmt.Fprintln(fs.Output(), "\nExit status: 0 when the text would run, 3 when it would be denied, 1 when explain fails.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("explain needs one SQL text argument")
	}
	sql := fs.Arg(0)
	cfg := defaultConfig()
	cfg.Logins = demoLogins
	if *configPath != "" {
		cfg.Logins = nil
		data, err := os.ReadFile(*configPath)
		if err != nil {
			return &configError{msg: fmt.Sprintf("cannot read %s: %v", *configPath, errors.Unwrap(err))}
		}
		if err := parseConfigFile(data, &cfg); err != nil && !onlyUnsetOutside(err, explainKeys) {
			return err
		}
	}
	if *dir != "" {
		cfg.Policy.Dir = *dir
		cfg.Policy.Bundle.URL = "" // the directory given wins over a bundle
	}
	if *mode != "" {
		cfg.Policy.Mode = *mode
	}
	var principal plan.Principal
	switch {
	case *loginName != "":
		found := false
		for _, l := range cfg.Logins {
			if l.Name == *loginName {
				principal = plan.Principal{User: l.Name, Role: l.Role, Claims: l.Claims}
				found = true
			}
		}
		if !found && *configPath == "" {
			names := make([]string, len(demoLogins))
			for i, l := range demoLogins {
				names[i] = l.Name
			}
			return fmt.Errorf("no login %q among the demo logins (%s); pass --config FILE to use a configuration's logins, or --role", *loginName, strings.Join(names, ", "))
		}
		if !found {
			return fmt.Errorf("no login %q in %s", *loginName, *configPath)
		}
	case *role != "":
		var claims map[string]any
		if err := json.Unmarshal([]byte(*claimsJSON), &claims); err != nil {
			return fmt.Errorf("--claims is not a JSON object: %v", err)
		}
		principal = plan.Principal{User: "explain", Role: *role, Claims: claims}
	default:
		return errors.New("explain needs --login or --role")
	}

	p := parser.New(parser.Options{})
	popts := policyOptions(&cfg)
	popts.Logger, popts.RunTests = zerolog.Nop(), false
	engine, err := policy.New(popts)
	if err != nil {
		return err
	}
	pcfg := planner.Config{Parser: p, Policy: engine, Rewriter: rewrite.NewRewriter(0), Logger: zerolog.Nop()}
	database := "app"
	if *backendURL != "" {
		bp, err := pool.New(pool.Config{ConnString: *backendURL})
		if err != nil {
			return &configError{key: "--backend", msg: err.Error()}
		}
		defer bp.Close()
		database = bp.DefaultDatabase()
		pcfg.Catalog = catalog.NewCache(catalog.CacheConfig{Connector: bp})
	}
	pln, err := planner.New(pcfg)
	if err != nil {
		return err
	}
	pl, err := pln.Decide(context.Background(), &plan.Session{Principal: principal, Database: database}, sql)
	if err != nil {
		return err
	}

	rep := &explainReport{FunctionsResolved: *backendURL != ""}
	rep.Principal.User, rep.Principal.Role, rep.Principal.Claims = principal.User, principal.Role, principal.Claims
	if rep.Principal.Claims == nil {
		rep.Principal.Claims = map[string]any{}
	}
	rep.Policies.Dir, rep.Policies.Version, rep.Policies.Mode = policySource(&cfg), engine.Version(), string(engine.Mode())
	res, perr := p.Parse(sql)
	if perr != nil {
		rep.ParseError = perr.Error()
	}
	for i, ps := range pl.Statements {
		es := explainStatement{
			Command: ps.Command, Decision: ps.Decision, Reason: ps.Reason, Rewritten: ps.Rewritten,
			MaxRows: ps.MaxRows, TimeoutMS: ps.TimeoutMS, Tables: []explainTable{}, Functions: []string{},
		}
		if res != nil && i < len(res.Statements) {
			st := res.Statements[i]
			es.Class, es.Flags, es.Fingerprint, es.Normalized = string(st.Class), st.Flags, st.Fingerprint, st.Normalized
			for j, t := range st.Tables {
				et := explainTable{Access: make([]string, len(t.Access))}
				if j < len(ps.Tables) {
					et.Name = ps.Tables[j]
				} else {
					et.Name = strings.TrimPrefix(t.Schema+"."+t.Name, ".")
				}
				for k, a := range t.Access {
					et.Access[k] = string(a)
					if cols := t.Columns[a]; len(cols) > 0 {
						if et.Columns == nil {
							et.Columns = map[string][]string{}
						}
						et.Columns[string(a)] = cols
					}
				}
				es.Tables = append(es.Tables, et)
			}
			if *backendURL != "" {
				es.Functions = append(es.Functions, ps.Functions...)
			} else {
				for _, f := range st.Functions {
					if f.Field || f.Operator {
						continue // resolved only in a database's catalog
					}
					es.Functions = append(es.Functions, strings.TrimPrefix(f.Schema+"."+f.Name, "."))
				}
			}
		}
		rep.Statements = append(rep.Statements, es)
	}
	if d := pl.Deny; d != nil {
		rep.Decision = "deny"
		rep.Denial = &explainDenial{Statement: d.Index + 1, SQLState: d.Code, Message: d.Message, Detail: d.Detail}
	} else {
		rep.Decision = "allow"
		rep.BackendSQL = strings.TrimSpace(pl.SQL)
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.writeText(stdout)
	}
	if rep.Denial != nil {
		return exitStatus(exitDenied)
	}
	return nil
}

// writeText prints the report for a reader.
func (rep *explainReport) writeText(w io.Writer) {
	claims, _ := json.Marshal(rep.Principal.Claims)
	fmt.Fprintf(w, "principal: %s (role %q, claims %s)\n", rep.Principal.User, rep.Principal.Role, claims)
	fmt.Fprintf(w, "policies:  %s (version %s, mode %s)\n", rep.Policies.Dir, rep.Policies.Version, rep.Policies.Mode)
	if !rep.FunctionsResolved {
		fmt.Fprintln(w, "functions: not resolved (no --backend database)")
	}
	if rep.ParseError != "" {
		fmt.Fprintf(w, "\nparse error: %s\n", rep.ParseError)
	}
	for i, es := range rep.Statements {
		fmt.Fprintf(w, "\nstatement %d: %s\n", i+1, orDash(es.Command))
		if es.Class != "" {
			fmt.Fprintf(w, "  class:       %s\n", es.Class)
		}
		for _, t := range es.Tables {
			fmt.Fprintf(w, "  table:       %s %v", t.Name, t.Access)
			for _, a := range t.Access {
				if cols := t.Columns[a]; len(cols) > 0 {
					fmt.Fprintf(w, " %s(%s)", a, strings.Join(cols, ","))
				}
			}
			fmt.Fprintln(w)
		}
		for _, f := range es.Functions {
			fmt.Fprintf(w, "  function:    %s\n", f)
		}
		if len(es.Flags) > 0 {
			fmt.Fprintf(w, "  flags:       %s\n", strings.Join(es.Flags, ", "))
		}
		if es.Fingerprint != "" {
			fmt.Fprintf(w, "  fingerprint: %s\n", es.Fingerprint)
			fmt.Fprintf(w, "  normalized:  %s\n", es.Normalized)
		}
		fmt.Fprintf(w, "  decision:    %s: %s\n", es.Decision, es.Reason)
	}
	if d := rep.Denial; d != nil {
		fmt.Fprintf(w, "\nDENIED (SQLSTATE %s): %s\n", d.SQLState, d.Message)
	} else {
		fmt.Fprintf(w, "\nALLOWED; the backend receives:\n  %s\n", rep.BackendSQL)
	}
}

// explainKeys are the keys explain reads: the policy settings and the
// logins' names, roles and claims.
var explainKeys = regexp.MustCompile(`^(policy|logins\[\d+\]\.(name|role|claims))([.\[]|$)`)

// onlyUnsetOutside reports whether err consists only of ${NAME} references
// to unset variables at keys that needed does not match: explain needs
// neither the backend's password nor the logins'.
func onlyUnsetOutside(err error, needed *regexp.Regexp) bool {
	for _, e := range splitErrors(err) {
		var ce *configError
		if !errors.As(e, &ce) || ce.unsetVar == "" || needed.MatchString(ce.key) {
			return false
		}
	}
	return true
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
