# Targets for a fresh Debian machine, run as root, with Go in /usr/local/go.
#   make run    install PostgreSQL if missing, build bin/pipectl, run pipeline.yaml
#   make test   install what tests need, gofmt check, vet, staticcheck, windows and darwin
#               cross-builds and vets, race tests, short fuzz runs (TEST_STEPS, in order)
#   make bench  the benchmark suite (bench/cmd/sedabench), results in bench/RESULTS.md;
#               BENCH='--only b1,b2 --runs 7' passes flags
#   make lint   gofmt, vet, staticcheck
#   make docs   regenerate README.md's YAML reference
#   make nats-server  a local NATS server with JetStream on 127.0.0.1:4222 (store in .nats/),
#               for pipelines split across processes (README: Across processes)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

PIPELINE ?= pipeline.yaml
FUZZTIME ?= 10s
BENCH ?=

.PHONY: all build run test ensure vet staticcheck crossbuild race fuzz bench lint fmt-check docs clean nats-server

# Targets run one at a time, in the order listed, even under make -j.
.NOTPARALLEL:

all: build

build:
	go build -o bin/pipectl ./cmd/pipectl

run:
	bash scripts/ensure-postgres.sh
	go build -o bin/pipectl ./cmd/pipectl
	bin/pipectl run -f $(PIPELINE)

# The steps of `make test` (= .ci/run), in order: to add one, write its
# target below and name it here.
TEST_STEPS := ensure fmt-check vet staticcheck crossbuild race fuzz

test: $(TEST_STEPS)

# ensure installs what the tests need and is missing (Debian packages, Go
# tools); a test whose tool is missing fails, it never skips.
ensure:
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-tools.sh
	bash scripts/ensure-rsyslog.sh
	bash scripts/ensure-chromium.sh

vet:
	go vet ./...

staticcheck:
	bash scripts/staticcheck.sh ./...

# crossbuild builds and vets everything, tests included, for windows and darwin.
crossbuild:
	bash scripts/crossbuild.sh windows darwin

race:
	go test -race -count=1 ./...

fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

bench:
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-rsyslog.sh
	go run ./bench/cmd/sedabench $(BENCH)

fmt-check:
	@out=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -print0 | xargs -0 gofmt -l); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

lint: fmt-check vet staticcheck

docs: build
	bin/pipectl doc --update README.md

NATS_STORE ?= .nats
NATS_PORT ?= 4222

# nats-server from its Go module, at the version go.mod pins (the tests run
# the same code in process); the first run downloads and builds it.
nats-server:
	go run github.com/nats-io/nats-server/v2 -js -sd $(NATS_STORE) -a 127.0.0.1 -p $(NATS_PORT)

clean:
	rm -rf bin
