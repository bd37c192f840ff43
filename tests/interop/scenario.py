#!/usr/bin/env python3
"""Drives one interop scenario: boot -> plug -> charge -> MeterValues -> unplug -> StopTransaction.

It watches the central system's JSON-lines log and plugs / unplugs the simulated EV through
heidelberg.py's control socket. It asserts nothing itself (check.py does, on the logs); it only
reports steps that did not happen in time, one `driver: ...` line each, and exits 1 then.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from typing import Any, Callable

from check import CALL, CALLRESULT, read_jsonl


class Watcher:
    """Polls the central system's log until a predicate over its records holds."""

    def __init__(self, path: str, charger: str, name: str, gateway_pid: int | None) -> None:
        self.path = path
        self.charger = charger
        self.name = name
        self.gateway_pid = gateway_pid
        self.t0 = time.monotonic()

    def records(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path)

    def say(self, text: str) -> None:
        print(f"  [{self.name}] {time.monotonic() - self.t0:6.1f}s {text}", flush=True)

    def gateway_alive(self) -> bool:
        if self.gateway_pid is None:
            return True
        try:
            with open(f"/proc/{self.gateway_pid}/stat", encoding="ascii") as f:
                return f.read().split()[2] != "Z"
        except OSError:
            return False

    def wait(self, what: str, timeout: float, pred: Callable[[list[dict]], Any]) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = pred(self.records())
            if found:
                self.say(what)
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not seen within {timeout:.0f} s")
            if not self.gateway_alive():
                raise TimeoutError(f"{what}: the gateway exited before it happened")
            time.sleep(0.1)

    def inbound(self, records: list[dict], action: str, after: float = 0.0) -> list[dict]:
        return [
            r for r in records
            if r.get("kind") == "message" and r.get("dir") == "in" and r.get("type") == CALL
            and r.get("charger") == self.charger and r.get("action") == action and r.get("ts", 0) >= after
        ]

    def status(self, records: list[dict], status: str, after: float = 0.0) -> list[dict]:
        return [
            r for r in self.inbound(records, "StatusNotification", after)
            if r["payload"].get("connectorId") == 1 and r["payload"].get("status") == status
        ]


def control(path: str, command: str) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall((command + "\n").encode())
        return json.loads(s.makefile().readline())


def run(args: argparse.Namespace) -> list[str]:
    w = Watcher(args.csms_log, args.charger, args.name, args.gateway_pid)
    try:
        w.wait("BootNotification answered", args.boot_timeout, lambda rs: [
            r for r in rs if r.get("kind") == "message" and r.get("dir") == "out" and r.get("type") == CALLRESULT
            and r.get("charger") == args.charger and r.get("action") == "BootNotification"
        ])
        w.wait("connector 1 Available", 15, lambda rs: w.status(rs, "Available"))

        # The central system configures the sample interval right after boot; if the gateway
        # refuses it, the OCPP default (or the gateway's) applies and we wait longer.
        interval = 60
        try:
            results = w.wait("ChangeConfiguration answered", 10, lambda rs: [
                r for r in rs if r.get("kind") == "call_result" and r.get("charger") == args.charger
                and (r.get("request") or {}).get("key") == "MeterValueSampleInterval"
            ])
            if results[-1].get("status") == "Accepted":
                interval = int(results[-1]["request"]["value"])
            else:
                w.say(f"MeterValueSampleInterval not accepted: {results[-1]}")
        except TimeoutError as exc:
            w.say(str(exc))

        plugged = control(args.control, "plug")
        w.say(f"EV plugged in (energy register {plugged.get('energy_wh')} Wh)")
        t_plug = time.time()
        w.wait("StatusNotification Preparing", 15, lambda rs: w.status(rs, "Preparing", t_plug))
        w.wait("StartTransaction", 15, lambda rs: w.inbound(rs, "StartTransaction", t_plug))
        t_charge = w.wait("StatusNotification Charging", 15, lambda rs: w.status(rs, "Charging", t_plug))[0]["ts"]
        w.wait("MeterValues during the transaction", interval + 10,
               lambda rs: w.inbound(rs, "MeterValues", t_charge))
        # Let the energy register move a little more so meterStop differs from meterStart.
        time.sleep(args.extra_charge)

        unplugged = control(args.control, "unplug")
        w.say(f"EV unplugged (energy register {unplugged.get('energy_wh')} Wh)")
        t_unplug = time.time()
        w.wait("StopTransaction", 15, lambda rs: w.inbound(rs, "StopTransaction", t_unplug))
        w.wait("connector 1 Available again", 15, lambda rs: w.status(rs, "Available", t_unplug))
        # A moment for anything that would follow (late MeterValues, errors) to show up.
        time.sleep(1.0)
    except (TimeoutError, OSError, ValueError) as exc:
        w.say(f"step failed: {exc}")
        return [f"driver: {exc}"]
    return []


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--charger", required=True)
    p.add_argument("--csms-log", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--gateway-pid", type=int)
    p.add_argument("--boot-timeout", type=float, default=30)
    p.add_argument("--extra-charge", type=float, default=2.0)
    args = p.parse_args()
    failures = run(args)
    for f in failures:
        print(f, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
