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

echo "== npm ci (the real Node.js clients of the bridge tests, pinned by their lockfiles)"
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  for d in bridge/testdata/node bridge/testdata/prisma; do
    if [ ! "$d/node_modules/.package-lock.json" -nt "$d/package-lock.json" ]; then
      (cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  done
else
  echo "node or npm is missing: the bridge's Neon driver and Prisma tests will be skipped." >&2
  echo "Install Node.js 20.19 or newer with npm (https://nodejs.org, or your distribution's nodejs and npm)." >&2
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

echo "== go test -race ./wire/ ./bridge/ in transaction pooling mode"
DBALPROXY_TEST_POOL_MODE=transaction go test -race -count=1 -timeout 20m "$@" ./wire/ ./bridge/
