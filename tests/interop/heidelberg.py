#!/usr/bin/env python3
"""An independent Heidelberg Energy Control wallbox built on pymodbus, for the interop suite.

Serves the Heidelberg register layout (wallbox-register-facts.md section 3.1) as Modbus RTU on a
serial device (`--serial PATH`, e.g. one end of a socat pty pair) or as Modbus TCP
(`--tcp HOST:PORT`), unit id 1 by default.

Register model (0-based wire addresses):
  IR 4        register-layout version (0x0108 = 1.0.8)
  IR 5        charging state: 2 A1, 3 A2, 4 B1, 5 B2, 6 C1, 7 C2, 8 derating, 9 E, 10 F, 11 error
  IR 6..8     RMS current L1..L3, 0.1 A
  IR 9        PCB temperature, i16 0.1 degC
  IR 10..12   voltage L1..L3, V
  IR 13       external lock state (1 = unlocked)
  IR 14       power, W (sum of phases)
  IR 15..16   energy since power-on, u32 Wh, high word first
  IR 17..18   energy since installation, u32 Wh, high word first (the lifetime counter)
  IR 100/101  hardware max / min current, A
  IR 102..133 logistic string;  IR 200 hardware variant; IR 203 software revision
  HR 257      watchdog timeout, ms (0 = off)
  HR 258      standby control (4 = standby disabled)
  HR 259      remote lock (1 = unlocked)
  HR 261      max current command, 0.1 A: 0 or 60..160
  HR 262      failsafe current, 0.1 A
Other addresses answer exception 02 (illegal data address).

A simple EV model decides the measured values:
  unplugged                      -> state 2 (A1), no current
  plugged, limit register < 60   -> state 4 (B1), no current
  plugged, limit >= 60           -> state 7 (C2), current = limit / 10 A on 3 phases,
                                    power = I x 230 V x 3, energy integrates power over time
  fault N                        -> state N until `clear`
When the watchdog (HR 257) is non-zero and no request arrives for that long, the limit falls
back to the failsafe current (HR 262), as the real box does.

Control: `--control PATH` is a Unix socket taking one command per line and answering one JSON
line: `plug`, `unplug`, `fault N`, `clear`, `status`, `set-energy WH`.

`--log PATH` records JSON lines: every write, every plug/unplug with the energy register at that
moment, every distinct energy value served to a client, and watchdog expiries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

VOLTAGE = 230
PHASES = 3

# Heidelberg state codes (IR 5).
STATE_A1 = 2
STATE_B1 = 4
STATE_C2 = 7

IR_LAYOUT, IR_STATE, IR_I1, IR_I2, IR_I3, IR_TEMP = 4, 5, 6, 7, 8, 9
IR_U1, IR_U2, IR_U3, IR_LOCK, IR_POWER = 10, 11, 12, 13, 14
IR_E_BOOT_HI, IR_E_BOOT_LO, IR_E_HI, IR_E_LO = 15, 16, 17, 18
IR_HW_MAX, IR_HW_MIN = 100, 101
IR_LOGISTIC, LOGISTIC_LEN = 102, 32
IR_HW_VARIANT, IR_SW_REV = 200, 203
HR_WATCHDOG, HR_STANDBY, HR_REMOTE_LOCK, HR_LIMIT, HR_FAILSAFE = 257, 258, 259, 261, 262


class JsonLog:
    """JSON-lines event log, flushed per record (None: no log)."""

    def __init__(self, path: str | None) -> None:
        self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._lock = threading.Lock()

    def write(self, kind: str, **fields: Any) -> None:
        if self._file is None:
            return
        line = json.dumps({"ts": time.time(), "kind": kind, **fields})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


class Wallbox:
    """The wallbox and its EV: all register values derive from this state."""

    def __init__(self, log: JsonLog, energy_wh: int, time_scale: float, initial_limit: int = 160) -> None:
        self.log = log
        self.time_scale = time_scale
        self.plugged = False
        self.fault: int | None = None
        self.energy_wh = float(energy_wh)  # lifetime counter (IR 17-18)
        self.boot_energy_wh = 0.0  # since power-on (IR 15-16)
        self.last_update = time.monotonic()
        self.last_request = time.monotonic()
        self.watchdog_expired = False
        self.last_served_energy: int | None = None
        # Holding registers as the master last wrote them. Power-on: standby enabled, watchdog
        # off and, unless told otherwise, full current allowed: the pessimistic case, in which
        # an EV charges at once unless the gateway holds the limit at off outside transactions.
        self.hr = {HR_WATCHDOG: 0, HR_STANDBY: 0, HR_REMOTE_LOCK: 1, HR_LIMIT: initial_limit, HR_FAILSAFE: 0}

    # --- EV model ---

    def limit_raw(self) -> int:
        return self.hr[HR_LIMIT]

    def state(self) -> int:
        if self.fault is not None:
            return self.fault
        if not self.plugged:
            return STATE_A1
        return STATE_C2 if self.limit_raw() >= 60 else STATE_B1

    def current_a(self) -> float:
        return self.limit_raw() / 10 if self.state() == STATE_C2 else 0.0

    def power_w(self) -> int:
        return round(self.current_a() * VOLTAGE * PHASES)

    def advance(self) -> None:
        """Integrate energy up to now and apply the watchdog."""
        now = time.monotonic()
        dt = (now - self.last_update) * self.time_scale
        self.last_update = now
        wh = self.power_w() * dt / 3600.0
        self.energy_wh += wh
        self.boot_energy_wh += wh
        timeout_ms = self.hr[HR_WATCHDOG]
        if timeout_ms and not self.watchdog_expired and (now - self.last_request) * 1000 > timeout_ms:
            # The box falls back to the failsafe current when its master goes quiet.
            self.watchdog_expired = True
            self.hr[HR_LIMIT] = self.hr[HR_FAILSAFE]
            self.log.write("watchdog_expired", limit=self.hr[HR_LIMIT], energy=self.energy_register())

    def energy_register(self) -> int:
        return int(self.energy_wh) & 0xFFFFFFFF

    def snapshot(self) -> dict[str, Any]:
        self.advance()
        return {
            "plugged": self.plugged,
            "fault": self.fault,
            "state": self.state(),
            "limit_raw": self.limit_raw(),
            "current_a": self.current_a(),
            "power_w": self.power_w(),
            "energy_wh": self.energy_register(),
            "watchdog_expired": self.watchdog_expired,
            "holding": {str(k): v for k, v in self.hr.items()},
        }

    # --- register images ---

    def input_registers(self) -> dict[int, int]:
        self.advance()
        amps_raw = round(self.current_a() * 10)
        voltage = VOLTAGE if self.fault is None else 0
        energy = self.energy_register()
        boot = int(self.boot_energy_wh) & 0xFFFFFFFF
        regs = {
            IR_LAYOUT: 0x0108,
            IR_STATE: self.state(),
            IR_I1: amps_raw,
            IR_I2: amps_raw,
            IR_I3: amps_raw,
            IR_TEMP: 254,  # 25.4 degC
            IR_U1: voltage,
            IR_U2: voltage,
            IR_U3: voltage,
            IR_LOCK: 1,
            IR_POWER: self.power_w(),
            IR_E_BOOT_HI: boot >> 16,
            IR_E_BOOT_LO: boot & 0xFFFF,
            IR_E_HI: energy >> 16,
            IR_E_LO: energy & 0xFFFF,
            IR_HW_MAX: 16,
            IR_HW_MIN: 6,
            IR_HW_VARIANT: 1,
            IR_SW_REV: 0x0108,
        }
        text = "IB-SIM interop".ljust(LOGISTIC_LEN * 2, "\0").encode("ascii")
        for i in range(LOGISTIC_LEN):
            regs[IR_LOGISTIC + i] = (text[2 * i] << 8) | text[2 * i + 1]
        return regs

    # --- Modbus access hook ---

    async def on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Called by pymodbus for each request before it reads or writes the block."""
        self.advance()
        self.last_request = time.monotonic()
        if function_code == 4:
            image = self.input_registers()
            for addr in range(address, address + count):
                if addr in image:
                    registers[addr - start_address] = image[addr]
            if address <= IR_E_LO and address + count > IR_E_HI:
                served = self.energy_register()
                if served != self.last_served_energy:
                    self.last_served_energy = served
                    self.log.write("energy_served", energy=served, state=self.state())
        elif function_code == 3:
            for addr in range(address, address + count):
                if addr in self.hr:
                    registers[addr - start_address] = self.hr[addr]
        elif function_code in (6, 16) and set_values is not None:
            values = [int(v) for v in set_values]
            for offset, value in enumerate(values):
                addr = address + offset
                if addr == HR_LIMIT or addr == HR_FAILSAFE:
                    # The box takes 0 or 60..160 (0.1 A); out-of-range values are refused.
                    if value != 0 and not 60 <= value <= 160:
                        self.log.write("write_refused", function=function_code, address=addr, value=value)
                        return ExcCodes.ILLEGAL_VALUE
            before_state = self.state()
            for offset, value in enumerate(values):
                addr = address + offset
                if addr in self.hr:
                    self.hr[addr] = value
                if addr == HR_LIMIT:
                    self.watchdog_expired = False
            self.log.write(
                "write",
                function=function_code,
                address=address,
                values=values,
                state_before=before_state,
                state_after=self.state(),
                energy=self.energy_register(),
            )
        return None

    # --- control commands ---

    def command(self, line: str) -> dict[str, Any]:
        self.advance()
        words = line.split()
        if not words:
            return {"ok": False, "error": "empty command"}
        cmd, args = words[0], words[1:]
        if cmd == "plug":
            self.plugged = True
            self.log.write("plug", energy=self.energy_register(), limit_raw=self.limit_raw(), state=self.state())
        elif cmd == "unplug":
            # advance() above stopped the integration at this instant: the register is final.
            self.plugged = False
            self.log.write("unplug", energy=self.energy_register(), state=self.state())
        elif cmd == "fault" and len(args) == 1 and args[0].isdigit():
            self.fault = int(args[0])
            self.log.write("fault", state=self.fault, energy=self.energy_register())
        elif cmd == "clear":
            self.fault = None
            self.log.write("clear", state=self.state(), energy=self.energy_register())
        elif cmd == "set-energy" and len(args) == 1 and args[0].isdigit():
            self.energy_wh = float(int(args[0]))
            self.log.write("set_energy", energy=self.energy_register())
        elif cmd != "status":
            return {"ok": False, "error": f"unknown command {line.strip()!r}"}
        return {"ok": True, **self.snapshot()}


def build_device(box: Wallbox, unit: int) -> SimDevice:
    """The Heidelberg register blocks; undeclared addresses answer exception 02."""
    ir_image = box.input_registers()
    ir_blocks = [
        SimData(IR_LAYOUT, values=[ir_image[a] for a in range(IR_LAYOUT, IR_E_LO + 1)], datatype=DataType.REGISTERS),
        SimData(
            IR_HW_MAX,
            values=[ir_image[a] for a in range(IR_HW_MAX, IR_LOGISTIC + LOGISTIC_LEN)],
            datatype=DataType.REGISTERS,
        ),
        SimData(IR_HW_VARIANT, values=[ir_image[IR_HW_VARIANT]], datatype=DataType.REGISTERS),
        SimData(IR_SW_REV, values=[ir_image[IR_SW_REV]], datatype=DataType.REGISTERS),
    ]
    hr_blocks = [
        SimData(HR_WATCHDOG, values=[box.hr[HR_WATCHDOG], box.hr[HR_STANDBY], box.hr[HR_REMOTE_LOCK]],
                datatype=DataType.REGISTERS),
        SimData(HR_LIMIT, values=[box.hr[HR_LIMIT], box.hr[HR_FAILSAFE]], datatype=DataType.REGISTERS),
    ]
    # The real box has no coils or discrete inputs; pymodbus needs a block for each table.
    no_bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
    return SimDevice(id=unit, simdata=(no_bits, list(no_bits), hr_blocks, ir_blocks), action=box.on_access)


async def serve_control(path: str, box: Wallbox) -> asyncio.base_events.Server:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = box.command(line.decode("utf-8", "replace"))
                writer.write((json.dumps(reply) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    if os.path.exists(path):
        os.unlink(path)
    return await asyncio.start_unix_server(client, path=path)


async def main_async(args: argparse.Namespace) -> None:
    log = JsonLog(args.log)
    box = Wallbox(log, args.energy, args.time_scale, args.initial_limit)
    device = build_device(box, args.unit)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        server = ModbusTcpServer(device, address=(host or "127.0.0.1", int(port)), ignore_missing_devices=True)
        where = f"tcp {args.tcp}"
    else:
        # Linux ptys ignore parity, and pyserial cannot reopen a pty with parity E (EINVAL), so
        # this end is opened 8N1 while the gateway's end keeps the box's 19200 8E1.
        server = ModbusSerialServer(
            device,
            port=args.serial,
            baudrate=args.baud,
            bytesize=8,
            parity=args.parity,
            stopbits=1,
            # A real RS-485 slave stays silent for other unit ids; pymodbus would answer 04.
            ignore_missing_devices=True,
        )
        where = f"serial {args.serial}"
    control = await serve_control(args.control, box) if args.control else None
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    serve_task = asyncio.create_task(server.serve_forever())
    log.write("started", transport=where, unit=args.unit, energy=box.energy_register())
    print(f"heidelberg: unit {args.unit} on {where}", flush=True)
    done, _ = await asyncio.wait({serve_task, stop}, return_when=asyncio.FIRST_COMPLETED)
    if serve_task in done and serve_task.exception():
        log.write("server_failed", error=repr(serve_task.exception()))
    await server.shutdown()
    if control:
        control.close()
    log.write("stopped", energy=box.energy_register())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--serial", help="serial device for Modbus RTU (e.g. a socat pty end)")
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve Modbus TCP instead")
    p.add_argument("--baud", type=int, default=19200)
    p.add_argument("--parity", default="N", choices=["N", "E", "O"], help="N for a pty (see above)")
    p.add_argument("--unit", type=int, default=1)
    p.add_argument("--energy", type=int, default=123456, help="initial lifetime energy register, Wh")
    p.add_argument("--time-scale", type=float, default=1.0, help="energy integrates this many times faster")
    p.add_argument("--initial-limit", type=int, default=160, help="holding 261 at power-on, 0.1 A")
    p.add_argument("--control", help="Unix socket path for plug/unplug commands")
    p.add_argument("--log", help="JSON-lines event log")
    p.add_argument("--debug", action="store_true", help="pymodbus debug logging to stderr")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr)
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
