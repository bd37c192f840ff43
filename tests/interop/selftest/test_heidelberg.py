"""heidelberg.py answering a pymodbus client over Modbus TCP and over RTU on a socat pty pair."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

HERE = os.path.dirname(os.path.abspath(__file__))
INTEROP = os.path.dirname(HERE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def energy(regs: list[int]) -> int:
    """IR 17-18 from a read of IR 4..18: u32, high word first."""
    return (regs[13] << 16) | regs[14]


class WallboxMixin:
    """Starts heidelberg.py (and socat for RTU); subclasses say how and make the client."""

    procs: list[subprocess.Popen]

    def start(self, *args: str) -> None:
        self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.procs = []
        self.sock = os.path.join(self.tmp.name, "ctl.sock")
        self.log = os.path.join(self.tmp.name, "wallbox.jsonl")

    def tearDown(self):
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.tmp.cleanup()

    def start_wallbox(self, *transport: str) -> None:
        self.start(sys.executable, os.path.join(INTEROP, "heidelberg.py"), *transport, "--energy", "70000",
                   "--time-scale", "100", "--control", self.sock, "--log", self.log)
        wait_until(lambda: bool(os.path.exists(self.log) and self.events("started")))

    def control(self, command: str) -> dict:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.sock)
            s.sendall((command + "\n").encode())
            return json.loads(s.makefile().readline())

    def events(self, kind: str) -> list[dict]:
        with open(self.log, encoding="utf-8") as f:
            return [r for r in map(json.loads, f) if r["kind"] == kind]

    async def scenario(self) -> None:
        """What a gateway does over one plug-in, as a user would check it on the registers."""
        client = self.client()  # pymodbus clients need the running loop
        await client.connect()
        self.assertTrue(client.connected)
        r = await client.read_input_registers(4, count=15, device_id=1)
        self.assertFalse(r.isError())
        self.assertEqual(r.registers[0], 0x0108)  # layout version 1.0.8
        self.assertEqual(r.registers[1], 2)  # A1: nothing plugged
        start = energy(r.registers)
        self.assertEqual(start, 70000)
        r = await client.read_input_registers(100, count=1, device_id=1)
        self.assertEqual(r.registers, [16])
        # An undeclared register answers exception 02, like a box that does not have it.
        r = await client.read_input_registers(19, count=1, device_id=1)
        self.assertTrue(r.isError())
        self.assertEqual(r.exception_code, 2)

        self.assertFalse((await client.write_register(258, 4, device_id=1)).isError())
        self.assertFalse((await client.write_registers(261, [0], device_id=1)).isError())
        r = await client.write_register(261, 59, device_id=1)  # between off and 6.0 A: refused
        self.assertTrue(r.isError())
        self.assertEqual(self.events("write_refused")[0]["value"], 59)

        self.control("plug")
        r = await client.read_input_registers(4, count=15, device_id=1)
        self.assertEqual(r.registers[1], 4)  # B1: plugged, limit 0
        self.assertEqual(energy(r.registers), start)

        await client.write_registers(261, [100], device_id=1)  # 10.0 A
        await asyncio.sleep(0.5)
        r = await client.read_input_registers(4, count=15, device_id=1)
        self.assertEqual(r.registers[1], 7)  # C2: charging
        self.assertEqual(r.registers[2:5], [100, 100, 100])  # 10.0 A on each phase
        self.assertEqual(r.registers[10], 10 * 230 * 3)  # power W
        self.assertGreater(energy(r.registers), start)

        unplugged = self.control("unplug")
        await asyncio.sleep(0.3)
        r = await client.read_input_registers(4, count=15, device_id=1)
        self.assertEqual(r.registers[1], 2)
        self.assertEqual(r.registers[2:5], [0, 0, 0])
        # The register stops where it was at unplug, and that is what the log says.
        self.assertEqual(energy(r.registers), unplugged["energy_wh"])
        self.assertEqual(self.events("unplug")[0]["energy"], unplugged["energy_wh"])

        r = await client.read_holding_registers(261, count=2, device_id=1)
        self.assertEqual(r.registers, [100, 0])
        client.close()

    def test_watchdog_falls_back_to_failsafe(self):
        async def go():
            client = self.client()
            await client.connect()
            await client.write_registers(261, [160, 60], device_id=1)  # limit 16 A, failsafe 6 A
            await client.write_register(257, 300, device_id=1)  # watchdog 300 ms
            await asyncio.sleep(0.8)
            r = await client.read_holding_registers(261, count=1, device_id=1)
            client.close()
            return r.registers[0]

        self.assertEqual(asyncio.run(go()), 60)
        self.assertEqual(len(self.events("watchdog_expired")), 1)


class TcpTest(WallboxMixin, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.start_wallbox("--tcp", f"127.0.0.1:{self.port}")

    def client(self):
        return AsyncModbusTcpClient("127.0.0.1", port=self.port, timeout=2)

    def test_plug_charge_unplug(self):
        asyncio.run(self.scenario())


@unittest.skipUnless(shutil.which("socat"), "socat not installed")
class RtuTest(WallboxMixin, unittest.TestCase):
    def setUp(self):
        super().setUp()
        gw = os.path.join(self.tmp.name, "gw")
        wb = os.path.join(self.tmp.name, "wb")
        self.start("socat", f"pty,raw,echo=0,link={gw}", f"pty,raw,echo=0,link={wb}")
        wait_until(lambda: os.path.exists(gw) and os.path.exists(wb))
        self.gw = gw
        self.start_wallbox("--serial", wb)

    def client(self):
        return AsyncModbusSerialClient(self.gw, baudrate=19200, parity="N", timeout=2)

    def test_plug_charge_unplug(self):
        asyncio.run(self.scenario())


if __name__ == "__main__":
    unittest.main()
