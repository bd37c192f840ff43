#!/usr/bin/env python3
"""Smart-charging interop scenario: the Python `ocpp` central system sends the charging
profiles a charging platform uses, and the pymodbus Heidelberg's holding register 261 (current
limit, 0.1 A) is read back after each one.

Two modes, one file, so run.sh can treat the scenario like the others:

  --serve (the central system): csms.py's server and session classes, unchanged (schema
      validation of every message in both directions, the same JSON-lines log), plus a Unix
      socket at `<csms-log>.calls` through which the driver has the central system send CALLs
      (one JSON line {"action": "SetChargingProfile", "payload": {...snake_case...}} in, one
      JSON line {"status"|"error", "payload"} out).
  default (the driver, scenario.py's arguments): boot -> plug -> Charging at 16 A (raw 160) ->
      TxProfile 10 A (100) -> ChargePointMaxProfile 8 A (80) -> cleared (100) -> TxProfile 0 A
      (0, SuspendedEVSE) -> 10 A again (100, Charging) -> TxProfile 7360 W on 3 phases (106) ->
      Daily recurring ChargePointMaxProfile whose current window is 7 A (70) ->
      GetCompositeSchedule -> ClearChargingProfile (160) -> unplug -> StopTransaction.
      Each register value not reached within 15 s is one `driver: ...` failure (exit 1);
      check.py then checks the logs as for every scenario (zero schema-validation errors).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import socket
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import csms
from ocpp.v16 import call
from scenario import Watcher, control

CALLRESULT = 3


def calls_socket(csms_log: str) -> str:
    """Where the central system takes CALLs to send (derived, so run.sh passes nothing new)."""
    return csms_log + ".calls"


# --- the central system (--serve) ---

SESSIONS: dict[str, csms.CentralSystemSession] = {}


class SmartSession(csms.CentralSystemSession):
    """csms.py's session, remembered by charge point id so the call socket can reach it."""

    def __init__(self, charger_id: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(charger_id, *args, **kwargs)
        SESSIONS[charger_id] = self


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return value


async def serve_calls(path: str) -> asyncio.base_events.Server:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    session = SESSIONS.get(req["charger"])
                    if session is None:
                        answer = {"error": f"{req['charger']} is not connected"}
                    else:
                        payload = getattr(call, req["action"])(**req["payload"])
                        result = await session.send_call(payload)
                        answer = (
                            {"error": "CALLERROR, invalid reply or timeout (see the csms log)"}
                            if result is None
                            else {"status": getattr(result, "status", None), "payload": jsonable(result)}
                        )
                except Exception as exc:  # a bad request from the driver: answer, keep serving
                    answer = {"error": f"{type(exc).__name__}: {exc}"}
                writer.write((json.dumps(answer, default=str) + "\n").encode())
                await writer.drain()
        finally:
            writer.close()

    if os.path.exists(path):
        os.unlink(path)
    return await asyncio.start_unix_server(client, path)


def serve(argv: list[str]) -> int:
    """csms.py's main with the session class swapped and the call socket added."""
    csms.CentralSystemSession = SmartSession  # CentralSystem.handler looks the name up here
    original = csms.main_async

    async def main_async(args: argparse.Namespace) -> None:
        server = await serve_calls(calls_socket(args.log))
        try:
            await original(args)
        finally:
            server.close()

    csms.main_async = main_async
    sys.argv = [sys.argv[0], *argv]
    csms.main()
    return 0


# --- the driver ---


class Central:
    """The driver's end of the call socket."""

    def __init__(self, path: str, charger: str) -> None:
        self.path = path
        self.charger = charger

    def send(self, action: str, **payload: Any) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(40)
            s.connect(self.path)
            s.sendall((json.dumps({"charger": self.charger, "action": action, "payload": payload}) + "\n").encode())
            return json.loads(s.makefile().readline())


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def profile(pid: int, purpose: str, kind: str, unit: str, periods: list[dict], stack_level: int = 0,
            **extra: Any) -> dict[str, Any]:
    schedule = {"charging_rate_unit": unit, "charging_schedule_period": periods}
    schedule.update(extra.pop("schedule", {}))
    return {
        "charging_profile_id": pid,
        "stack_level": stack_level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": kind,
        "charging_schedule": schedule,
        **extra,
    }


def run(args: argparse.Namespace) -> list[str]:
    w = Watcher(args.csms_log, args.charger, args.name, args.gateway_pid)
    cs = Central(calls_socket(args.csms_log), args.charger)
    failures: list[str] = []

    def register(raw: int, what: str) -> None:
        deadline = time.monotonic() + 15
        last = None
        while time.monotonic() < deadline:
            last = control(args.control, "status").get("limit_raw")
            if last == raw:
                w.say(f"HR 261 = {raw} ({what})")
                return
            time.sleep(0.1)
        failures.append(f"driver: {what}: HR 261 is {last}, expected {raw}")
        w.say(f"HR 261 = {last}, expected {raw} ({what})")

    def send(action: str, **payload: Any) -> dict[str, Any]:
        answer = cs.send(action, **payload)
        w.say(f"{action} -> {answer.get('status') or answer.get('error')}")
        if answer.get("status") != "Accepted":
            failures.append(f"driver: {action} {payload}: {answer}")
        return answer

    try:
        w.wait("BootNotification answered", args.boot_timeout, lambda rs: [
            r for r in rs if r.get("kind") == "message" and r.get("dir") == "out" and r.get("type") == CALLRESULT
            and r.get("charger") == args.charger and r.get("action") == "BootNotification"
        ])
        w.wait("connector 1 Available", 15, lambda rs: w.status(rs, "Available"))
        w.wait("ChangeConfiguration answered", 15, lambda rs: [
            r for r in rs if r.get("kind") == "call_result" and r.get("charger") == args.charger
            and (r.get("request") or {}).get("key") == "MeterValueSampleInterval"
        ])
        control(args.control, "plug")
        t_plug = time.time()
        w.say("EV plugged in")
        w.wait("StartTransaction", 15, lambda rs: w.inbound(rs, "StartTransaction", t_plug))
        w.wait("StatusNotification Charging", 15, lambda rs: w.status(rs, "Charging", t_plug))
        reply = w.wait("StartTransaction answered", 15, lambda rs: [
            r for r in rs if r.get("kind") == "message" and r.get("dir") == "out" and r.get("type") == CALLRESULT
            and r.get("charger") == args.charger and r.get("action") == "StartTransaction"
        ])
        tx = reply[-1]["payload"]["transactionId"]
        register(160, "charging at max_current 16 A, no profile")

        def tx_profile(limit: float, unit: str = "A", **period: Any) -> dict[str, Any]:
            return profile(1, "TxProfile", "Relative", unit, [{"start_period": 0, "limit": limit, **period}],
                           transaction_id=tx)

        send("SetChargingProfile", connector_id=1, cs_charging_profiles=tx_profile(10.0))
        register(100, "TxProfile 10 A")

        now = datetime.now(timezone.utc)
        send("SetChargingProfile", connector_id=0, cs_charging_profiles=profile(
            2, "ChargePointMaxProfile", "Absolute", "A", [{"start_period": 0, "limit": 8.0}],
            schedule={"start_schedule": iso(now - timedelta(minutes=1))}))
        register(80, "ChargePointMaxProfile 8 A caps the TxProfile")
        send("ClearChargingProfile", id=2)
        register(100, "ChargePointMaxProfile cleared")

        t_pause = time.time()
        send("SetChargingProfile", connector_id=1, cs_charging_profiles=tx_profile(0.0))
        register(0, "limit 0 pauses")
        try:
            w.wait("StatusNotification SuspendedEVSE", 15, lambda rs: w.status(rs, "SuspendedEVSE", t_pause))
        except TimeoutError as exc:
            failures.append(f"driver: {exc}")

        t_resume = time.time()
        send("SetChargingProfile", connector_id=1, cs_charging_profiles=tx_profile(10.0))
        register(100, "resumed at 10 A")
        try:
            w.wait("StatusNotification Charging again", 15, lambda rs: w.status(rs, "Charging", t_resume))
        except TimeoutError as exc:
            failures.append(f"driver: {exc}")

        # 7360 W / (3 x 230 V) = 10.67 A, rounded down to 10.6 A: never above the profile.
        send("SetChargingProfile", connector_id=1,
             cs_charging_profiles=tx_profile(7360.0, "W", number_phases=3))
        register(106, "TxProfile 7360 W on 3 phases")

        # A Daily window (e.g. a grid operator's peak hours) that began an hour ago today, anchored
        # on yesterday's date: 7 A for two hours, then 16 A.
        now = datetime.now(timezone.utc)
        send("SetChargingProfile", connector_id=0, cs_charging_profiles=profile(
            3, "ChargePointMaxProfile", "Recurring", "A",
            [{"start_period": 0, "limit": 7.0}, {"start_period": 7200, "limit": 16.0}],
            recurrency_kind="Daily",
            schedule={"start_schedule": iso(now - timedelta(days=1, hours=1)), "duration": 86400}))
        register(70, "Daily recurring ChargePointMaxProfile, 7 A window")

        composite = send("GetCompositeSchedule", connector_id=1, duration=3600, charging_rate_unit="A")
        w.say(f"composite schedule: {json.dumps(composite.get('payload'), default=str)[:300]}")

        send("ClearChargingProfile")
        register(160, "every profile cleared: back to max_current")

        # A MeterValues of the transaction for check.py, then end it as the other scenarios do.
        t_mv = time.time()
        w.wait("MeterValues during the transaction", 30, lambda rs: w.inbound(rs, "MeterValues", t_mv))
        control(args.control, "unplug")
        t_unplug = time.time()
        w.say("EV unplugged")
        w.wait("StopTransaction", 15, lambda rs: w.inbound(rs, "StopTransaction", t_unplug))
        w.wait("connector 1 Available again", 15, lambda rs: w.status(rs, "Available", t_unplug))
        time.sleep(1.0)
    except (TimeoutError, OSError, ValueError, KeyError) as exc:
        w.say(f"step failed: {exc}")
        failures.append(f"driver: {exc}")
    return failures


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        return serve(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--charger", required=True)
    p.add_argument("--csms-log", required=True)
    p.add_argument("--control", required=True, help="heidelberg.py's control socket")
    p.add_argument("--gateway-pid", type=int)
    p.add_argument("--boot-timeout", type=float, default=30)
    args = p.parse_args()
    failures = run(args)
    for f in failures:
        print(f, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
