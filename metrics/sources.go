package metrics

import "github.com/prometheus/client_golang/prometheus"

// sourceCollector reads Sources at scrape time.
type sourceCollector struct{ m *Metrics }

var (
	descClients = prometheus.NewDesc("dbalproxy_client_connections",
		"Client connections open now (including those still starting up).", nil, nil)
	descAccepted = prometheus.NewDesc("dbalproxy_client_connections_total",
		"Client connections accepted since start.", nil, nil)
	descRejected = prometheus.NewDesc("dbalproxy_client_connections_rejected_total",
		"Client connections refused with 53300 by a limit: max_client_conns or a login's max_conns.", []string{"limit"}, nil)
	descDraining = prometheus.NewDesc("dbalproxy_draining",
		"1 while the proxy drains for shutdown, else 0.", nil, nil)
	descBackend = prometheus.NewDesc("dbalproxy_backend_connections",
		"Backend connections now, by database and state (idle, in_use).", []string{"database", "state"}, nil)
	descWaiting = prometheus.NewDesc("dbalproxy_pool_waiting",
		"Clients waiting for a backend connection now, by database.", []string{"database"}, nil)
	descTimeouts = prometheus.NewDesc("dbalproxy_pool_timeouts_total",
		"Waits for a backend connection that ended with 53300 after pool.acquire_timeout.", nil, nil)
	descDials = prometheus.NewDesc("dbalproxy_backend_dials_total",
		"Backend connections dialed, by result (ok, failed).", []string{"result"}, nil)
	descDestroyed = prometheus.NewDesc("dbalproxy_backend_connections_closed_total",
		"Backend connections closed instead of reused (broken, idle too long, reset failed).", nil, nil)
	descPolicy = prometheus.NewDesc("dbalproxy_policy_info",
		"The policy set in force (value 1), by version.", []string{"version"}, nil)
	descBundle = prometheus.NewDesc("dbalproxy_policy_bundle_info",
		"The policy bundle in force (value 1), by its .manifest revision; only when the policies come from a bundle service.", []string{"revision"}, nil)
	descDropped = prometheus.NewDesc("dbalproxy_audit_records_dropped_total",
		"Audit records dropped because the audit sink was too slow (queue full past audit.block_timeout).", nil, nil)
	descSessions = prometheus.NewDesc("dbalproxy_login_sessions",
		"Open sessions (after authentication) now, by configured login.", []string{"login"}, nil)
	descBuild = prometheus.NewDesc("dbalproxy_build_info",
		"The running binary (value 1): its version, VCS revision and Go version.", []string{"version", "revision", "goversion"}, nil)
)

// Describe implements prometheus.Collector.
func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClients, descAccepted, descRejected, descDraining, descBackend,
		descWaiting, descTimeouts, descDials, descDestroyed, descPolicy, descBundle, descDropped, descSessions, descBuild} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.sources.Load()
	if s.Server != nil {
		st := s.Server.Stats()
		ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(st.ClientConns))
		ch <- prometheus.MustNewConstMetric(descAccepted, prometheus.CounterValue, float64(st.Accepted))
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(st.RejectedTotal), "max_client_conns")
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(st.RejectedLogin), "max_conns_per_login")
		draining := 0.0
		if st.Draining {
			draining = 1
		}
		ch <- prometheus.MustNewConstMetric(descDraining, prometheus.GaugeValue, draining)
		if lc, ok := s.Server.(LoginCounter); ok {
			for _, n := range c.m.loginTab.Load().names {
				ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(lc.LoginConns(n)), n)
			}
		}
	}
	if s.Pool != nil {
		for _, d := range s.Pool.DatabaseStats() {
			ch <- prometheus.MustNewConstMetric(descBackend, prometheus.GaugeValue, float64(d.Idle), d.Database, "idle")
			ch <- prometheus.MustNewConstMetric(descBackend, prometheus.GaugeValue, float64(d.InUse), d.Database, "in_use")
			ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(d.Waiting), d.Database)
		}
		st := s.Pool.Stats()
		ch <- prometheus.MustNewConstMetric(descTimeouts, prometheus.CounterValue, float64(st.Timeouts))
		ch <- prometheus.MustNewConstMetric(descDials, prometheus.CounterValue, float64(st.Dials-st.DialFails), "ok")
		ch <- prometheus.MustNewConstMetric(descDials, prometheus.CounterValue, float64(st.DialFails), "failed")
		ch <- prometheus.MustNewConstMetric(descDestroyed, prometheus.CounterValue, float64(st.Destroyed))
	}
	if s.PolicyVersion != nil {
		ch <- prometheus.MustNewConstMetric(descPolicy, prometheus.GaugeValue, 1, s.PolicyVersion())
	}
	if b := s.Build; b.Version != "" {
		ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, b.Version, b.Revision, b.GoVersion)
	}
	if s.PolicyRevision != nil {
		ch <- prometheus.MustNewConstMetric(descBundle, prometheus.GaugeValue, 1, s.PolicyRevision())
	}
	if s.AuditDropped != nil {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.AuditDropped()))
	}
}
