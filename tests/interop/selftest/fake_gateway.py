#!/usr/bin/env python3
"""A stand-in for `chargebridge run -c FILE`, used only to test the interop suite itself.

It understands just the configuration run.sh writes (one charger, RTU bus or TCP) and does the
minimum the scenario needs: boot, status, a free-mode transaction, periodic meter values. With
`--bug NAME` it misbehaves on purpose so the self-test can prove the checker notices:
  bad-energy     MeterValues energy as "123.5"
  wrong-stop     meterStop one Wh off
  invalid        a StatusNotification with a status outside the schema
  no-standby     skip the standby (258 = 4) init write
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import ssl
import sys
from datetime import datetime, timezone

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, ConfigurationStatus
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_config(path: str) -> dict[str, str]:
    """Flat key: value pairs of the file run.sh writes (not a YAML parser)."""
    cfg: dict[str, str] = {}
    for line in open(path, encoding="utf-8"):
        m = re.match(r"^\s*(?:- )?([a-z_]+):\s*(.*?)\s*$", line)
        if m and m.group(2) and not m.group(2).startswith("{"):
            cfg.setdefault(m.group(1), m.group(2))
    return cfg


class FakeChargePoint(ChargePoint):
    def __init__(self, cid, ws, bug):
        super().__init__(cid, ws)
        self.interval = 60
        self.bug = bug

    @on(Action.change_configuration)
    async def on_change_configuration(self, key, value):
        if key == "MeterValueSampleInterval":
            self.interval = int(value)
            return call_result.ChangeConfiguration(status=ConfigurationStatus.accepted)
        return call_result.ChangeConfiguration(status=ConfigurationStatus.rejected)


async def main_async(args) -> None:
    cfg = parse_config(args.config)
    cid = cfg["id"]
    password = os.environ[re.match(r"\$\{(\w+)\}", cfg["password"]).group(1)]
    if "tcp" in cfg:
        host, port = cfg["tcp"].rsplit(":", 1)
        mb = AsyncModbusTcpClient(host, port=int(port), timeout=1)
    else:
        mb = AsyncModbusSerialClient(cfg["port"], baudrate=19200, parity="N", timeout=1)
    await mb.connect()
    ctx = ssl.create_default_context(cafile=cfg["ca_file"])
    auth = base64.b64encode(f"{cid}:{password}".encode()).decode()
    async with websockets.connect(
        f"{cfg['url']}/{cid}", ssl=ctx, subprotocols=["ocpp1.6"],
        additional_headers={"Authorization": f"Basic {auth}"},
    ) as ws:
        cp = FakeChargePoint(cid, ws, args.bug)
        reader = asyncio.create_task(cp.start())
        await cp.call(call.BootNotification(charge_point_vendor="Heidelberg", charge_point_model="Energy Control"))
        if args.bug != "no-standby":
            await mb.write_register(258, 4, device_id=1)
        await mb.write_registers(261, [0], device_id=1)
        for connector in (0, 1):
            await cp.call(call.StatusNotification(connector_id=connector, error_code="NoError", status="Available"))
        if args.bug == "invalid":
            await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charged"),
                          skip_schema_validation=True)
        tx = None
        charging = False
        last_mv = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1)
            r = await mb.read_input_registers(4, count=15, device_id=1)
            state, energy = r.registers[1], (r.registers[13] << 16) | r.registers[14]
            if tx is None and state in (4, 5, 6, 7):
                await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
                res = await cp.call(call.StartTransaction(connector_id=1, id_tag=cid, meter_start=energy,
                                                          timestamp=now()))
                tx = res.transaction_id
                await mb.write_registers(261, [160], device_id=1)
                last_mv = loop.time()
            elif tx is not None and state == 7 and not charging:
                charging = True
                await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            elif tx is not None and state == 2:
                stop = energy + (1 if args.bug == "wrong-stop" else 0)
                await cp.call(call.StopTransaction(meter_stop=stop, timestamp=now(), transaction_id=tx,
                                                   reason="EVDisconnected"))
                await mb.write_registers(261, [0], device_id=1)
                await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
                tx, charging = None, False
            if tx is not None and loop.time() - last_mv >= cp.interval:
                last_mv = loop.time()
                value = f"{energy}.5" if args.bug == "bad-energy" else str(energy)
                await cp.call(call.MeterValues(connector_id=1, transaction_id=tx, meter_value=[{
                    "timestamp": now(),
                    "sampledValue": [{"value": value, "context": "Sample.Periodic",
                                      "measurand": "Energy.Active.Import.Register", "unit": "Wh"}],
                }]))
        reader.cancel()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["run"])
    p.add_argument("-c", dest="config", required=True)
    p.add_argument("--bug", default=os.environ.get("FAKE_GATEWAY_BUG", ""))
    args = p.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
