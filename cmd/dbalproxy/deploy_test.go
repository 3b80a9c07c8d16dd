package main

// The files in deploy/ are checked here, where the CLI's flags, the
// configuration loader and the metrics are at hand: no container engine,
// systemd or cluster runs in CI, so each file is parsed with the library its
// consumer is built on (Kubernetes API types with strict decoding, go-systemd's
// unit parser, BuildKit's .dockerignore matcher) and checked against what the
// proxy really accepts, serves and exports.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/dbalproxy/dbalproxy/admin"
	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/metrics"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/status"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const deployDir = "../../deploy"

// acceptsServeArgs fails unless args (after the program name) are a
// command line the CLI accepts: run parses every flag and stops at -h
// before reading any file.
func acceptsServeArgs(t *testing.T, what string, args []string) {
	t.Helper()
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("%s: %q does not run serve", what, args)
	}
	code, out, errs := runCLI(t, append(slices.Clone(args), "-h")...)
	if code != 0 {
		t.Fatalf("%s: dbalproxy %s: the CLI refuses it (exit %d)\n%s%s", what, strings.Join(args, " "), code, out, errs)
	}
}

// flagValue is the value of --name (or -name) in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// checkShippedConfig runs serve --check on a shipped configuration, with
// env set, the repository's policies and the audit output in a temporary
// directory (the paths it names exist only where it is installed), and
// returns it loaded.
func checkShippedConfig(t *testing.T, what string, body []byte, env map[string]string) *Config {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "dbalproxy.yaml")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "serve", "--check", "--config", path,
		"--policy.dir", "../../policies", "--audit.output", filepath.Join(dir, "audit.jsonl"))
	if code != 0 || out != "ok\n" {
		t.Fatalf("%s: serve --check: exit %d\n%s%s", what, code, out, errs)
	}
	cfg := defaultConfig()
	if err := loadConfig(path, &cfg, nil); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return &cfg
}

func port(t *testing.T, what, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n == 0 {
		t.Fatalf("%s %q: no fixed port", what, addr)
	}
	return int32(n)
}

// decodeStrict decodes one YAML manifest into out, refusing unknown and
// mistyped fields as the API server's strict field validation does.
func decodeStrict(t *testing.T, file string, out any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, "kubernetes", file))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("\n---")) {
		t.Fatalf("%s: one object per file, please", file)
	}
	if err := yaml.UnmarshalStrict(data, out); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// TestDeployKubernetes: every manifest decodes strictly into its API type,
// the shipped configuration passes serve --check with the Secret's values,
// and the Deployment agrees with it: ports, probe paths the admin listener
// serves, mount paths, and a grace period longer than the drain.
func TestDeployKubernetes(t *testing.T) {
	var kust struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Labels     []struct {
			Pairs map[string]string `json:"pairs"`
		} `json:"labels"`
		Resources []string `json:"resources"`
	}
	decodeStrict(t, "kustomization.yaml", &kust)
	if kust.Kind != "Kustomization" || kust.APIVersion != "kustomize.config.k8s.io/v1beta1" {
		t.Fatalf("kustomization.yaml: %s %s", kust.APIVersion, kust.Kind)
	}
	files, _ := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.yaml"))
	if len(files) != len(kust.Resources)+1 {
		t.Errorf("kustomization.yaml lists %v; the directory has %d manifests", kust.Resources, len(files)-1)
	}

	objs := map[string]any{}
	for _, f := range kust.Resources {
		var meta struct {
			Kind string `json:"kind"`
		}
		data, err := os.ReadFile(filepath.Join(deployDir, "kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, &meta); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var obj any
		switch meta.Kind {
		case "ConfigMap":
			obj = &corev1.ConfigMap{}
		case "Secret":
			obj = &corev1.Secret{}
		case "Service":
			obj = &corev1.Service{}
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		default:
			t.Fatalf("%s: unexpected kind %q", f, meta.Kind)
		}
		decodeStrict(t, f, obj)
		objs[meta.Kind] = obj
	}
	cm, _ := objs["ConfigMap"].(*corev1.ConfigMap)
	secret, _ := objs["Secret"].(*corev1.Secret)
	dep, _ := objs["Deployment"].(*appsv1.Deployment)
	svc, _ := objs["Service"].(*corev1.Service)
	pdb, _ := objs["PodDisruptionBudget"].(*policyv1.PodDisruptionBudget)
	if cm == nil || secret == nil || dep == nil || svc == nil || pdb == nil {
		t.Fatalf("want a ConfigMap, a Secret, a Deployment, a Service and a PodDisruptionBudget; have %v", objs)
	}

	// The configuration, with the Secret's variables.
	cfg := checkShippedConfig(t, "configmap.yaml", []byte(cm.Data["dbalproxy.yaml"]), secret.StringData)

	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	acceptsServeArgs(t, "deployment.yaml args", c.Args)
	configPath := flagValue(c.Args, "config")
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if want := port(t, "listen", cfg.Listen); ports["postgres"] != want {
		t.Errorf("container port postgres = %d, listen is on %d", ports["postgres"], want)
	}
	if want := port(t, "admin.listen", cfg.Admin.Listen); ports["admin"] != want {
		t.Errorf("container port admin = %d, admin.listen is on %d", ports["admin"], want)
	}
	if h, _, _ := net.SplitHostPort(cfg.Admin.Listen); h != "0.0.0.0" && h != "" {
		t.Errorf("admin.listen %s: the kubelet's probes come from outside the pod", cfg.Admin.Listen)
	}

	// Probes: the admin port, and paths the admin listener answers.
	srv := httptest.NewServer(admin.Handler(admin.Config{Metrics: http.NotFoundHandler()}))
	defer srv.Close()
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}, {"startupProbe", c.StartupProbe, "/healthz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", pr.name)
			continue
		}
		g := pr.probe.HTTPGet
		if g.Path != pr.path || g.Port.String() != "admin" {
			t.Errorf("%s: %s on port %s, want %s on admin", pr.name, g.Path, g.Port.String(), pr.path)
		}
		resp, err := http.Get(srv.URL + g.Path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: the admin listener answers %s with %d", pr.name, g.Path, resp.StatusCode)
		}
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.TimeoutSeconds < 5 {
		t.Errorf("readinessProbe timeout %ds: /readyz may take up to 5s (a backend ping)", c.ReadinessProbe.TimeoutSeconds)
	}

	// The drain fits in the grace period, after the preStop sleep.
	var sleep int64
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		sleep = c.Lifecycle.PreStop.Sleep.Seconds
	}
	grace := int64(30)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	drain := int64(cfg.Limits.ShutdownTimeout.D() / time.Second)
	if grace < sleep+drain+5 {
		t.Errorf("terminationGracePeriodSeconds %d < preStop %ds + limits.shutdown_timeout %ds + 5s to flush the audit log", grace, sleep, drain)
	}

	// Mounts: the configuration at --config, the policies at policy.dir.
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mountedFrom := func(path string) (cmName, key string) {
		for _, m := range c.VolumeMounts {
			v := volumes[m.Name]
			if v.ConfigMap == nil {
				continue
			}
			switch {
			case m.SubPath != "" && m.MountPath == path:
				return v.ConfigMap.Name, m.SubPath
			case m.SubPath == "" && m.MountPath == path:
				return v.ConfigMap.Name, ""
			case m.SubPath == "" && filepath.Dir(path) == m.MountPath:
				return v.ConfigMap.Name, filepath.Base(path)
			}
		}
		return "", ""
	}
	if n, k := mountedFrom(configPath); n != cm.Name || cm.Data[k] == "" {
		t.Errorf("--config %s is not the ConfigMap %s's dbalproxy.yaml (mounted from %q key %q)", configPath, cm.Name, n, k)
	}
	if n, k := mountedFrom(cfg.Policy.Dir); n != "dbalproxy-policies" || k != "" {
		t.Errorf("policy.dir %s is not the dbalproxy-policies ConfigMap (mounted from %q key %q)", cfg.Policy.Dir, n, k)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != secret.Name {
		t.Errorf("the container does not take its environment from the Secret %s", secret.Name)
	}

	// Non-root, as the image.
	sc := pod.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and uid 65532 (the image's)", sc)
	}

	// The Service and the PodDisruptionBudget select these pods.
	podLabels := dep.Spec.Template.Labels
	for k, v := range dep.Spec.Selector.MatchLabels {
		if podLabels[k] != v {
			t.Errorf("the Deployment's selector %s=%s does not match its pods", k, v)
		}
	}
	for k, v := range svc.Spec.Selector {
		if podLabels[k] != v {
			t.Errorf("the Service's selector %s=%s does not match the pods", k, v)
		}
	}
	for _, p := range svc.Spec.Ports {
		if ports[p.TargetPort.String()] == 0 {
			t.Errorf("Service port %s: targetPort %s is no container port", p.Name, p.TargetPort.String())
		}
		if p.TargetPort.String() == "admin" {
			t.Errorf("the Service exposes the admin listener, which has no authentication")
		}
	}
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if podLabels[k] != v {
			t.Errorf("the PodDisruptionBudget's selector %s=%s does not match the pods", k, v)
		}
	}
	if pdb.Spec.MinAvailable == nil || dep.Spec.Replicas == nil || int32(pdb.Spec.MinAvailable.IntValue()) >= *dep.Spec.Replicas {
		t.Errorf("the PodDisruptionBudget's minAvailable must be below the replicas, or no node can be drained")
	}
}

// dockerfile is the instructions of a Dockerfile: keyword (upper case) and
// arguments, continuation lines joined, comments dropped.
type dockerInstr struct{ cmd, args string }

func parseDockerfile(t *testing.T, data []byte) []dockerInstr {
	t.Helper()
	var out []dockerInstr
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// TestDeployDockerfile: a multi-stage cgo build, a non-root final stage
// whose ENTRYPOINT and CMD (exec form: the image has no shell) are a
// command line the CLI accepts with the configuration where the Kubernetes
// manifests mount it; -ldflags -X names variables that exist; and the
// .dockerignore keeps .git out but every file the build needs in.
func TestDeployDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	instrs := parseDockerfile(t, data)
	var froms int
	var final []dockerInstr // the last stage
	known := map[string]bool{"FROM": true, "ARG": true, "WORKDIR": true, "COPY": true, "RUN": true, "USER": true,
		"EXPOSE": true, "ENTRYPOINT": true, "CMD": true, "STOPSIGNAL": true, "ENV": true, "LABEL": true}
	var build string
	for _, in := range instrs {
		if !known[in.cmd] {
			t.Errorf("unknown instruction %s", in.cmd)
		}
		if in.cmd == "FROM" {
			froms++
			final = nil
		}
		final = append(final, in)
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	if froms < 2 {
		t.Errorf("%d stages, want a build stage and a runtime stage", froms)
	}
	if !strings.Contains(build, "CGO_ENABLED=1") || !strings.Contains(build, "./cmd/dbalproxy") {
		t.Errorf("the go build step %q must build ./cmd/dbalproxy with cgo (pg_query_go)", build)
	}
	for _, m := range regexp.MustCompile(`-X ([\w./]+)=`).FindAllStringSubmatch(build, -1) {
		if m[1] != "main.version" && m[1] != "main.revision" {
			t.Errorf("-ldflags -X %s: no such variable (main.version, main.revision)", m[1])
		}
	}
	var user string
	var entry, cmd []string
	for _, in := range final {
		var dst *[]string
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			dst = &entry
		case "CMD":
			dst = &cmd
		}
		if dst != nil {
			if err := json.Unmarshal([]byte(in.args), dst); err != nil {
				t.Errorf("%s %s: want the exec (JSON) form, the image has no shell: %v", in.cmd, in.args, err)
			}
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("final stage USER %q: want a non-root user", user)
	}
	if len(entry) != 1 || !strings.HasSuffix(entry[0], "/dbalproxy") {
		t.Fatalf("ENTRYPOINT %q: want the dbalproxy binary", entry)
	}
	acceptsServeArgs(t, "Dockerfile CMD", cmd)
	var k8s appsv1.Deployment
	decodeStrict(t, "deployment.yaml", &k8s)
	if got, want := flagValue(cmd, "config"), flagValue(k8s.Spec.Template.Spec.Containers[0].Args, "config"); got != want {
		t.Errorf("the image's --config %s differs from the Deployment's %s", got, want)
	}

	// The build context: .git out, every file of the build in.
	ign, err := os.Open(filepath.Join(deployDir, "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer ign.Close()
	patterns, err := ignorefile.ReadAll(ign) // as BuildKit reads it
	if err != nil {
		t.Fatalf("Dockerfile.dockerignore: %v", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf("Dockerfile.dockerignore: %v", err)
	}
	excluded := func(rel string) bool {
		ok, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, p := range []string{".git", "dbalbench", "deploy/Dockerfile"} {
		if !excluded(p) {
			t.Errorf("the build context includes %s", p)
		}
	}
	need := []string{"go.mod", "go.sum", "policies/dbal.rego"}
	out, err := osexec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .CgoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}{{end}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, _ := filepath.Abs("../..")
	for f := range strings.FieldsSeq(string(out)) {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		need = append(need, rel)
	}
	if len(need) < 50 {
		t.Fatalf("go list found only %d files", len(need))
	}
	for _, f := range need {
		if excluded(f) {
			t.Errorf("Dockerfile.dockerignore leaves %s out of the build", f)
		}
	}
}

// TestDeploySystemd: the unit parses; it runs and reloads a command line the
// CLI accepts, with the shipped configuration (which passes serve --check);
// it is not Type=notify (the proxy does not speak sd_notify); SIGHUP reloads,
// SIGTERM stops, and the stop timeout covers the drain.
func TestDeploySystemd(t *testing.T) {
	f, err := os.Open(filepath.Join(deployDir, "systemd", "dbalproxy.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatalf("dbalproxy.service: %v", err)
	}
	svc := map[string][]string{}
	sections := map[string]bool{}
	for _, o := range opts {
		sections[o.Section] = true
		if o.Section == "Service" {
			svc[o.Name] = append(svc[o.Name], o.Value)
		}
	}
	for _, s := range []string{"Unit", "Service", "Install"} {
		if !sections[s] {
			t.Errorf("no [%s] section", s)
		}
	}
	one := func(name string) string {
		if len(svc[name]) != 1 {
			t.Errorf("%s given %d times", name, len(svc[name]))
			return ""
		}
		return svc[name][0]
	}
	if typ := one("Type"); typ != "simple" && typ != "exec" {
		t.Errorf("Type=%s: the proxy does not notify systemd, so simple or exec", typ)
	}
	if u := one("User"); u == "" || u == "root" {
		t.Errorf("User=%q: want a service user", u)
	}
	start := strings.Fields(one("ExecStart"))
	if len(start) == 0 || !filepath.IsAbs(start[0]) || filepath.Base(start[0]) != "dbalproxy" {
		t.Fatalf("ExecStart %q: want the dbalproxy binary by absolute path", start)
	}
	acceptsServeArgs(t, "ExecStart", start[1:])
	configPath := flagValue(start[1:], "config")
	for _, pre := range append(svc["ExecStartPre"], svc["ExecReload"]...) {
		if args := strings.Fields(pre); filepath.Base(args[0]) == "dbalproxy" {
			acceptsServeArgs(t, "ExecStartPre/ExecReload", args[1:])
			if flagValue(args[1:], "config") != configPath {
				t.Errorf("%q checks another configuration than ExecStart's %s", pre, configPath)
			}
		}
	}
	if !slices.Contains(svc["ExecReload"], "/bin/kill -HUP $MAINPID") {
		t.Errorf("ExecReload %q: want /bin/kill -HUP $MAINPID", svc["ExecReload"])
	}
	if s := one("KillSignal"); s != "SIGTERM" {
		t.Errorf("KillSignal=%s: SIGTERM drains", s)
	}

	body, err := os.ReadFile(filepath.Join(deployDir, "systemd", "dbalproxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(configPath) != "dbalproxy.yaml" {
		t.Errorf("--config %s: the shipped file is dbalproxy.yaml", configPath)
	}
	cfg := checkShippedConfig(t, "systemd/dbalproxy.yaml", body, map[string]string{"BACKEND_PASSWORD": "x", "WEB_PASSWORD": "y"})
	stop, err := time.ParseDuration(one("TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if drain := cfg.Limits.ShutdownTimeout.D(); stop < drain+5*time.Second {
		t.Errorf("TimeoutStopSec=%s < limits.shutdown_timeout %s + 5s to flush the audit log", stop, drain)
	}
	if logs := one("LogsDirectory"); filepath.Dir(cfg.Audit.Output) != filepath.Join("/var/log", logs) {
		t.Errorf("audit.output %s is not in LogsDirectory=%s, the one writable place", cfg.Audit.Output, logs)
	}
	if h, _, _ := net.SplitHostPort(cfg.Admin.Listen); h != "127.0.0.1" && h != "::1" && h != "localhost" {
		t.Errorf("admin.listen %s: keep the unauthenticated admin listener on loopback on a host", cfg.Admin.Listen)
	}
}

// metricFamilies are the metrics a running proxy exports, with their label
// names: a registry with every source set and every labelled child touched.
func metricFamilies(t *testing.T) map[string][]string {
	t.Helper()
	m := metrics.New()
	m.SetLogins([]string{"alice"})
	m.SetSources(metrics.Sources{
		Server:        deployFakeServer{},
		Pool:          deployFakePool{},
		PolicyVersion: func() string { return "v" },
		AuditDropped:  func() uint64 { return 0 },
		Build:         metrics.BuildInfo{Version: "v", Revision: "r", GoVersion: "go"},
	})
	a := m.Auditor(nil)
	a.Log(&audit.Record{User: "alice", Decision: audit.DecisionWouldDeny, SQLState: "42501"})
	m.ConfigReloaded(nil)
	m.PolicyReloaded(errors.New("x"))
	_, _ = m.Backends(deployFakeBackends{}).Acquire(context.Background(), "db")
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, f := range fams {
		labels := []string{"instance", "job"}
		for _, mt := range f.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if !slices.Contains(labels, lp.GetName()) {
					labels = append(labels, lp.GetName())
				}
			}
		}
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[f.GetName()+s] = append(labels, "le")
			}
		}
		out[f.GetName()] = labels
	}
	return out
}

type deployFakeServer struct{}

func (deployFakeServer) Stats() status.ServerStats { return status.ServerStats{} }
func (deployFakeServer) LoginConns(string) int     { return 0 }

type deployFakePool struct{}

func (deployFakePool) Stats() pool.Stats { return pool.Stats{} }
func (deployFakePool) DatabaseStats() []pool.DatabaseStats {
	return []pool.DatabaseStats{{Database: "app"}}
}

type deployFakeBackends struct{}

func (deployFakeBackends) Acquire(context.Context, string) (*pool.Conn, error) {
	return nil, errors.New("down")
}
func (deployFakeBackends) TryAcquire(string) *pool.Conn { return nil }
func (deployFakeBackends) Release(*pool.Conn)           {}
func (deployFakeBackends) Put(*pool.Conn)               {}
func (deployFakeBackends) Destroy(*pool.Conn)           {}

var (
	promMetric   = regexp.MustCompile(`\b(dbalproxy_[a-z0-9_]+)(\{([^}]*)\})?`)
	promMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"`)
	promGrouping = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// TestDeployGrafana: the dashboard is JSON Grafana imports (unique panel ids,
// a layout, the datasource variable) and every query names metrics the
// proxy exports, with labels they have.
func TestDeployGrafana(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "grafana", "dbalproxy.json"))
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	}
	type panel struct {
		ID      int                       `json:"id"`
		Type    string                    `json:"type"`
		Title   string                    `json:"title"`
		GridPos *struct{ X, Y, W, H int } `json:"gridPos"`
		Targets []target                  `json:"targets"`
		Panels  []panel                   `json:"panels"`
		DS      *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	}
	var dash struct {
		UID           string  `json:"uid"`
		Title         string  `json:"title"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dbalproxy.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || dash.SchemaVersion == 0 || len(dash.Panels) == 0 {
		t.Fatalf("dbalproxy.json: uid %q, title %q, schemaVersion %d, %d panels", dash.UID, dash.Title, dash.SchemaVersion, len(dash.Panels))
	}
	vars := map[string]string{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" {
		t.Errorf("no datasource variable: the dashboard would be bound to one Prometheus")
	}

	fams := metricFamilies(t)
	var exprs []string
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			exprs = append(exprs, v.Definition)
		}
	}
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
				t.Errorf("panel %q has no layout", p.Title)
			}
			if p.Type != "row" {
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
				if p.DS == nil || p.DS.UID != "${datasource}" {
					t.Errorf("panel %q: datasource not ${datasource}", p.Title)
				}
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)

	used := map[string]bool{}
	for _, e := range exprs {
		if strings.Count(e, "(") != strings.Count(e, ")") || strings.Count(e, "{") != strings.Count(e, "}") {
			t.Errorf("unbalanced query %q", e)
		}
		var labels []string // of the metrics e names
		for _, m := range promMetric.FindAllStringSubmatch(e, -1) {
			name := m[1]
			have, ok := fams[name]
			if !ok {
				t.Errorf("query %q: dbalproxy exports no %s", e, name)
				continue
			}
			used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")] = true
			labels = append(labels, have...)
			for _, lm := range promMatcher.FindAllStringSubmatch(m[3], -1) {
				if !slices.Contains(have, lm[1]) {
					t.Errorf("query %q: %s has no label %s", e, name, lm[1])
				}
			}
		}
		for _, g := range promGrouping.FindAllStringSubmatch(e, -1) {
			for l := range strings.SplitSeq(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !slices.Contains(labels, l) {
					t.Errorf("query %q: groups by %s, which its metrics do not have", e, l)
				}
			}
		}
	}
	// Every dbalproxy metric has a panel.
	for name := range fams {
		if strings.HasPrefix(name, "dbalproxy_") && !strings.HasSuffix(name, "_bucket") && !strings.HasSuffix(name, "_sum") &&
			!strings.HasSuffix(name, "_count") && !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
	if t.Failed() {
		fmt.Println("exported:", strings.Join(slices.Sorted(func(yield func(string) bool) {
			for k := range fams {
				if !yield(k) {
					return
				}
			}
		}), " "))
	}
}
