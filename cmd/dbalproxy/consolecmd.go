package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dbalproxy/dbalproxy/console"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/status"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5/pgconn"
)

// ConsoleConfig configures the admin console: a client that connects to
// Database with a login of one of Roles gets PgBouncer-style commands
// (SHOW POOLS, RELOAD, PAUSE, ...) instead of a backend.
type ConsoleConfig struct {
	// Database is the console's database name; "off" disables the console.
	Database string `yaml:"database" doc:"admin console database name (off to disable)"`
	// Roles may use every console command.
	Roles []string `yaml:"roles" doc:"roles that may use the admin console (comma list)"`
	// StatsRoles may use its SHOW commands only.
	StatsRoles []string `yaml:"stats_roles" doc:"roles that may use the admin console's SHOW commands only (comma list)"`
}

// defaultConsole is the console's default configuration.
func defaultConsole() ConsoleConfig {
	return ConsoleConfig{Database: console.DefaultDatabase, Roles: slices.Clone(console.DefaultAdminRoles)}
}

// validateConsole checks the console keys.
func validateConsole(c ConsoleConfig, bad func(key, format string, args ...any)) {
	if c.Database == "" {
		bad("console.database", "is empty (off disables the console)")
	}
	if c.Database != "off" && len(c.Roles) == 0 && len(c.StatsRoles) == 0 {
		bad("console.roles", "no role may use the console: name one, or set console.database: off")
	}
}

// reloadResult is the outcome of the last policy reload, for SHOW POLICY.
type reloadResult struct {
	at  time.Time
	err error
}

// noteReload records a reload's outcome for SHOW POLICY.
func (px *proxy) noteReload(err error) {
	px.lastReload.Store(&reloadResult{at: time.Now(), err: err})
}

// consoleParts are what the console needs from serve.
type consoleParts struct {
	gate     *console.Gate
	stats    *console.Stats
	shutdown func()
}

// newConsole builds the admin console of cfg, or nil when it is off.
func (px *proxy) newConsole(cfg *Config, p *pool.Pool, parts consoleParts, load func() (*Config, error)) wire.Console {
	if cfg.Console.Database == "off" {
		return nil
	}
	var user, addr string
	if pc, err := pgconn.ParseConfig(cfg.Backend.URL); err == nil {
		user, addr = pc.User, net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port)))
	}
	return console.New(console.Config{
		Database: cfg.Console.Database, AdminRoles: cfg.Console.Roles, StatsRoles: cfg.Console.StatsRoles,
		Sessions: proxySessions{px}, Pools: p, PoolMode: cfg.Pool.Mode,
		BackendUser: user, BackendAddr: addr,
		Gate: parts.gate, Stats: parts.stats,
		Policy:   px.policyStatus,
		Settings: px.consoleSettings,
		Reload:   func() error { return px.reload(load) },
		Shutdown: parts.shutdown,
		Version:  version,
		Logger:   px.log.With().Str("component", "console").Logger(),
	})
}

// proxySessions are the server's sessions (the server is built after the
// console).
type proxySessions struct{ px *proxy }

func (s proxySessions) Sessions() []status.Session {
	if s.px.srv == nil {
		return nil
	}
	return s.px.srv.Sessions()
}

func (s proxySessions) KillSession(id string) bool {
	return s.px.srv != nil && s.px.srv.KillSession(id)
}

// policyStatus is SHOW POLICY.
func (px *proxy) policyStatus() console.PolicyStatus {
	px.mu.Lock()
	cfg := px.mu.cfg
	px.mu.Unlock()
	st := console.PolicyStatus{Mode: cfg.Policy.Mode, Dir: cfg.Policy.Dir}
	if px.engine != nil {
		st.Version = px.engine.Version()
		st.Mode = string(px.engine.Mode())
	}
	if st.Mode != string(decision.ModeDisabled) {
		if ents, err := os.ReadDir(cfg.Policy.Dir); err == nil {
			for _, e := range ents {
				switch filepath.Ext(e.Name()) {
				case ".rego", ".json", ".yaml", ".yml":
					st.Files = append(st.Files, e.Name())
				}
			}
		}
	}
	if r := px.lastReload.Load(); r != nil {
		st.LastReload, st.LastResult = r.at, "ok"
		if r.err != nil {
			st.LastResult = r.err.Error()
		}
	}
	return st
}

// consoleSettings is SHOW CONFIG: every scalar key in force with its
// default, the backend URL's password hidden.
func (px *proxy) consoleSettings() []console.Setting {
	px.mu.Lock()
	cfg := *px.mu.cfg
	px.mu.Unlock()
	def := defaultConfig()
	defs := map[string]string{}
	for _, f := range scalarFields(&def) {
		defs[f.path] = scalarString(f.v)
	}
	var out []console.Setting
	for _, f := range scalarFields(&cfg) {
		v := scalarString(f.v)
		if f.path == "backend.url" {
			v = redactURL(v)
		}
		out = append(out, console.Setting{Key: f.path, Value: v, Default: defs[f.path], Changeable: !isRestartKey(f.path)})
	}
	return out
}

func scalarString(v reflect.Value) string {
	switch {
	case v.Type() == reflect.TypeOf(Duration(0)):
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Slice:
		return strings.Join(v.Interface().([]string), ",")
	}
	return fmt.Sprint(v.Interface())
}

// redactURL hides the password of a backend URL (URL or key=value form).
func redactURL(s string) string {
	if pc, err := pgconn.ParseConfig(s); err == nil && pc.Password != "" {
		return strings.ReplaceAll(s, pc.Password, "********")
	}
	return s
}

func isRestartKey(key string) bool {
	for _, k := range restartKeys {
		if key == k || strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}
