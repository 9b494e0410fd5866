#!/usr/bin/env bash
# Builds the NIF with cargo (release) and puts it in priv/. Called by rebar3 (pre_hooks)
# and by mix (the erlkaf_nif compiler in mix.exs), from the erlkaf application directory,
# also when erlkaf is a dependency under deps/ or _build/.
set -euo pipefail
cd "$(dirname "$0")/.."
app_dir=$(pwd)

missing=()
command -v cargo >/dev/null 2>&1 || missing+=("cargo (Rust toolchain, https://rustup.rs)")
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || missing+=("a C compiler (cc/gcc)")
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || missing+=("a C++ compiler (librdkafka's configure wants one)")
command -v make >/dev/null 2>&1 || missing+=("make")
if [ ${#missing[@]} -gt 0 ]; then
    echo "erlkaf: cannot build the NIF; missing: ${missing[*]}" >&2
    echo "erlkaf: on Debian/Ubuntu: apt-get install -y build-essential pkg-config libssl-dev and rustup" >&2
    exit 1
fi

# The cargo target dir: ERLKAF_CARGO_TARGET_DIR, else CARGO_TARGET_DIR, else target/ here.
target_dir=${ERLKAF_CARGO_TARGET_DIR:-${CARGO_TARGET_DIR:-$app_dir/target}}
profile=${ERLKAF_NIF_PROFILE:-release}
flags=(--manifest-path "$app_dir/native/erlkaf_nif/Cargo.toml" --target-dir "$target_dir")
[ "$profile" = release ] && flags+=(--release)
# cargo only rebuilds when the native sources changed.
cargo build "${flags[@]}" --quiet

so="$target_dir/$profile/liberlkaf_nif.so"
[ -f "$so" ] || so="$target_dir/$profile/liberlkaf_nif.dylib"
mkdir -p "$app_dir/priv"
# Copy only when changed, so that a loaded .so is never rewritten under a running VM.
if ! cmp -s "$so" "$app_dir/priv/liberlkaf_nif.so"; then
    cp "$so" "$app_dir/priv/liberlkaf_nif.so.tmp"
    mv "$app_dir/priv/liberlkaf_nif.so.tmp" "$app_dir/priv/liberlkaf_nif.so"
fi
