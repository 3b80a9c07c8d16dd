# Convenience targets; each is one command you can also run by hand.
.PHONY: build test bench bench-quick pgx-suite pgx-suite-tx

# The binary, stamped with the git revision (also where GOFLAGS has -buildvcs=false).
build:
	go build -ldflags "-X main.version=$$(git describe --tags --always --dirty) -X main.revision=$$(git rev-parse HEAD)" -o dbalproxy ./cmd/dbalproxy

# The whole test suite, as CI runs it (installs PostgreSQL if missing).
test:
	./scripts/test.sh

# The side-by-side benchmark of docs/benchmarks.md (about 5 minutes).
bench:
	go run ./cmd/dbalbench -clients 8 -duration 5s -runs 3 -markdown

# A quick look (about 1 minute).
bench-quick:
	go run ./cmd/dbalbench -quick

# pgx's own test suite through the proxy (session pooling; about 3 minutes).
pgx-suite:
	./scripts/pgx-suite.sh session

# The same in transaction pooling (a few tests are skipped: see the README).
pgx-suite-tx:
	./scripts/pgx-suite.sh transaction
