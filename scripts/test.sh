#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need when it
# is missing (PostgreSQL server binaries), checks formatting and vet, runs
# every Go test with the race detector against real throwaway PostgreSQL
# clusters, and the shipped Rego policy tests.
set -euo pipefail
cd "$(dirname "$0")/.."

have_pg_server() {
  [ -n "${DBALPROXY_PG_BIN:-}" ] && [ -x "${DBALPROXY_PG_BIN}/postgres" ] && return 0
  command -v initdb >/dev/null 2>&1 && command -v pgbench >/dev/null 2>&1 && return 0
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1
}

if ! have_pg_server; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing PostgreSQL server binaries (Debian package postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL server binaries are missing. Install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y postgresql" >&2
    exit 1
  fi
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "Running as root needs an OS user 'postgres' (the Debian package creates it)." >&2
  exit 1
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi

echo "== go vet"
go vet ./...

echo "== policy tests (Rego)"
go run ./cmd/dbalproxy policy test policies

echo "== go test -race"
go test -race -count=1 -timeout 20m "$@" ./...

echo "== go test -race ./wire/ in transaction pooling mode"
DBALPROXY_TEST_POOL_MODE=transaction go test -race -count=1 -timeout 20m "$@" ./wire/
