#!/usr/bin/env bash
# Creates tests/interop/.venv with the independent peers used by the interoperability suite:
# the Python `ocpp` package (central system, validates every message against the official
# OCPP 1.6 JSON schemas), `websockets` (its transport), `pymodbus` (an independent Modbus
# wallbox) and `pyserial` (pymodbus' serial transport).
#
# Idempotent: when the venv already holds exactly these versions it only checks and returns.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

# Pinned: a newer release may change validation or framing behaviour under our feet.
requirements=(
  "ocpp==2.1.0"
  "websockets==17.4"
  "pymodbus==3.16.1"
  "pyserial==3.5"
)
stamp="$venv/.interop-requirements"
wanted="$(printf '%s\n' "${requirements[@]}")"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
  if "$venv/bin/python" -c 'import ocpp.v16, websockets, pymodbus, serial' 2>/dev/null; then
    exit 0
  fi
fi

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
"$venv/bin/python" -c 'import ocpp.v16, websockets, pymodbus, serial'
printf '%s\n' "$wanted" >"$stamp"
echo "interop: virtualenv ready at $venv"
