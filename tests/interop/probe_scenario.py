#!/usr/bin/env python3
"""`chargebridge probe` against Modbus TCP slaves this project did not write (scenario `probe`).

Three peers, each probed with the built-in `heidelberg-energy-control` map:
  (a) heidelberg.py --tcp (pymodbus), EV plugged, limit 0: exit 0, the state B1 (raw 4) and the
      decoded registers as the box serves them, and the box saw no write at all;
  (b) the same pymodbus wallbox model, served in-process, refusing three of the map's registers
      with exception 02 (temperature IR 9, hw_min_current IR 101, failsafe HR 262): exit 0, each
      refused register named with exception 0x02 in the report, its block neighbours still read
      (the probe splits a refused block down to single registers);
  (c) a TCP listener that accepts and never answers: exit 2 with the not-answering hint.

Usage: probe_scenario.py --name probe --work DIR -- GATEWAY_CMD [ARGS...]
Prints `  [probe] ...` per step, then `PASS probe` or `FAIL probe` with the reasons; exit 0 / 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import heidelberg  # noqa: E402  (the independent wallbox model, reused for peer (b))
from pymodbus.constants import ExcCodes  # noqa: E402
from pymodbus.server import ModbusTcpServer  # noqa: E402

MAP = "heidelberg-energy-control"
ENERGY_WH = 4242424
# A generous bound for one probe run on a loaded machine (a silent device costs the map's
# timeout x (retries + 1) per read block).
PROBE_TIMEOUT_S = 120.0
# (function code, wire address) -> register name in the Heidelberg map, refused by peer (b).
REFUSED = {(4, 9): "temperature", (4, 101): "hw_min_current", (3, 262): "failsafe"}


class Scenario:
    def __init__(self, name: str, work: str, gateway: list[str]) -> None:
        self.name = name
        self.work = work
        self.gateway = gateway
        self.failures: list[str] = []
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        print(f"  [{self.name}] {time.monotonic() - self.t0:6.1f}s {text}", flush=True)

    def check(self, ok: bool, failure: str) -> None:
        if not ok:
            self.failures.append(failure)
            self.say(f"FAILED: {failure}")

    async def probe(self, label: str, port: int) -> tuple[int | None, str]:
        """Runs `chargebridge probe` against 127.0.0.1:port; (exit status, stdout)."""
        cmd = [*self.gateway, "probe", "--map", MAP, "--tcp", f"127.0.0.1:{port}"]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        started = time.monotonic()
        try:
            out, err = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT_S)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            self.check(False, f"{label}: probe still running after {PROBE_TIMEOUT_S:.0f} s")
            return None, ""
        text = out.decode("utf-8", "replace")
        with open(os.path.join(self.work, f"{label}.out"), "w", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n# exit {proc.returncode}\n{text}\n# stderr\n")
            f.write(err.decode("utf-8", "replace"))
        self.say(f"{label}: probe exited {proc.returncode} after {time.monotonic() - started:.1f} s")
        return proc.returncode, text


def row(report: str, register: str) -> list[str] | None:
    """The report's table row for `register`, split on whitespace (None when missing)."""
    for line in report.splitlines():
        words = line.split()
        if words and words[0] == register:
            return words
    return None


def decoded(report: str, register: str) -> str | None:
    r = row(report, register)
    return r[-1] if r else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_listening(port: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return True
        except OSError:
            await asyncio.sleep(0.1)
    return False


def control(path: str, command: str) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


async def answering_heidelberg(sc: Scenario) -> None:
    """(a) heidelberg.py --tcp as a separate process, EV plugged, limit 0."""
    port = free_port()
    log = os.path.join(sc.work, "wallbox.jsonl")
    sock = os.path.join(sc.work, "wallbox.sock")
    cmd = [sys.executable, os.path.join(HERE, "heidelberg.py"), "--tcp", f"127.0.0.1:{port}",
           "--energy", str(ENERGY_WH), "--initial-limit", "0", "--control", sock, "--log", log]
    with open(os.path.join(sc.work, "wallbox.out"), "w", encoding="utf-8") as out:
        box = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        if not await wait_listening(port):
            sc.check(False, "(a) heidelberg.py did not start listening")
            return
        plugged = control(sock, "plug")
        sc.check(plugged.get("state") == heidelberg.STATE_B1, f"(a) the box is not in B1 after plug: {plugged}")
        rc, report = await sc.probe("a-heidelberg", port)
        sc.check(rc == 0, f"(a) exit status {rc}, expected 0")
        sc.check("IEC 61851 state: B1 (raw 4)" in report, "(a) the report does not show state B1 (raw 4)")
        sc.check("OCPP status (no transaction): Preparing" in report, "(a) the report does not show Preparing")
        hi, lo = ENERGY_WH >> 16, ENERGY_WH & 0xFFFF
        energy = row(report, "energy")
        sc.check(energy is not None and f"{hi:04X}" in energy and f"{lo:04X}" in energy,
                 f"(a) energy raw words {hi:04X} {lo:04X} not shown: {energy}")
        expected = {"energy": str(ENERGY_WH), "layout_version": "264", "hw_max_current": "16",
                    "hw_min_current": "6", "temperature": "25.4", "voltage_l1": "230", "state": "4",
                    "limit": "0"}
        for name, value in expected.items():
            got = decoded(report, name)
            sc.check(got == value, f"(a) {name} decoded as {got!r}, the box serves {value}")
        sc.check("refuses it" not in report and "no answer" not in report,
                 "(a) the report claims a refused or unanswered register")
        sc.check("nothing was written" in report, "(a) the report does not say it wrote nothing")
        writes = []
        if os.path.exists(log):
            with open(log, encoding="utf-8") as f:
                writes = [r for r in map(json.loads, f) if r.get("kind") in ("write", "write_refused")]
        sc.check(not writes, f"(a) the probe wrote to the wallbox: {writes[:3]}")
    finally:
        box.terminate()
        try:
            box.wait(10)
        except subprocess.TimeoutExpired:
            box.kill()
            box.wait()


async def refusing_heidelberg(sc: Scenario) -> None:
    """(b) the pymodbus wallbox model refusing three of the map's registers with exception 02."""
    box = heidelberg.Wallbox(heidelberg.JsonLog(None), ENERGY_WH, 1.0, initial_limit=0)
    serve = box.on_access

    async def refusing(function_code, start_address, address, count, registers, set_values):  # noqa: ANN001, ANN202
        if any((function_code, a) in REFUSED for a in range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        return await serve(function_code, start_address, address, count, registers, set_values)

    box.on_access = refusing  # build_device hands this hook to pymodbus
    port = free_port()
    server = ModbusTcpServer(heidelberg.build_device(box, 1), address=("127.0.0.1", port),
                             ignore_missing_devices=True)
    task = asyncio.create_task(server.serve_forever())
    try:
        if not await wait_listening(port):
            sc.check(False, "(b) the refusing pymodbus slave did not start listening")
            return
        rc, report = await sc.probe("b-refusing", port)
        sc.check(rc == 0, f"(b) exit status {rc}, expected 0 (the device answered, with exceptions)")
        for name in REFUSED.values():
            r = row(report, name)
            sc.check(r is not None and "0x02" in r, f"(b) {name} not shown as exception 0x02: {r}")
            sc.check(f"{name}: the device refuses it (exception 0x02" in report,
                     f"(b) the report does not name {name} as refused")
        named = [line for line in report.splitlines() if "refuses it" in line]
        sc.check(len(named) == len(REFUSED), f"(b) {len(named)} registers named as refused, expected {len(REFUSED)}: {named}")
        # The refused registers' block neighbours are still read one by one.
        for name, value in {"current_l3": "0", "voltage_l1": "230", "hw_max_current": "16",
                            "limit": "0", "energy": str(ENERGY_WH)}.items():
            got = decoded(report, name)
            sc.check(got == value, f"(b) neighbour {name} decoded as {got!r}, the box serves {value}")
        sc.check("IEC 61851 state: A (raw 2)" in report, "(b) the report does not show state A (raw 2)")
    finally:
        await server.shutdown()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def silent_listener(sc: Scenario) -> None:
    """(c) accepts the connection, reads everything, never answers."""
    connections: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        rc, report = await sc.probe("c-silent", port)
        sc.check(rc == 2, f"(c) exit status {rc}, expected 2 (no answer)")
        sc.check("The device did not answer" in report, "(c) the not-answering hint is missing")
        sc.check(bool(connections), "(c) the probe never connected to the listener")
        state = row(report, "state")
        sc.check(state is not None and "no answer" in " ".join(state), f"(c) state row: {state}")
    finally:
        server.close()
        for w in connections:
            w.close()
        await server.wait_closed()


async def main_async(args: argparse.Namespace) -> int:
    os.makedirs(args.work, exist_ok=True)
    sc = Scenario(args.name, args.work, args.gateway)
    for step in (answering_heidelberg, refusing_heidelberg, silent_listener):
        try:
            await step(sc)
        except Exception as e:  # noqa: BLE001  (a broken step is a failure, the next one still runs)
            sc.check(False, f"{step.__name__}: {e!r}")
    for failure in sc.failures:
        print(f"  [{sc.name}] FAILED: {failure}")
    verdict = "PASS" if not sc.failures else "FAIL"
    print(f"{verdict} {sc.name} ({len(sc.failures)} failed assertion(s))", flush=True)
    return 0 if not sc.failures else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="probe")
    p.add_argument("--work", required=True, help="directory for the probe outputs and the wallbox log")
    p.add_argument("gateway", nargs="+", help="the chargebridge command (after --)")
    args = p.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
