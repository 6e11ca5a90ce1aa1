#!/usr/bin/env bash
# The test command: installs the independent interop peers (PyPI and npm packages, pinned
# in tests/interop/) into target/, builds the Go peer, then runs every test. Safe to run again; installs are
# skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/interop-venv
stamp="$venv/.installed-$(cat tests/interop/requirements.txt tests/interop/requirements-nodeps.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r tests/interop/requirements-nodeps.txt
  touch "$stamp"
fi
npm_stamp="tests/interop/node_modules/.installed-$(sha256sum tests/interop/package-lock.json | cut -c1-16)"
if [ ! -f "$npm_stamp" ]; then
  npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error
  touch "$npm_stamp"
fi
command -v openssl >/dev/null || { echo "tests need the openssl command line: apt-get install openssl" >&2; exit 1; }
command -v go >/dev/null || { echo "tests need Go for tests/interop/gocheck: apt-get install golang-go" >&2; exit 1; }
mkdir -p target
GO111MODULE=off go build -o target/gocheck ./tests/interop/gocheck/main.go

export KVSEAL_INTEROP_PYTHON="$PWD/$venv/bin/python"
cargo test --lib --bins --tests "$@"
