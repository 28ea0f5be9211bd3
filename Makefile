# Targets for a fresh Debian machine, run as root, with Go in /usr/local/go.
#   make run    install PostgreSQL if missing, build bin/pipectl, run pipeline.yaml
#   make test   install what tests need, gofmt check, vet, staticcheck, windows and darwin
#               cross-builds and vets, race tests (TEST_LANES side by side); the
#               fuzz targets' seed corpora run in the race tests
#   make fuzz   fuzz every Fuzz target for FUZZTIME (default 3s) each
#   make stress the tests many times under -race, beside busy loops, with GOMAXPROCS 1 and
#               unset, to find flaky ones (local use; STRESS_COUNT, STRESS_PKGS, STRESS_PROCS)
#   make bench  build bin/pipectl, then the benchmark suite (bench/cmd/sedabench) with it,
#               results in bench/RESULTS.md, the targets missed listed last;
#               BENCH='--only b1,b2 --runs 7' passes flags, BENCH=--strict fails the
#               target when one is missed
#   make lint   gofmt, vet, staticcheck
#   make docs   regenerate README.md's YAML reference
#   make nats-server  a local NATS server with JetStream on 127.0.0.1:4222 (store in .nats/),
#               for pipelines split across processes (README: Across processes)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

PIPELINE ?= pipeline.yaml
FUZZTIME ?= 3s
BENCH ?=

.PHONY: all build run test stress ensure prebuild vet staticcheck crossbuild race race-bench fuzz bench lint fmt-check docs clean nats-server

# Targets run one at a time, in the order listed, even under make -j.
.NOTPARALLEL:

all: build

build:
	go build -o bin/pipectl ./cmd/pipectl

run:
	bash scripts/ensure-postgres.sh
	go build -o bin/pipectl ./cmd/pipectl
	bin/pipectl run -f $(PIPELINE)

# The steps of `make test` (= .ci/run): fmt-check, then two lanes side by
# side (scripts/lanes.sh), each a list of targets run in order; every step
# runs, each one's output is printed whole, and a summary gives each
# step's time. To add a step, write its target below and put it in a lane.
# The first lane installs what the tests need (on a fresh machine apt's
# downloads take a minute or two, while the other lane compiles on both
# cores), then runs the race tests, the longest step. The second lane
# needs only Go: it compiles pipectl and nats-server, then vets (so that
# staticcheck finds the packages compiled) and cross-checks. Fuzzing is
# `make fuzz`, not a step: on a cold cache its instrumented builds (every
# package of each target's binary, the standard library's included) took
# 180-200 CPU-s, a sixth of the suite's, on a machine where the suite is
# CPU-bound, for 3 s of fuzzing per target; the seed corpora in
# testdata/fuzz run as plain tests in the race step. The race tests of
# ./bench/... (race-bench) end the second lane, once ensure has ended
# (after:ensure, scripts/lanes.sh): in the first they had it end 105 s
# after the second (cold, as on a fresh machine: 600 s in all; 548 s
# since). `make race` alone leaves them out.
TEST_LANES := 'ensure race' 'prebuild vet staticcheck crossbuild after:ensure race-bench'

test: fmt-check
	bash scripts/lanes.sh $(TEST_LANES)

STRESS_COUNT ?= 20
STRESS_PKGS ?= ./port ./stage ./pipeline ./stages/... ./natsq
STRESS_PROCS ?= 0 1

stress:
	STRESS_COUNT=$(STRESS_COUNT) STRESS_PKGS='$(STRESS_PKGS)' STRESS_PROCS='$(STRESS_PROCS)' bash scripts/stress.sh

# ensure installs what the tests need and is missing (Debian packages, Go
# tools); a test whose tool is missing fails, it never skips.
ensure:
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-tools.sh
	bash scripts/ensure-rsyslog.sh
	bash scripts/ensure-chromium.sh

# prebuild compiles pipectl and nats-server (without -race) first in its
# lane: vet needs the same packages compiled, and the race lane's tests
# build both as processes of their own (by then, found in the build
# cache). Started side by side on a cold cache, vet and those builds
# compiled them all again (the build cache shares finished work, not work
# under way).
prebuild:
	go build ./cmd/pipectl github.com/nats-io/nats-server/v2

# The second vet checks pipeline's tests as scripts/fuzz.sh builds them.
vet:
	go vet ./...
	go vet -tags nonats ./pipeline

staticcheck:
	bash scripts/staticcheck.sh ./...

# crossbuild type-checks and vets everything, tests included, for windows and
# darwin, from source (internal/cmd/crossvet).
crossbuild:
	bash scripts/crossbuild.sh windows darwin

# -vet=off: go vet ./... (every analyzer, a superset of go test's) runs in
# make test beside this. The longest packages are named first: go test
# builds and runs the packages in the order named, and e2e (2-3 minutes)
# started last had the lane wait for it alone. RACE_P is go test's -p (4
# lets more of the tests that mostly wait run at once, but raised the CPU
# time of a cold run).
RACE_P ?= 2
RACE_FIRST := ./e2e ./cmd/pipectl ./stages/db ./internal/pgtemp ./internal/engine
race:
	go test -race -vet=off -count=1 -p $(RACE_P) $(RACE_FIRST) $$(go list ./... | grep -v '/bench/')

race-bench:
	go test -race -vet=off -count=1 -p $(RACE_P) ./bench/...

fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

# pipectl is built once, here, and handed to the benchmarks that run it as a
# process (none builds it at run time).
bench: build
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-rsyslog.sh
	go run ./bench/cmd/sedabench --pipectl "$(CURDIR)/bin/pipectl" $(BENCH)

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
