package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dbalproxy/dbalproxy/catalog"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/rewrite"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/rs/zerolog"
)

// policyCmd runs `dbalproxy policy test [dir]`: the Rego unit tests of a
// policy directory, with the OPA built into the proxy.
func policyCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		return errors.New("usage: dbalproxy policy test [-v] [dir]")
	}
	fs := flag.NewFlagSet("policy test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "list every test")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	dir := "policies"
	if fs.NArg() > 0 {
		dir = fs.Arg(0)
	}
	passed, failed, err := policy.RunTests(context.Background(), dir, stdout, *verbose)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return fmt.Errorf("%d policy test(s) failed", failed)
	}
	return nil
}

// explainCmd runs `dbalproxy explain`: the facts, decision and plan of a
// statement for a login or a role, without a database.
func explainCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv("DBALPROXY_CONFIG"), "configuration file: its logins and policy settings")
	loginName := fs.String("login", "", "decide as this login from the config (or a demo login: alice, bob, carol, dave)")
	role := fs.String("role", "", "decide as a principal with this role (instead of --login)")
	claimsJSON := fs.String("claims", "{}", `claims of the --role principal, as JSON (e.g. {"user_id":"u_alice"})`)
	dir := fs.String("policies", "", "policy directory (default: the config's policy.dir, else policies)")
	mode := fs.String("mode", "", "strict, permissive or disabled (default: the config's policy.mode)")
	backendURL := fs.String("backend", "", "resolve the functions the statement calls in this database's catalog (a PostgreSQL URL); without it, calls are not resolved and the shipped policies deny them")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: dbalproxy explain [--login NAME | --role ROLE --claims JSON] [--policies DIR] [--backend URL] 'SQL'")
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
		if err := parseConfigFile(data, &cfg); err != nil {
			return err
		}
	}
	if *dir != "" {
		cfg.Policy.Dir = *dir
	}
	if *mode != "" {
		cfg.Policy.Mode = *mode
	}
	var principal wire.Principal
	switch {
	case *loginName != "":
		found := false
		for _, l := range cfg.Logins {
			if l.Name == *loginName {
				principal = wire.Principal{User: l.Name, Role: l.Role, Claims: l.Claims}
				found = true
			}
		}
		if !found {
			return fmt.Errorf("no login %q in the configuration", *loginName)
		}
	case *role != "":
		var claims map[string]any
		if err := json.Unmarshal([]byte(*claimsJSON), &claims); err != nil {
			return fmt.Errorf("--claims is not a JSON object: %v", err)
		}
		principal = wire.Principal{User: "explain", Role: *role, Claims: claims}
	default:
		return errors.New("explain needs --login or --role")
	}

	p := parser.New(parser.Options{})
	engine, err := policy.New(policy.Options{Dir: cfg.Policy.Dir, Mode: policy.Mode(cfg.Policy.Mode), Logger: zerolog.Nop(), RunTests: false})
	if err != nil {
		return err
	}
	pcfg := wire.PlannerConfig{Parser: p, Policy: engine, Rewriter: rewrite.NewRewriter(0), Logger: zerolog.Nop()}
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
	planner, err := wire.NewPlanner(pcfg)
	if err != nil {
		return err
	}
	plan, err := planner.Decide(context.Background(), &wire.SessionInfo{Principal: principal, Database: database}, sql)
	if err != nil {
		return err
	}
	claims, _ := json.Marshal(principal.Claims)
	fmt.Fprintf(stdout, "principal: %s (role %q, claims %s)\n", principal.User, principal.Role, claims)
	fmt.Fprintf(stdout, "policies:  %s (version %s, mode %s)\n", cfg.Policy.Dir, engine.Version(), engine.Mode())
	if *backendURL == "" {
		fmt.Fprintln(stdout, "functions: not resolved (no --backend database)")
	}
	res, perr := p.Parse(sql)
	if perr != nil {
		fmt.Fprintf(stdout, "\nparse error: %v\n", perr)
	}
	for i, ps := range plan.Statements {
		fmt.Fprintf(stdout, "\nstatement %d: %s\n", i+1, orDash(ps.Command))
		if res != nil && i < len(res.Statements) {
			st := res.Statements[i]
			fmt.Fprintf(stdout, "  class:       %s\n", st.Class)
			for _, t := range st.Tables {
				name := t.Name
				if t.Schema != "" {
					name = t.Schema + "." + name
				}
				fmt.Fprintf(stdout, "  table:       %s %v", name, t.Access)
				for _, a := range t.Access {
					if cols := t.Columns[a]; len(cols) > 0 {
						fmt.Fprintf(stdout, " %s(%s)", a, strings.Join(cols, ","))
					}
				}
				fmt.Fprintln(stdout)
			}
			if *backendURL != "" {
				for _, f := range ps.Functions {
					fmt.Fprintf(stdout, "  function:    %s\n", f)
				}
			} else {
				for _, f := range st.Functions {
					if f.Field || f.Operator {
						continue // resolved only in a database's catalog
					}
					fmt.Fprintf(stdout, "  function:    %s\n", strings.TrimPrefix(f.Schema+"."+f.Name, "."))
				}
			}
			if len(st.Flags) > 0 {
				fmt.Fprintf(stdout, "  flags:       %s\n", strings.Join(st.Flags, ", "))
			}
			fmt.Fprintf(stdout, "  fingerprint: %s\n", st.Fingerprint)
			fmt.Fprintf(stdout, "  normalized:  %s\n", st.Normalized)
		}
		fmt.Fprintf(stdout, "  decision:    %s: %s\n", ps.Decision, ps.Reason)
	}
	if plan.Deny != nil {
		fmt.Fprintf(stdout, "\nDENIED (SQLSTATE %s): %s\n", plan.Deny.Code, plan.Deny.Message)
	} else {
		fmt.Fprintf(stdout, "\nALLOWED; the backend receives:\n  %s\n", strings.TrimSpace(plan.SQL))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
