package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/dbalproxy/dbalproxy/testenv"
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
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:6432", "client-facing listen address")
	policies := fs.String("policies", "policies", "policy directory (the shipped role matrix by default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if st, err := os.Stat(*policies); err != nil || !st.IsDir() {
		return fmt.Errorf("no policy directory %q: run the demo from the repository root or pass --policies DIR", *policies)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

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
	if err := validateConfig(&cfg); err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	return serve(ctx, &cfg, log, serveOptions{ready: func(addr net.Addr) {
		host, port, _ := net.SplitHostPort(addr.String())
		fmt.Fprintf(stdout, "\ndbalproxy demo is ready. Connect as one of the demo logins (password = login name):\n\n")
		for _, l := range demoLogins {
			fmt.Fprintf(stdout, "  psql 'postgres://%s:%s@%s:%s/%s?sslmode=disable'   # role %s\n",
				l.Name, l.Password, host, port, db, l.Role)
		}
		backend, _ := url.Parse(cluster.AppURL(db))
		fmt.Fprintf(stdout, "\nThe backend itself, for comparison (the proxy's own credentials):\n\n  psql '%s'\n", backend)
		fmt.Fprintf(stdout, "\nCtrl-C stops the proxy and removes the database.\n\n")
	}})
}
