# erlkaf: two commands matter.
#   make demo   installs what is missing, builds, starts the embedded broker and produces
#               a million messages, printing the throughput.
#   make test   runs every test: cargo (erlkaf_core), EUnit, Common Test and ExUnit.
SHELL := /bin/bash
.DEFAULT_GOAL := build
ERL_PATHS := -pa _build/default/lib/erlkaf/ebin -pa _build/default/lib/erlkaf/bench

.PHONY: deps build test test-rust test-eunit test-ct test-ex demo broker clean dialyzer

# Installs the toolchain with apt-get when something is missing (Debian/Ubuntu, as root
# or with sudo). cargo itself comes from rustup and is not installed here.
deps:
	@bash scripts/install-deps.sh

build: deps
	rebar3 compile

test: deps
	cargo test --locked -p erlkaf_core
	rebar3 eunit
	rebar3 ct
	mix test

test-rust:
	cargo test --locked -p erlkaf_core

test-eunit:
	rebar3 eunit

test-ct:
	rebar3 ct

test-ex:
	mix test

demo: build
	erl -noshell $(ERL_PATHS) -eval 'erlkaf_demo:main(), halt().'

broker: build
	bin/erlkaf-broker

dialyzer:
	rebar3 dialyzer

clean:
	rebar3 clean
	cargo clean
	rm -f priv/liberlkaf_nif.so
