#!/usr/bin/env python3
"""Checks one interop scenario from the JSON-lines logs of csms.py and heidelberg.py.

Usage: check.py --name NAME --charger ID --csms-log FILE --wallbox-log FILE [--id-tag TAG]

Prints one `PASS NAME` or `FAIL NAME` summary line (after the reasons) and exits 0 / 1.
What is asserted, and why, is listed in README.md next to this file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

CALL, CALLRESULT, CALLERROR = 2, 3, 4
INTEGER = re.compile(r"^[0-9]+$")
ENERGY = "Energy.Active.Import.Register"


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a torn last line (killed writer) is ignored."""
    records = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return records


@dataclass
class Result:
    """Failures and informational notes of one scenario."""

    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def expect(self, ok: bool, message: str) -> bool:
        if not ok:
            self.failures.append(message)
        return ok


def calls(log: list[dict], charger: str, action: str) -> list[dict]:
    """Inbound CALLs of one action from one charger, in arrival order."""
    return [
        r for r in log
        if r.get("kind") == "message" and r.get("dir") == "in" and r.get("type") == CALL
        and r.get("charger") == charger and r.get("action") == action
    ]


def reply_to(log: list[dict], charger: str, unique_id: Any) -> dict | None:
    """Our CALLRESULT/CALLERROR for an inbound CALL."""
    for r in log:
        if (r.get("kind") == "message" and r.get("dir") == "out" and r.get("charger") == charger
                and r.get("type") in (CALLRESULT, CALLERROR) and r.get("id") == unique_id):
            return r
    return None


def is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    it = iter(seen)
    return all(any(s == w for s in it) for w in wanted)


def energy_values(meter_values_payload: dict) -> list[tuple[str, dict]]:
    """(value, sampledValue) of every energy register reading in a MeterValues payload.

    OCPP 1.6 section 7.43: a sampledValue without measurand is Energy.Active.Import.Register.
    """
    out = []
    for mv in meter_values_payload.get("meterValue", []) or []:
        for sv in mv.get("sampledValue", []) or []:
            if sv.get("measurand", ENERGY) == ENERGY:
                out.append((sv.get("value"), sv))
    return out


def check(name: str, charger: str, csms_log: list[dict], wallbox_log: list[dict],
          id_tag: str | None = None) -> Result:
    res = Result()

    # --- transport and schema validity ---
    connects = [r for r in csms_log if r.get("kind") == "connect" and r.get("charger") == charger]
    if res.expect(bool(connects), f"{charger} never connected to the central system"):
        for c in connects:
            res.expect(c.get("subprotocol") == "ocpp1.6", f"connection without subprotocol ocpp1.6: {c}")
            res.expect(c.get("tls_version") in ("TLSv1.2", "TLSv1.3"), f"TLS version {c.get('tls_version')}")
    rejected = [r for r in csms_log if r.get("kind") == "auth_rejected"]
    if rejected:
        res.notes.append(f"{len(rejected)} handshake(s) rejected: {[r.get('reason') for r in rejected]}")
    for kind in ("validation_error", "handler_error", "protocol_error", "unexpected_reply"):
        bad = [r for r in csms_log if r.get("kind") == kind]
        for r in bad:
            detail = r.get("details") or r.get("reason") or ""
            if isinstance(detail, dict):
                detail = detail.get("cause", detail)
            res.failures.append(
                f"{kind}: {r.get('action')} {r.get('error', '')} {r.get('description', '')} {str(detail)[:400]}"
            )
    res.notes.append(
        "schema validation errors: "
        f"{sum(1 for r in csms_log if r.get('kind') == 'validation_error')}"
    )

    # --- BootNotification first, vendor from the device map ---
    inbound = [r for r in csms_log if r.get("kind") in ("message", "connect") and r.get("charger") == charger
               and (r.get("kind") == "connect" or (r.get("dir") == "in" and r.get("type") == CALL))]
    for i, r in enumerate(inbound):
        if r.get("kind") == "connect" and i + 1 < len(inbound) and inbound[i + 1].get("kind") == "message":
            first = inbound[i + 1].get("action")
            res.expect(first == "BootNotification", f"first CALL on a connection was {first}, not BootNotification")
    boots = calls(csms_log, charger, "BootNotification")
    if res.expect(bool(boots), "no BootNotification"):
        vendor = boots[0].get("payload", {}).get("chargePointVendor")
        res.expect(vendor == "Heidelberg", f"BootNotification chargePointVendor {vendor!r}, expected 'Heidelberg'")
        res.notes.append(f"boot: {boots[0].get('payload')}")

    # --- configuration the central system asked for (informational) ---
    for r in csms_log:
        if r.get("kind") == "call_result" and r.get("charger") == charger:
            outcome = r.get("status") or f"{r.get('error')} {r.get('description', '')}".strip()
            res.notes.append(f"{r.get('action')} {r.get('request')}: {outcome}")

    # --- status sequence on connector 1 ---
    statuses = [r.get("payload", {}) for r in calls(csms_log, charger, "StatusNotification")]
    seq = [p.get("status") for p in statuses if p.get("connectorId") == 1]
    res.notes.append(f"connector 1 statuses: {' -> '.join(str(s) for s in seq)}")
    res.expect(
        is_subsequence(["Available", "Preparing", "Charging", "Available"], seq),
        f"connector 1 status sequence {seq} lacks Available -> Preparing -> Charging -> (Finishing ->) Available",
    )
    res.expect(any(p.get("connectorId") == 0 for p in statuses), "no StatusNotification for connector 0 after boot")
    for p in statuses:
        if p.get("status") == "Faulted":
            res.failures.append(f"Faulted status: {p}")

    # --- transaction ---
    plug = next((r for r in wallbox_log if r.get("kind") == "plug"), None)
    unplug = next((r for r in wallbox_log if r.get("kind") == "unplug"), None)
    if plug is not None and plug.get("limit_raw") is not None:
        # behaviour.md, Transactions: outside a transaction the limit is held at off_value, so
        # no energy flows before StartTransaction (the simulated box powers on at 16 A).
        res.expect(plug["limit_raw"] == 0,
                   f"current limit register was {plug['limit_raw']} (0.1 A) when the EV was plugged in: "
                   "not held at off outside a transaction")
    starts = calls(csms_log, charger, "StartTransaction")
    stops = calls(csms_log, charger, "StopTransaction")
    res.expect(len(starts) == 1, f"{len(starts)} StartTransaction messages, expected 1")
    res.expect(len(stops) == 1, f"{len(stops)} StopTransaction messages, expected 1")
    tx_id = None
    meter_start = meter_stop = None
    if starts:
        start = starts[0]
        p = start.get("payload", {})
        meter_start = p.get("meterStart")
        res.expect(p.get("connectorId") == 1, f"StartTransaction connectorId {p.get('connectorId')}")
        if id_tag is not None:
            res.expect(p.get("idTag") == id_tag, f"StartTransaction idTag {p.get('idTag')!r}, expected {id_tag!r}")
        reply = reply_to(csms_log, charger, start.get("id"))
        if reply and reply.get("type") == CALLRESULT:
            tx_id = reply.get("payload", {}).get("transactionId")
        if plug is not None and res.expect(isinstance(meter_start, int), f"meterStart {meter_start!r}"):
            # The limit is off until the transaction starts, so the register holds still
            # between plug-in and StartTransaction; allow any value the box actually served in
            # that window in case the gateway raised the limit first (free vend).
            served = {plug.get("energy")} | {
                r.get("energy") for r in wallbox_log
                if r.get("kind") == "energy_served" and plug["ts"] <= r.get("ts", 0) <= start["ts"]
            }
            res.expect(
                meter_start in served,
                f"meterStart {meter_start} is not the energy register at plug-in ({plug.get('energy')} Wh; "
                f"served before StartTransaction: {sorted(v for v in served if v is not None)})",
            )
        res.notes.append(f"transaction {tx_id}: meterStart {meter_start} (register at plug-in: "
                         f"{plug.get('energy') if plug else None})")
    elif plug is None:
        res.failures.append("the wallbox was never plugged (scenario did not get that far)")
    if stops:
        p = stops[0].get("payload", {})
        meter_stop = p.get("meterStop")
        res.expect(tx_id is not None and p.get("transactionId") == tx_id,
                   f"StopTransaction transactionId {p.get('transactionId')}, expected {tx_id}")
        res.expect(p.get("reason") == "EVDisconnected",
                   f"StopTransaction reason {p.get('reason')!r}, expected 'EVDisconnected'")
        if unplug is not None:
            res.expect(meter_stop == unplug.get("energy"),
                       f"meterStop {meter_stop} != energy register at unplug {unplug.get('energy')}")
        if isinstance(meter_start, int) and isinstance(meter_stop, int):
            res.expect(meter_stop > meter_start, f"meterStop {meter_stop} <= meterStart {meter_start}: no energy?")
        res.notes.append(f"meterStop {meter_stop} (register at unplug: {unplug.get('energy') if unplug else None})")
    if unplug is None:
        res.failures.append("the wallbox was never unplugged (scenario did not get that far)")

    # --- meter values ---
    mvs = [r for r in calls(csms_log, charger, "MeterValues")
           if tx_id is not None and r.get("payload", {}).get("transactionId") == tx_id]
    res.expect(len(mvs) >= 1, f"no MeterValues for transaction {tx_id}")
    energy_seen = 0
    for r in mvs:
        for value, sv in energy_values(r.get("payload", {})):
            energy_seen += 1
            res.expect(isinstance(value, str) and bool(INTEGER.match(value)),
                       f"{ENERGY} value {value!r} is not an integer-valued string")
            res.expect(sv.get("unit", "Wh") == "Wh", f"{ENERGY} unit {sv.get('unit')!r}, expected Wh")
            if isinstance(value, str) and INTEGER.match(value) and isinstance(meter_start, int) \
                    and isinstance(meter_stop, int):
                res.expect(meter_start <= int(value) <= meter_stop,
                           f"{ENERGY} {value} outside [meterStart {meter_start}, meterStop {meter_stop}]")
    res.expect(not mvs or energy_seen > 0, f"MeterValues carry no {ENERGY}")
    res.notes.append(f"{len(mvs)} MeterValues in the transaction, {energy_seen} energy readings")

    # --- what the gateway did to the wallbox ---
    writes = [r for r in wallbox_log if r.get("kind") == "write"]
    standby = [w for w in writes if w.get("address") <= 258 < w.get("address") + len(w.get("values", []))
               and w["values"][258 - w["address"]] == 4]
    res.expect(bool(standby), "the gateway never wrote standby register 258 = 4 (device map init)")
    for r in wallbox_log:
        if r.get("kind") == "write_refused":
            res.failures.append(f"the gateway wrote an out-of-range value: {r}")
        if r.get("kind") == "server_failed":
            res.failures.append(f"the wallbox simulator failed: {r.get('error')}")
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--charger", required=True)
    p.add_argument("--csms-log", required=True)
    p.add_argument("--wallbox-log", required=True)
    p.add_argument("--id-tag")
    p.add_argument("--extra-failure", action="append", default=[], help="a failure found by the driver")
    args = p.parse_args()
    res = check(args.name, args.charger, read_jsonl(args.csms_log), read_jsonl(args.wallbox_log), args.id_tag)
    res.failures = list(args.extra_failure) + res.failures
    for note in res.notes:
        print(f"  [{args.name}] {note}")
    for failure in res.failures:
        print(f"  [{args.name}] FAILED: {failure}")
    verdict = "PASS" if not res.failures else "FAIL"
    print(f"{verdict} {args.name} ({len(res.failures)} failed assertion(s))", flush=True)
    return 0 if not res.failures else 1


if __name__ == "__main__":
    sys.exit(main())
