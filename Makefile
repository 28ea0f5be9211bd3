# Targets for a fresh Debian machine, run as root, with Go in /usr/local/go.
#   make run    install PostgreSQL if missing, build bin/pipectl, run pipeline.yaml
#   make test   vet, staticcheck, race tests, short fuzz runs
#   make bench  the benchmark suite (bench/cmd/sedabench), results in bench/RESULTS.md;
#               BENCH='--only b1,b2 --runs 7' passes flags
#   make lint   gofmt, vet, staticcheck
#   make docs   regenerate README.md's YAML reference
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

PIPELINE ?= pipeline.yaml
FUZZTIME ?= 10s
BENCH ?=

.PHONY: all build run test vet staticcheck race fuzz bench lint fmt-check docs clean

all: build

build:
	go build -o bin/pipectl ./cmd/pipectl

run:
	bash scripts/ensure-postgres.sh
	go build -o bin/pipectl ./cmd/pipectl
	bin/pipectl run -f $(PIPELINE)

test:
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-tools.sh
	bash scripts/ensure-rsyslog.sh
	bash scripts/ensure-chromium.sh
	go vet ./...
	bash scripts/staticcheck.sh ./...
	go test -race -count=1 ./...
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

vet:
	go vet ./...

staticcheck:
	bash scripts/staticcheck.sh ./...

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

clean:
	rm -rf bin
