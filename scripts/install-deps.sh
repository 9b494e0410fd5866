#!/usr/bin/env bash
# Installs what erlkaf needs to build and test, when it is missing: Erlang/OTP (with
# EUnit, Common Test, Dialyzer, PropEr), Elixir, rebar3, kcat (an independent Kafka client the
# tests compare against), and the C toolchain librdkafka's build uses.
set -euo pipefail
need=()
command -v erl >/dev/null || need+=(erlang-nox erlang-dev)
erl -noshell -eval 'case code:lib_dir(common_test) of {error,_} -> halt(1); _ -> halt(0) end.' 2>/dev/null \
    || need+=(erlang-common-test erlang-eunit)
erl -noshell -eval 'case code:lib_dir(dialyzer) of {error,_} -> halt(1); _ -> halt(0) end.' 2>/dev/null \
    || need+=(erlang-dialyzer)
erl -noshell -eval 'case code:lib_dir(proper) of {error,_} -> halt(1); _ -> halt(0) end.' 2>/dev/null \
    || need+=(erlang-proper)
command -v elixir >/dev/null || need+=(elixir)
command -v rebar3 >/dev/null || need+=(rebar3)
command -v kcat >/dev/null || need+=(kcat)
command -v make >/dev/null || need+=(make)
command -v g++ >/dev/null || need+=(g++)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
