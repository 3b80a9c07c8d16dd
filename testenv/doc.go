// Package testenv starts and stops throwaway PostgreSQL servers for tests,
// benchmarks and the `dbalproxy demo` command. It is not used by the proxy's
// production code paths.
//
// A Cluster is a fresh initdb in a temporary directory, listening on a free
// loopback port, with two SCRAM logins: the superuser "postgres" and the
// non-superuser "dbalproxy_backend" (CREATEDB), the role the proxy logs in
// as. Passwords are random. When the process runs as root, initdb and the
// server run as the "postgres" OS user, since initdb refuses root.
//
// Server binaries are looked up in $DBALPROXY_PG_BIN, then beside the
// `initdb` on PATH, then in the newest /usr/lib/postgresql/*/bin (Debian's
// layout). If none is found, Start says which package to install.
//
// Tests share one cluster per package: TestMain calls RunMain, tests call
// Shared for the cluster and NewDatabase for a database of their own.
package testenv
