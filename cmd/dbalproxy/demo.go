package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/rs/zerolog"
)

// demoLogins are the seed's four roles, each with its own name as password
// (demo only) and a user_id claim matching its users row.
var demoLogins = []LoginConfig{
	{Name: "alice", Password: "alice", Role: "user", Claims: map[string]any{"user_id": "u_alice"}},
	{Name: "bob", Password: "bob", Role: "admin", Claims: map[string]any{"user_id": "u_bob"}},
	{Name: "carol", Password: "carol", Role: "god", Claims: map[string]any{"user_id": "u_carol"}},
	{Name: "dave", Password: "dave", Role: "supergod", Claims: map[string]any{"user_id": "u_dave"}},
}

func demoCmd(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runDemo(ctx, args, stdout, stderr)
}

// runDemo runs the demo until ctx ends.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:6432", "client-facing listen address")
	policies := fs.String("policies", "policies", "policy directory (the shipped role matrix by default)")
	wsListen := fs.String("websocket", "", "WebSocket and HTTP address for the Neon serverless driver (default: the --listen port + 1; off to disable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if st, err := os.Stat(*policies); err != nil || !st.IsDir() {
		return fmt.Errorf("no policy directory %q: run the demo from the repository root or pass --policies DIR", *policies)
	}

	// The port first: a busy one should not cost a PostgreSQL start.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
		}
		return fmt.Errorf("demo: cannot listen on %s: %w\nuse --listen ADDR for another address, e.g. --listen 127.0.0.1:6433 (or 127.0.0.1:0 for any free port)",
			*listen, err)
	}
	defer ln.Close()

	fmt.Fprintln(stdout, "Starting a throwaway PostgreSQL...")
	cluster, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	const db = "app"
	if err := cluster.CreateDatabase(ctx, db); err != nil {
		return err
	}
	if err := testenv.LoadDemo(ctx, cluster.AppURL(db)); err != nil {
		return err
	}

	cfg := defaultConfig()
	cfg.Listen = *listen
	cfg.Backend.URL = cluster.AppURL(db)
	cfg.Logins = demoLogins
	cfg.Log = LogConfig{Level: "info", Format: "console"}
	cfg.Policy.Dir = *policies
	cfg.Audit = AuditConfig{Output: "stdout", Format: "console", QueueSize: 4096}
	cfg.WebSocket.Listen = *wsListen
	if cfg.WebSocket.Listen == "" {
		cfg.WebSocket.Listen = nextPort(*listen)
	}
	if err := validateConfig(&cfg); err != nil {
		return err
	}
	// Each denial is shown by its audit record on stdout; the proxy's log
	// line about it would say it again.
	log := newLogger(cfg.Log, stderr).Hook(dropMessage("statement denied"))
	var wsAddr string
	return serve(ctx, &cfg, log, serveOptions{stdout: stdout, listener: ln, bridgeReady: func(addr net.Addr) { wsAddr = addr.String() }, ready: func(addr net.Addr) {
		host, port, _ := net.SplitHostPort(addr.String())
		fmt.Fprintf(stdout, "\ndbalproxy demo is ready. Connect as one of the demo logins (password = login name):\n\n")
		for _, l := range demoLogins {
			fmt.Fprintf(stdout, "  psql 'postgres://%s:%s@%s:%s/%s?sslmode=disable'   # role %s\n",
				l.Name, l.Password, host, port, db, l.Role)
		}
		fmt.Fprintf(stdout, "\nThe admin console (SHOW HELP; supergod logins only):\n\n  psql 'postgres://dave:dave@%s:%s/%s?sslmode=disable'\n",
			host, port, cfg.Console.Database)
		if wsAddr != "" {
			printNeonLines(stdout, wsAddr, db)
		}
		backend, _ := url.Parse(cluster.AppURL(db))
		fmt.Fprintf(stdout, "\nThe backend itself, for comparison (the proxy's own credentials):\n\n  psql '%s'\n", backend)
		fmt.Fprintf(stdout, "\nCtrl-C stops the proxy and removes the database.\n\n")
	}})
}

// nextPort is addr with the next port number (port 0 stays 0), for the
// demo's WebSocket listener next to its TCP one.
func nextPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	n, err := strconv.Atoi(port)
	if err != nil || n == 0 || n >= 65535 {
		return net.JoinHostPort(host, "0")
	}
	return net.JoinHostPort(host, strconv.Itoa(n+1))
}

// printNeonLines prints what a Node.js program writes to reach the demo
// with the Neon serverless driver, over WebSocket and over HTTP.
func printNeonLines(w io.Writer, wsAddr, db string) {
	fmt.Fprintf(w, "\nThe Neon serverless driver (npm install @neondatabase/serverless ws) reaches it over WebSocket and HTTP:\n\n")
	fmt.Fprintf(w, "  import { Pool, neon, neonConfig } from '@neondatabase/serverless';\n")
	fmt.Fprintf(w, "  import ws from 'ws';\n")
	fmt.Fprintf(w, "  neonConfig.webSocketConstructor = ws;  // Node.js before 22\n")
	fmt.Fprintf(w, "  neonConfig.wsProxy = () => '%s/v2';\n", wsAddr)
	fmt.Fprintf(w, "  neonConfig.useSecureWebSocket = false;  // the demo has no TLS\n")
	fmt.Fprintf(w, "  neonConfig.fetchEndpoint = () => 'http://%s/sql';\n", wsAddr)
	fmt.Fprintf(w, "  const pool = new Pool({ connectionString: 'postgres://alice:alice@localhost/%s' });\n", db)
	fmt.Fprintf(w, "  const sql = neon('postgres://alice:alice@localhost/%s');\n", db)
}

// dropMessage is a log hook that discards the lines with message msg.
type dropMessage string

// Run implements zerolog.Hook.
func (m dropMessage) Run(e *zerolog.Event, _ zerolog.Level, msg string) {
	if msg == string(m) {
		e.Discard()
	}
}
