#!/usr/bin/env bash
# Tests the interop suite itself, without the real gateway:
#   1. unit tests of the checker (hand-made logs), both central systems (csms.py and
#      ocpp-rpc/csms.js, same contract) and the wallbox simulator;
#   2. run.sh end to end with fake_gateway.py standing in for chargebridge: must pass;
#   3. run.sh with fake_gateway.py misbehaving on purpose: each must fail, for the right reason.
# Usage: bash tests/interop/selftest/run.sh     Ends with `N passed, M failed`.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
interop="$(dirname "$here")"
bash "$interop/setup.sh" || exit 1
bash "$interop/ocpp-rpc/setup.sh" || exit 1
py="$interop/.venv/bin/python"
fake="$py $here/fake_gateway.py"
passed=0
failed=0
result() { # result NAME OK
  if [[ "$2" == 0 ]]; then passed=$((passed + 1)); echo "PASS selftest $1"; else failed=$((failed + 1)); echo "FAIL selftest $1"; fi
}

(cd "$interop" && "$py" -m unittest selftest.test_check selftest.test_csms selftest.test_heidelberg)
result unittests $?

# The stand-in only plays the charging scenarios; the core ones need the real gateway.
out="$(INTEROP_SCENARIOS="rtu tcp" INTEROP_GATEWAY="$fake" bash "$interop/run.sh" 2>&1)"
rc=$?
echo "$out" | tail -n 3
[[ $rc == 0 ]] && grep -qx "2 passed, 0 failed" <<<"$out"
result "run.sh with a well-behaved gateway" $?

for case in "bad-energy:not an integer-valued string" \
  "wrong-stop:meterStop" \
  "invalid:validation_error: StatusNotification" \
  "no-standby:standby register 258 = 4"; do
  bug="${case%%:*}" expect="${case#*:}"
  out="$(INTEROP_KEEP=0 FAKE_GATEWAY_BUG="$bug" INTEROP_SCENARIOS=tcp INTEROP_GATEWAY="$fake" bash "$interop/run.sh" 2>&1)"
  rc=$?
  [[ $rc != 0 ]] && grep -qx "0 passed, 1 failed" <<<"$out" && grep -F "FAILED:" <<<"$out" | grep -qF "$expect"
  ok=$?
  [[ $ok == 0 ]] || echo "$out" | tail -n 20
  result "run.sh notices a gateway with bug $bug" $ok
done
# Leftover processes would be a bug of run.sh's cleanup.
if pgrep -f "$interop/(csms|heidelberg).py|ocpp-rpc/csms.js|fake_gateway.py" >/dev/null; then
  pgrep -af "$interop/(csms|heidelberg).py|ocpp-rpc/csms.js|fake_gateway.py"
  result "no processes left behind" 1
else
  result "no processes left behind" 0
fi
echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
