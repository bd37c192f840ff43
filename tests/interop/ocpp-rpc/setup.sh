#!/usr/bin/env bash
# Installs the second central system's one dependency, the npm package `ocpp-rpc` (pinned in
# package.json and package-lock.json), into tests/interop/ocpp-rpc/node_modules with `npm ci`.
# Idempotent: when node_modules already holds the locked version it only checks and returns.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
command -v node >/dev/null || { echo "ocpp-rpc: node not found (Node.js 18 or newer)" >&2; exit 1; }
command -v npm >/dev/null || { echo "ocpp-rpc: npm not found" >&2; exit 1; }

wanted="$(node -p 'require("./package.json").dependencies["ocpp-rpc"]')"
if [[ -f node_modules/ocpp-rpc/package.json ]] &&
  [[ "$(node -p 'require("./node_modules/ocpp-rpc/package.json").version')" == "$wanted" ]]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
node -e 'require("ocpp-rpc")'
echo "interop: ocpp-rpc $wanted installed in $here/node_modules"
