#!/usr/bin/env bash
# Interoperability suite: chargebridge between peers it did not write.
#   central systems: the Python `ocpp` package (csms.py) and the npm package `ocpp-rpc` in
#                    strictMode (ocpp-rpc/csms.js), both schema-validating, over WSS + Basic Auth
#   wallbox:         pymodbus as a Heidelberg Energy Control, over RTU (socat pty pair) and TCP
# Scenarios: rtu, tcp (free vend: plug -> charge -> unplug; checked by check.py) and core,
#   core-rpc (every Core and Remote Trigger message, authorization mode remote; core.py),
#   probe (`chargebridge probe` against pymodbus slaves; probe_scenario.py).
# Usage: bash tests/interop/run.sh            (from anywhere; CI runs it from the repo root)
# Env:   CARGO_TARGET_DIR (default ./target), INTEROP_KEEP=1 keeps the work directory (logs,
#        config), =0 never (default: kept only when something failed),
#        INTEROP_SCENARIOS="rtu tcp core core-rpc" picks scenarios, INTEROP_GATEWAY="CMD ARGS"
#        replaces the gateway binary (used by selftest/run.sh to test this suite itself).
# Prints PASS/FAIL per scenario and ends with `N passed, M failed`; exit status 1 if anything failed.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

die() { echo "interop: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

for tool in socat openssl cargo python3; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian packages: socat openssl python3-venv)"
done
scenarios="${INTEROP_SCENARIOS:-rtu tcp smart core core-rpc probe security}"

bash "$here/setup.sh" || die "setup.sh failed"
if [[ " $scenarios " == *" core-rpc "* ]]; then
  # The second central system: `npm ci` of the pinned ocpp-rpc into ocpp-rpc/node_modules.
  bash "$here/ocpp-rpc/setup.sh" || die "ocpp-rpc/setup.sh failed (needs node and npm)"
fi
py="$here/.venv/bin/python"

if [[ -n "${INTEROP_GATEWAY:-}" ]]; then
  # Self-test of the suite (selftest/run.sh): a stand-in gateway command instead of the build.
  read -r -a gateway <<<"$INTEROP_GATEWAY"
else
  target="${CARGO_TARGET_DIR:-$root/target}"
  echo "interop: cargo build (debug, target dir $target)"
  cargo build --quiet --bin chargebridge || die "cargo build failed"
  gateway=("$target/debug/chargebridge")
  [[ -x "${gateway[0]}" ]] || die "no gateway binary at ${gateway[0]}"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/chargebridge-interop.XXXXXX")"
pids=()
failed_any=0

stop_pid() { # stop_pid PID: SIGTERM, up to 5 s grace, then SIGKILL; always reaps.
  local pid="$1" i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    stop_pid "${pids[i]}"
  done
  pids=()
  if [[ "${INTEROP_KEEP:-}" == 1 || ("${INTEROP_KEEP:-}" != 0 && "$failed_any" == 1) ]]; then
    echo "interop: logs kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # start NAME CMD...: background process, output to $work/NAME.out; sets $last_pid
  local name="$1"
  shift
  "$@" >"$work/$name.out" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
}

wait_for() { # wait_for SECONDS DESCRIPTION TEST...
  local secs="$1" what="$2" i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  echo "interop: timed out waiting for $what" >&2
  return 1
}

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

bash "$here/gen-certs.sh" "$work/certs" || die "certificate generation failed"

passed=0
failed=0

run_scenario() { # run_scenario NAME MODE(rtu|tcp) CHARGER_ID DRIVER(charge|core) CSMS(ocpp|ocpp-rpc)
  local name="$1" mode="$2" charger="$3" driver="$4" csms="$5"
  local d="$work/$name" env_var="${charger//-/_}_PASSWORD"
  local first_pid_index=${#pids[@]} csms_port http_port mb_port gw_pid driver_failure=()
  mkdir -p "$d/state"
  export "$env_var=$(openssl rand -hex 16)"
  echo "== scenario $name: Modbus $mode, charge point $charger, central system $csms, driver $driver"

  local bus_yaml charger_transport auth_mode=free
  [[ "$driver" == core ]] && auth_mode=remote
  if [[ "$mode" == rtu ]]; then
    start "$name-socat" socat -d -d "pty,raw,echo=0,link=$d/gw" "pty,raw,echo=0,link=$d/wb"
    wait_for 10 "socat pty pair" test -e "$d/gw" -a -e "$d/wb" || return 1
    start "$name-wallbox" "$py" "$here/heidelberg.py" --serial "$d/wb" --parity N \
      --control "$d/wallbox.sock" --log "$d/wallbox.jsonl"
    bus_yaml=$'buses:\n  rs485-1:\n    port: '"$d/gw"$'\n    baud: 19200\n    parity: even\n    data_bits: 8\n    stop_bits: 1\n'
    charger_transport="bus: rs485-1"
  else
    mb_port="$(free_port)"
    start "$name-wallbox" "$py" "$here/heidelberg.py" --tcp "127.0.0.1:$mb_port" \
      --control "$d/wallbox.sock" --log "$d/wallbox.jsonl"
    bus_yaml=""
    charger_transport="tcp: 127.0.0.1:$mb_port"
  fi
  wait_for 20 "wallbox simulator" grep -qs '"kind": "started"' "$d/wallbox.jsonl" || return 1

  local csms_cmd=("$py" "$here/csms.py") csms_opts=()
  [[ "$csms" == ocpp-rpc ]] && csms_cmd=(node "$here/ocpp-rpc/csms.js")
  # smart: smart_scenario.py --serve is csms.py plus a socket through which its driver sends CALLs.
  [[ "$driver" == smart ]] && csms_cmd=("$py" "$here/smart_scenario.py" --serve)
  if [[ "$driver" == charge || "$driver" == smart ]]; then
    # The central system configures the sample interval itself right after each boot.
    csms_opts=(--sampled-data "Energy.Active.Import.Register,Power.Active.Import" --meter-interval 5)
  fi
  start "$name-csms" "${csms_cmd[@]}" --host 127.0.0.1 --port 0 --ready-file "$d/csms.port" \
    --cert "$work/certs/server.pem" --key "$work/certs/server.key" --log "$d/csms.jsonl" \
    --charger "$charger:$env_var" --heartbeat-interval 5 --control "$d/csms.sock" "${csms_opts[@]}"
  wait_for 20 "central system" test -s "$d/csms.port" || return 1
  csms_port="$(cat "$d/csms.port")"
  http_port="$(free_port)"

  cat >"$d/chargebridge.yaml" <<EOF
# written by tests/interop/run.sh (scenario $name)
state_dir: $d/state
http:
  listen: 127.0.0.1:$http_port
log: { format: text, filter: info }
csms:
  url: wss://localhost:$csms_port/ocpp
  security_profile: 2
  ca_file: $work/certs/ca.pem
${bus_yaml}chargers:
  - id: $charger
    device_map: heidelberg-energy-control
    $charger_transport
    unit: 1
    password: \${$env_var}
    phases: 3
    voltage: 230
    max_current: 16
    failsafe_current: 6
    poll_interval: 1s
    authorization: { mode: $auth_mode, id_tag: $charger }
EOF

  start "$name-gateway" "${gateway[@]}" run -c "$d/chargebridge.yaml"
  gw_pid=$last_pid

  local verdict=0
  if [[ "$driver" == core ]]; then
    # core.py drives and checks in one go (every Core and Remote Trigger message).
    "$py" "$here/core.py" --name "$name" --charger "$charger" --csms-log "$d/csms.jsonl" \
      --csms-control "$d/csms.sock" --wallbox-control "$d/wallbox.sock" --gateway-pid "$gw_pid" || verdict=1
  elif [[ "$driver" == smart ]]; then
    if ! "$py" "$here/smart_scenario.py" --name "$name" --charger "$charger" --csms-log "$d/csms.jsonl" \
      --control "$d/wallbox.sock" --gateway-pid "$gw_pid"; then
      driver_failure=(--extra-failure "the smart charging scenario did not complete (see the step above)")
    fi
  elif ! "$py" "$here/scenario.py" --name "$name" --charger "$charger" --csms-log "$d/csms.jsonl" \
    --control "$d/wallbox.sock" --gateway-pid "$gw_pid"; then
    driver_failure=(--extra-failure "the scenario did not complete (see the step above)")
  fi

  if ! kill -0 "$gw_pid" 2>/dev/null; then
    wait "$gw_pid"
    echo "  [$name] the gateway exited early, status $?"
  fi
  # Stop this scenario's processes, gateway first so its last messages reach the log.
  local i
  for ((i = ${#pids[@]} - 1; i >= first_pid_index; i--)); do
    stop_pid "${pids[i]}"
  done
  pids=("${pids[@]:0:first_pid_index}")

  [[ "$driver" == core ]] && return "$verdict"
  "$py" "$here/check.py" --name "$name" --charger "$charger" --id-tag "$charger" \
    --csms-log "$d/csms.jsonl" --wallbox-log "$d/wallbox.jsonl" "${driver_failure[@]}"
}

for scenario in $scenarios; do
  if [[ "$scenario" == probe ]]; then
    # No central system and no gateway daemon: `chargebridge probe` against pymodbus peers.
    echo "== scenario probe: chargebridge probe against pymodbus slaves (answering, refusing, silent)"
    if "$py" "$here/probe_scenario.py" --name probe --work "$work/probe" -- "${gateway[@]}"; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      failed_any=1
    fi
    continue
  fi
  case "$scenario" in
    rtu) args=(rtu rtu IB-0001 charge ocpp) ;;
    tcp) args=(tcp tcp IB-0002 charge ocpp) ;;
    smart) args=(smart rtu IB-0005 smart ocpp) ;;
    core) args=(core tcp IB-0003 core ocpp) ;;
    core-rpc) args=(core-rpc tcp IB-0004 core ocpp-rpc) ;;
    security) # ELB TLS 1.2 policy + AuthorizationKey change/rollback (security_scenario.py)
      if "$py" "$here/security_scenario.py" --gateway "${gateway[@]}" --certs "$work/certs" \
        --work "$work/security"; then passed=$((passed + 1)); else failed=$((failed + 1)); failed_any=1; fi
      continue ;;
    *) die "unknown scenario $scenario" ;;
  esac
  if run_scenario "${args[@]}"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failed_any=1
    echo "FAIL ${args[0]}: last lines of the gateway's log ($work/${args[0]}-gateway.out):"
    tail -n 40 "$work/${args[0]}-gateway.out" 2>/dev/null | sed 's/^/    /'
  fi
done

echo "$passed passed, $failed failed"
[[ "$failed" == 0 ]]
