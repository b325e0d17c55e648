# kiln's entry points. `make demo` runs the farm end to end on a private
# PostgreSQL cluster; `make test` runs every test. Both install missing Debian
# packages first when run as root.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -buildvcs=false
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/kiln-build/kiln/internal/cli.Version=$(VERSION)
BIN := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build setup test test-go lint demo bench soak fuzz man clean install

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

setup:
	.ci/setup-debian

# Every test against a private PostgreSQL cluster (and KDC), a shortened
# soak on a cluster of its own, then a short fuzz run.
test: setup build
	KILN_WITH_KDC=1 .ci/with-cluster $(MAKE) --no-print-directory test-go
	.ci/with-cluster $(BIN)/kiln-soak $(SOAK_SHORT)
	KILN_PG_SYNC_STANDBY=1 .ci/with-cluster $(BIN)/kiln-soak $(SOAK_FAILOVER)
	$(MAKE) --no-print-directory fuzz FUZZTIME=20000x

test-go:
	$(GO) test -count=1 -timeout 25m ./...

# make test gives each target a count of inputs, not a duration: with a
# duration, go1.26's fuzz coordinator can report "context deadline exceeded"
# as a failure when the deadline lands mid-input on a loaded machine
# (golang/go#75804, fixed in go1.27). A count has no deadline to race.
FUZZTIME ?= 30s
# Fuzz targets are found in the sources (go test -list would build every
# package's tests first).
fuzz:
	@for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' cmd internal | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | sed 's/^func //'); do \
	    echo "fuzz ./$$dir $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./$$dir >/tmp/kiln-fuzz.log 2>&1 || { cat /tmp/kiln-fuzz.log; exit 1; }; \
	  done; \
	done

# The benchmarks (docs/performance.md): one table, each figure with how it
# was measured. A few minutes; BENCH_FLAGS=--markdown prints it for the docs.
# The cluster preloads pg_stat_statements, for the statements per task.
bench: build
	KILN_PG_EXTRA_CONF="shared_preload_libraries = 'pg_stat_statements'"$$'\n'"pg_stat_statements.track = all" \
	  .ci/with-cluster $(BIN)/kiln-bench $(BENCH_FLAGS)

# The soak (docs/reliability.md): real builders, splitter and janitor on a
# private cluster, under faults; exits non-zero when a check fails.
SOAK_SHORT := --tasks 200 --kills 1 --cancels 2 --rpm-every 20 --timeout 5m --via-pgbouncer
# The same on a synchronous standby, failing over to it mid-run (docs/scaling.md).
SOAK_FAILOVER := --tasks 200 --kills 1 --cancels 2 --rpm-every 20 --timeout 5m --failover --restart-db=false
soak: build
	.ci/with-cluster $(BIN)/kiln-soak $(SOAK_FLAGS)

lint:
	@bins=$$(git ls-files | while read -r f; do [ -f "$$f" ] && head -c 4 "$$f" | grep -q $$'\x7fELF' && echo "$$f"; done); if [ -n "$$bins" ]; then echo "binaries tracked in git (build outputs belong in bin/):"; echo "$$bins"; exit 1; fi
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

demo: setup build
	.ci/with-cluster .ci/demo

# The manual page, generated from the command definitions.
man:
	$(GO) run ./cmd/kiln man > docs/kiln.1

clean:
	rm -rf $(BIN)

# make install [PREFIX=/usr/local] [DESTDIR=]: the farm's binaries, the
# manual page (man kiln), the systemd units and the docs they point at,
# with roles/ (the SQL and the pg_hba.conf and pg_ident.conf examples).
# The units name $(PREFIX)/bin and $(PREFIX)/share/doc/kiln, rewritten
# from the /usr/local of docs/systemd/ when PREFIX differs.
PREFIX ?= /usr/local
INSTALL_BINS := kiln kiln-builder kiln-janitor kiln-publisher kiln-reporter kiln-splitter kiln-web
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/doc/kiln/systemd
	install -m 0755 $(addprefix $(BIN)/,$(INSTALL_BINS)) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 docs/kiln.1 $(DESTDIR)$(PREFIX)/share/man/man1/kiln.1
	install -m 0644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/kiln/
	install -d $(DESTDIR)$(PREFIX)/share/doc/kiln/roles
	install -m 0644 roles/README.md roles/*.sql roles/*.example $(DESTDIR)$(PREFIX)/share/doc/kiln/roles/
	install -m 0644 docs/systemd/kiln-janitor.cron $(DESTDIR)$(PREFIX)/share/doc/kiln/systemd/
	for u in docs/systemd/*.service; do \
	  sed -e 's|/usr/local/|$(PREFIX)/|g' "$$u" > $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename "$$u") && \
	  chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename "$$u") && \
	  cp $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename "$$u") $(DESTDIR)$(PREFIX)/share/doc/kiln/systemd/; \
	done
