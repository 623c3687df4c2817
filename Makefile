# Build, test and benchmark weave. `make test` needs root (it builds network
# namespaces for the end-to-end tests); CI runs it as root through .ci/run.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build
MAKEFLAGS += --no-builtin-rules --warn-undefined-variables

GO       ?= go
BIN      := bin/weave
PKGS     := ./...
FUZZTIME ?= 10s
BENCHFLAGS ?=
# Debian packages the tests use, with the command that tells each is there.
DEPS     := iputils-ping:ping iperf3:iperf3 dnsutils:dig tcpdump:tcpdump nftables:nft iproute2:ip dnsmasq-base:dnsmasq

.PHONY: build test e2e bench fuzz lint tidy deps root clean

build: ## static weave binary in bin/
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/weave

test: root deps lint ## vet, gofmt, unit, fuzz seeds and end-to-end tests
	$(GO) test -count=1 -timeout 15m -parallel 4 $(PKGS)

e2e: root deps ## only the end-to-end tests
	$(GO) test -count=1 -timeout 15m -parallel 4 -v ./test/...

bench: root deps ## data path vs kernel VXLAN (medians of 3 rounds), attach latency, weaveDNS vs dnsmasq, proxy vs plain docker run (BENCHFLAGS=-h; -only NAME)
	$(GO) run ./test/bench $(BENCHFLAGS)

fuzz: ## every Fuzz target for $(FUZZTIME)
	@found=0; \
	for dir in $$($(GO) list -f '{{.Dir}}' $(PKGS)); do \
	  for target in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do \
	    found=1; echo "== $$target in $$dir"; \
	    (cd "$$dir" && $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) .); \
	  done; \
	done; \
	[ "$$found" = 1 ] || { echo "no Fuzz targets found"; exit 1; }

lint: ## gofmt and go vet
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

tidy: ## fail when go.mod or go.sum are not tidy (changes nothing)
	$(GO) mod tidy -diff

deps: ## install the test tools that are missing (Debian/Ubuntu)
	@missing=(); \
	for d in $(DEPS); do command -v "$${d#*:}" >/dev/null || missing+=("$${d%%:*}"); done; \
	if (( $${#missing[@]} )); then \
	  echo "installing $${missing[*]}"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$${missing[@]}"; \
	fi

root:
	@[ "$$(id -u)" = 0 ] || { echo "this target builds network namespaces: run it as root (sudo make ...)"; exit 1; }

clean:
	rm -rf bin
