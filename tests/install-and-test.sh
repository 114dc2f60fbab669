#!/usr/bin/env bash
# The README's test command: install what the tests need, then run every test (arguments go to pytest).
#
# Debian's programs the suite starts and stops itself, each on a free loopback port: redis-server,
# nginx (the gRPC proxy test) and Chromium (the browser tests; Playwright drives it and never
# downloads a browser of its own); it also runs openssl (docs/security.md's certificate recipe).
# apt-get runs only when one is missing, and needs root.
# npm installs the exact grpc-js packages of tests/grpc_js/package-lock.json for the Node client
# test; Node comes from Debian only when the machine has no npm (Debian's npm conflicts with an
# installed NodeSource nodejs).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/pip install -e '.[test]'

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v npm >/dev/null || missing+=(nodejs npm)
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

npm ci --prefix tests/grpc_js --ignore-scripts --no-audit --no-fund
exec .venv/bin/pytest "$@"
