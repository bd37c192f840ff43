#!/usr/bin/env python3
"""Drives and checks the "core" scenario: every OCPP 1.6 Core and Remote Trigger message.

The central system (csms.py on the `ocpp` package, or ocpp-rpc/csms.js in strict mode) is asked
over its control socket to send each CALL a central system can send in those two profiles; the
reply is checked here, and where a CALL promises a message (TriggerMessage, ChangeAvailability,
RemoteStart/Stop, Reset) the central system's JSON-lines log is watched for it. The charger runs
in `authorization: { mode: remote }`, so a plugged-in EV gets no current until
RemoteStartTransaction.

Every step is tried even when an earlier one failed (except where a step needs the previous
one's outcome); at the end the log is checked for schema-validation failures in either
direction (the central system records each as a `validation_error` line). Prints the steps,
then `PASS NAME` or `FAIL NAME` with the reasons; exit status 0 / 1.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from typing import Any, Callable

from check import CALL, CALLRESULT, read_jsonl
from scenario import Watcher, control

# OCPP 1.6 section 9.1 (Core) keys a charge point must report, plus the optional Core keys
# this gateway documents (reference table). RemoteTrigger (9.3) has no required keys.
REQUIRED_KEYS = [
    "AuthorizeRemoteTxRequests", "ClockAlignedDataInterval", "ConnectionTimeOut",
    "ConnectorPhaseRotation", "GetConfigurationMaxKeys", "HeartbeatInterval",
    "LocalAuthorizeOffline", "LocalPreAuthorize", "MeterValuesAlignedData",
    "MeterValuesSampledData", "MeterValueSampleInterval", "NumberOfConnectors", "ResetRetries",
    "StopTransactionOnEVSideDisconnect", "StopTransactionOnInvalidId", "StopTxnAlignedData",
    "StopTxnSampledData", "SupportedFeatureProfiles", "TransactionMessageAttempts",
    "TransactionMessageRetryInterval", "UnlockConnectorOnEVSideDisconnect", "WebSocketPingInterval",
]
# OCPP 1.6 section 9.4: required when SupportedFeatureProfiles lists SmartCharging.
SMART_CHARGING_KEYS = [
    "ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit", "ChargingScheduleMaxPeriods",
    "MaxChargingProfilesInstalled",
]
READ_ONLY_KEYS = ["NumberOfConnectors", "SupportedFeatureProfiles", "GetConfigurationMaxKeys"]
REMOTE_TAG = "REMOTE-TAG-0042"
SAMPLED = "Energy.Active.Import.Register,Power.Active.Import"


class StepFailed(Exception):
    """A step whose outcome later steps depend on did not happen."""


class Core:
    """The scenario: one method per group of messages; failures collected, not raised."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.charger = args.charger
        self.w = Watcher(args.csms_log, args.charger, args.name, args.gateway_pid)
        self.failures: list[str] = []
        self.steps = 0

    # --- helpers ---

    def fail(self, message: str) -> None:
        self.failures.append(message)
        self.w.say(f"FAILED: {message}")

    def expect(self, ok: bool, message: str) -> bool:
        if not ok:
            self.fail(message)
        return ok

    def call(self, action: str, payload: dict[str, Any], timeout: float = 20) -> dict[str, Any]:
        """Ask the central system to send a CALL; its reply object ({"ok", "payload"|"error"})."""
        self.steps += 1
        request = {"charger": self.charger, "action": action, "payload": payload, "timeout": timeout}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout + 10)
            s.connect(self.args.csms_control)
            s.sendall((json.dumps(request) + "\n").encode())
            line = s.makefile().readline()
        reply = json.loads(line) if line else {"ok": False, "error": "NoReply", "description": "control socket closed"}
        shown = reply.get("payload") if reply.get("ok") else f"{reply.get('error')}: {reply.get('description')}"
        text = json.dumps(shown) if not isinstance(shown, str) else shown
        self.w.say(f"{action} {json.dumps(payload)} -> {text[:300]}")
        return reply

    def result(self, action: str, payload: dict[str, Any], timeout: float = 20) -> dict[str, Any] | None:
        """A CALL that must be answered with a CALLRESULT; its payload, or None (failure recorded)."""
        reply = self.call(action, payload, timeout)
        if not reply.get("ok"):
            self.fail(f"{action} {payload}: expected a CALLRESULT, got {reply.get('error')}: "
                      f"{reply.get('description')}")
            return None
        return reply.get("payload") or {}

    def status_is(self, action: str, payload: dict[str, Any], want: str | tuple[str, ...]) -> bool:
        """A CALL whose CALLRESULT's status must be `want` (or one of several)."""
        got = self.result(action, payload)
        if got is None:
            return False
        wanted = (want,) if isinstance(want, str) else want
        return self.expect(got.get("status") in wanted,
                           f"{action} {payload}: status {got.get('status')!r}, expected {' or '.join(wanted)}")

    def wait(self, what: str, timeout: float, pred: Callable[[list[dict]], Any]) -> Any:
        """Like Watcher.wait, but a timeout is a recorded failure (None) instead of an exception."""
        try:
            return self.w.wait(what, timeout, pred)
        except TimeoutError as exc:
            self.fail(str(exc))
            return None

    def inbound(self, rs: list[dict], action: str, after: float) -> list[dict]:
        return self.w.inbound(rs, action, after)

    def statuses(self, rs: list[dict], connector: int, status: str, after: float) -> list[dict]:
        return [r for r in self.inbound(rs, "StatusNotification", after)
                if r["payload"].get("connectorId") == connector and r["payload"].get("status") == status]

    def config(self, keys: list[str] | None = None) -> dict[str, dict]:
        payload = {"key": keys} if keys is not None else {}
        got = self.result("GetConfiguration", payload) or {}
        return {k.get("key"): k for k in got.get("configurationKey") or []}

    def wallbox(self, command: str) -> dict[str, Any]:
        return control(self.args.wallbox_control, command)

    # --- the scenario ---

    def boot(self) -> None:
        self.w.wait("BootNotification answered", self.args.boot_timeout, lambda rs: [
            r for r in rs if r.get("kind") == "message" and r.get("dir") == "out"
            and r.get("type") == CALLRESULT and r.get("charger") == self.charger
            and r.get("action") == "BootNotification"
        ])
        self.w.wait("connector 1 Available", 15, lambda rs: self.statuses(rs, 1, "Available", 0))

    def get_configuration(self) -> None:
        keys = self.config()
        missing = [k for k in REQUIRED_KEYS if k not in keys]
        self.expect(not missing, f"GetConfiguration (all keys) lacks {missing}")
        for name, entry in keys.items():
            self.expect(isinstance(entry.get("readonly"), bool), f"key {name}: readonly {entry.get('readonly')!r}")
        for name in READ_ONLY_KEYS:
            if name in keys:
                self.expect(keys[name].get("readonly") is True, f"key {name} should be read-only: {keys[name]}")
        if "NumberOfConnectors" in keys:
            self.expect(keys["NumberOfConnectors"].get("value") == "1",
                        f"NumberOfConnectors {keys['NumberOfConnectors'].get('value')!r}, expected '1'")
        profiles = (keys.get("SupportedFeatureProfiles") or {}).get("value") or ""
        for profile in ("Core", "RemoteTrigger"):
            self.expect(profile in profiles.split(","), f"SupportedFeatureProfiles {profiles!r} lacks {profile}")
        if "SmartCharging" in profiles.split(","):
            missing = [k for k in SMART_CHARGING_KEYS if k not in keys]
            self.expect(not missing, f"SmartCharging is supported but GetConfiguration lacks {missing}")
        self.expect("AuthorizationKey" not in keys or "value" not in keys["AuthorizationKey"],
                    "AuthorizationKey is write-only but GetConfiguration returned its value")

        got = self.result("GetConfiguration", {"key": ["HeartbeatInterval", "NoSuchKeyAtAll"]}) or {}
        known = [k.get("key") for k in got.get("configurationKey") or []]
        self.expect(known == ["HeartbeatInterval"], f"GetConfiguration [HeartbeatInterval, NoSuchKeyAtAll]: "
                    f"configurationKey {known}, expected ['HeartbeatInterval']")
        self.expect(got.get("unknownKey") == ["NoSuchKeyAtAll"],
                    f"GetConfiguration unknownKey {got.get('unknownKey')!r}, expected ['NoSuchKeyAtAll']")

    def change_configuration(self) -> None:
        self.status_is("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "5"}, "Accepted")
        self.status_is("ChangeConfiguration", {"key": "MeterValuesSampledData", "value": SAMPLED}, "Accepted")
        self.status_is("ChangeConfiguration", {"key": "AuthorizeRemoteTxRequests", "value": "true"}, "Accepted")
        self.status_is("ChangeConfiguration", {"key": "NumberOfConnectors", "value": "2"}, "Rejected")
        self.status_is("ChangeConfiguration", {"key": "NoSuchKeyAtAll", "value": "1"}, "NotSupported")
        # behaviour.md: a measurand the device map does not provide is Rejected and changes nothing.
        self.status_is("ChangeConfiguration",
                       {"key": "MeterValuesSampledData", "value": "Energy.Active.Import.Register,SoC"}, "Rejected")
        keys = self.config(["MeterValueSampleInterval", "MeterValuesSampledData", "AuthorizeRemoteTxRequests",
                            "NumberOfConnectors"])
        for name, want in (("MeterValueSampleInterval", "5"), ("MeterValuesSampledData", SAMPLED),
                           ("AuthorizeRemoteTxRequests", "true"), ("NumberOfConnectors", "1")):
            got = (keys.get(name) or {}).get("value")
            self.expect(got is not None and got.lower() == want.lower(),
                        f"after ChangeConfiguration, {name} is {got!r}, expected {want!r}")

    def trigger(self, message: str, connector: int | None, what: str,
                pred: Callable[[list[dict], float], Any]) -> Any:
        payload: dict[str, Any] = {"requestedMessage": message}
        if connector is not None:
            payload["connectorId"] = connector
        t = time.time()
        if not self.status_is("TriggerMessage", payload, "Accepted"):
            return None
        return self.wait(f"triggered {what}", 15, lambda rs: pred(rs, t))

    def trigger_messages(self) -> None:
        self.trigger("BootNotification", None, "BootNotification",
                     lambda rs, t: self.inbound(rs, "BootNotification", t))
        self.trigger("Heartbeat", None, "Heartbeat", lambda rs, t: self.inbound(rs, "Heartbeat", t))
        self.trigger("StatusNotification", None, "StatusNotification for connectors 0 and 1",
                     lambda rs, t: self.statuses(rs, 0, "Available", t) and self.statuses(rs, 1, "Available", t))
        t = time.time()
        self.trigger("StatusNotification", 1, "StatusNotification for connector 1",
                     lambda rs, t: self.statuses(rs, 1, "Available", t))
        time.sleep(0.5)
        extra = [r["payload"] for r in self.inbound(self.w.records(), "StatusNotification", t)
                 if r["payload"].get("connectorId") != 1]
        self.expect(not extra, f"TriggerMessage StatusNotification connectorId 1 also sent {extra}")
        mv = self.trigger("MeterValues", 1, "MeterValues", lambda rs, t: self.inbound(rs, "MeterValues", t))
        if mv:
            p = mv[0]["payload"]
            self.expect(p.get("connectorId") == 1, f"triggered MeterValues connectorId {p.get('connectorId')}")
            contexts = {sv.get("context") for v in p.get("meterValue", []) for sv in v.get("sampledValue", [])}
            self.expect(contexts == {"Trigger"}, f"triggered MeterValues contexts {contexts}, expected Trigger")
            self.expect("transactionId" not in p, f"triggered MeterValues outside a transaction has {p}")
        self.trigger("DiagnosticsStatusNotification", None, "DiagnosticsStatusNotification",
                     lambda rs, t: self.inbound(rs, "DiagnosticsStatusNotification", t))
        self.trigger("FirmwareStatusNotification", None, "FirmwareStatusNotification",
                     lambda rs, t: self.inbound(rs, "FirmwareStatusNotification", t))

    def availability(self) -> None:
        t = time.time()
        if self.status_is("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}, "Accepted"):
            self.wait("connector 1 Unavailable", 15, lambda rs: self.statuses(rs, 1, "Unavailable", t))
        t = time.time()
        if self.status_is("ChangeAvailability", {"connectorId": 1, "type": "Operative"}, "Accepted"):
            self.wait("connector 1 Available again", 15, lambda rs: self.statuses(rs, 1, "Available", t))

    def other_core(self) -> None:
        # behaviour.md: NotSupported unless the device map defines an unlock (Heidelberg's has none).
        self.status_is("UnlockConnector", {"connectorId": 1}, "NotSupported")
        self.status_is("ClearCache", {}, "Accepted")
        self.status_is("DataTransfer", {"vendorId": "org.example.interop", "messageId": "ping", "data": "x"},
                       "UnknownVendorId")

    def remote_transaction(self) -> None:
        plugged = self.wallbox("plug")
        self.w.say(f"EV plugged in (limit {plugged.get('limit_raw')}, energy {plugged.get('energy_wh')} Wh)")
        t_plug = time.time()
        self.wait("connector 1 Preparing", 15, lambda rs: self.statuses(rs, 1, "Preparing", t_plug))
        # authorization mode remote: no transaction and no current until RemoteStartTransaction.
        time.sleep(3)
        rs = self.w.records()
        self.expect(not self.inbound(rs, "StartTransaction", t_plug),
                    "StartTransaction before RemoteStartTransaction (authorization mode remote)")
        box = self.wallbox("status")
        self.expect(box.get("limit_raw") == 0 and box.get("current_a") == 0,
                    f"plugged without a transaction, the wallbox limit is {box.get('limit_raw')} (0.1 A), expected 0")

        t = time.time()
        if not self.status_is("RemoteStartTransaction", {"connectorId": 1, "idTag": REMOTE_TAG}, "Accepted"):
            raise StepFailed("RemoteStartTransaction not accepted")
        # AuthorizeRemoteTxRequests is true (set above): Authorize with that idTag comes first.
        auth = self.wait("Authorize", 15, lambda rs: self.inbound(rs, "Authorize", t))
        if auth:
            self.expect(auth[0]["payload"].get("idTag") == REMOTE_TAG, f"Authorize idTag {auth[0]['payload']}")
        start = self.wait("StartTransaction", 15, lambda rs: self.inbound(rs, "StartTransaction", t))
        if not start:
            raise StepFailed("no StartTransaction after RemoteStartTransaction")
        sp = start[0]["payload"]
        self.expect(sp.get("idTag") == REMOTE_TAG, f"StartTransaction idTag {sp.get('idTag')!r}, expected {REMOTE_TAG!r}")
        self.expect(sp.get("connectorId") == 1, f"StartTransaction connectorId {sp.get('connectorId')}")
        reply = self.wait("StartTransaction answered", 10, lambda rs: [
            r for r in rs if r.get("kind") == "message" and r.get("dir") == "out" and r.get("id") == start[0]["id"]
            and r.get("type") == CALLRESULT])
        tx_id = reply[0]["payload"].get("transactionId") if reply else None
        self.wait("connector 1 Charging", 15, lambda rs: self.statuses(rs, 1, "Charging", t))
        t_charge = time.time()
        mvs = self.wait("periodic MeterValues of the transaction", 20, lambda rs: [
            r for r in self.inbound(rs, "MeterValues", t_charge) if r["payload"].get("transactionId") == tx_id])
        if mvs:
            measurands = {sv.get("measurand", "Energy.Active.Import.Register")
                          for v in mvs[0]["payload"].get("meterValue", []) for sv in v.get("sampledValue", [])}
            self.expect(measurands == set(SAMPLED.split(",")),
                        f"periodic MeterValues measurands {sorted(measurands)}, expected {SAMPLED}")
        mv = self.trigger("MeterValues", 1, "MeterValues during the transaction", lambda rs, t: [
            r for r in self.inbound(rs, "MeterValues", t)
            if any(sv.get("context") == "Trigger" for v in r["payload"].get("meterValue", [])
                   for sv in v.get("sampledValue", []))])
        if mv:
            self.expect(mv[0]["payload"].get("transactionId") == tx_id,
                        f"triggered MeterValues during transaction {tx_id}: {mv[0]['payload']}")
        box = self.wallbox("status")
        self.expect(box.get("current_a", 0) > 0, f"charging, but the wallbox current is {box.get('current_a')} A")

        self.status_is("RemoteStopTransaction", {"transactionId": (tx_id or 0) + 1000}, "Rejected")
        t = time.time()
        if not self.status_is("RemoteStopTransaction", {"transactionId": tx_id}, "Accepted"):
            raise StepFailed("RemoteStopTransaction not accepted")
        stop = self.wait("StopTransaction", 15, lambda rs: self.inbound(rs, "StopTransaction", t))
        if stop:
            p = stop[0]["payload"]
            self.check_energy(tx_id, sp.get("meterStart"), p.get("meterStop"))
            self.expect(p.get("reason") == "Remote", f"StopTransaction reason {p.get('reason')!r}, expected 'Remote'")
            self.expect(p.get("transactionId") == tx_id, f"StopTransaction transactionId {p.get('transactionId')}, "
                        f"expected {tx_id}")
            self.expect(isinstance(p.get("meterStop"), int) and p["meterStop"] >= sp.get("meterStart", 0),
                        f"meterStop {p.get('meterStop')} < meterStart {sp.get('meterStart')}")
        self.wait("connector 1 Finishing", 15, lambda rs: self.statuses(rs, 1, "Finishing", t))
        # Limit off after the stop: the box stops charging although the EV is still plugged in.
        self.wait_wallbox("wallbox limit back to off", 10, lambda box: box.get("limit_raw") == 0)
        t = time.time()
        self.wallbox("unplug")
        self.w.say("EV unplugged")
        self.wait("connector 1 Available after unplug", 15, lambda rs: self.statuses(rs, 1, "Available", t))
        time.sleep(1)
        starts = self.inbound(self.w.records(), "StartTransaction", t_plug)
        stops = self.inbound(self.w.records(), "StopTransaction", t_plug)
        self.expect(len(starts) == 1 and len(stops) == 1,
                    f"{len(starts)} StartTransaction and {len(stops)} StopTransaction, expected 1 each")

    def check_energy(self, tx_id: Any, meter_start: Any, meter_stop: Any) -> None:
        """Energy readings of the transaction: integer Wh strings within [meterStart, meterStop]."""
        n = 0
        for r in self.inbound(self.w.records(), "MeterValues", 0):
            if r["payload"].get("transactionId") != tx_id:
                continue
            for v in r["payload"].get("meterValue", []):
                for sv in v.get("sampledValue", []):
                    if sv.get("measurand", "Energy.Active.Import.Register") != "Energy.Active.Import.Register":
                        continue
                    n += 1
                    value = sv.get("value")
                    ok = isinstance(value, str) and value.isdigit() and isinstance(meter_start, int) \
                        and isinstance(meter_stop, int) and meter_start <= int(value) <= meter_stop
                    self.expect(ok, f"energy reading {value!r} of transaction {tx_id} is not an integer Wh "
                                f"within [meterStart {meter_start}, meterStop {meter_stop}]")
        self.expect(n > 0, f"no energy reading in the MeterValues of transaction {tx_id}")

    def remote_start_before_plug(self) -> None:
        """RemoteStart while unplugged, plug within ConnectionTimeOut; Inoperative is Scheduled."""
        t = time.time()
        tag = REMOTE_TAG + "-B"
        if not self.status_is("RemoteStartTransaction", {"idTag": tag}, "Accepted"):
            raise StepFailed("RemoteStartTransaction without a car not accepted")
        time.sleep(1)
        self.expect(not self.inbound(self.w.records(), "StartTransaction", t),
                    "StartTransaction before the EV was plugged in")
        self.wallbox("plug")
        self.w.say("EV plugged in within ConnectionTimeOut")
        start = self.wait("StartTransaction", 15, lambda rs: self.inbound(rs, "StartTransaction", t))
        if not start:
            raise StepFailed("no StartTransaction when the EV arrived")
        self.expect(start[0]["payload"].get("idTag") == tag,
                    f"StartTransaction idTag {start[0]['payload'].get('idTag')!r}, expected {tag!r}")
        self.wait("connector 1 Charging", 15, lambda rs: self.statuses(rs, 1, "Charging", t))
        # OCPP 1.6 section 5.2: during a transaction Inoperative is Scheduled, applied after it ends.
        self.status_is("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}, "Scheduled")
        t = time.time()
        self.wallbox("unplug")
        self.w.say("EV unplugged")
        stop = self.wait("StopTransaction", 15, lambda rs: self.inbound(rs, "StopTransaction", t))
        if stop:
            reason = stop[0]["payload"].get("reason")
            self.expect(reason == "EVDisconnected", f"StopTransaction reason {reason!r}, expected 'EVDisconnected'")
        self.wait("connector 1 Unavailable (the scheduled change)", 15,
                  lambda rs: self.statuses(rs, 1, "Unavailable", t))
        self.expect(not self.statuses(self.w.records(), 1, "Available", t),
                    "connector 1 went Available although Inoperative was scheduled")
        t = time.time()
        if self.status_is("ChangeAvailability", {"connectorId": 1, "type": "Operative"}, "Accepted"):
            self.wait("connector 1 Available again", 15, lambda rs: self.statuses(rs, 1, "Available", t))

    def wait_wallbox(self, what: str, timeout: float, pred: Callable[[dict], bool]) -> None:
        deadline = time.monotonic() + timeout
        while True:
            box = self.wallbox("status")
            if pred(box):
                self.w.say(what)
                return
            if time.monotonic() > deadline:
                self.fail(f"{what}: not within {timeout:.0f} s (wallbox: limit {box.get('limit_raw')})")
                return
            time.sleep(0.2)

    def reset(self) -> None:
        t = time.time()
        if not self.status_is("Reset", {"type": "Soft"}, "Accepted"):
            return
        self.wait("BootNotification after Reset", 30, lambda rs: self.inbound(rs, "BootNotification", t))
        self.wait("connector 1 Available after Reset", 15, lambda rs: self.statuses(rs, 1, "Available", t))
        rs = self.w.records()
        reconnects = [r for r in rs if r.get("kind") == "connect" and r.get("charger") == self.charger
                      and r.get("ts", 0) >= t]
        self.expect(bool(reconnects), "Reset Soft: the connection was not re-established")

    def schema_errors(self) -> None:
        rs = self.w.records()
        for kind in ("validation_error", "handler_error", "protocol_error", "unexpected_reply"):
            for r in rs:
                if r.get("kind") == kind:
                    detail = r.get("details") or r.get("reason") or ""
                    self.fail(f"{kind} ({r.get('dir')}): {r.get('action')} {r.get('error', '')} "
                              f"{r.get('description', '')} {str(detail)[:300]}")
        n = sum(1 for r in rs if r.get("kind") == "validation_error")
        calls = sum(1 for r in rs if r.get("kind") == "message" and r.get("type") == CALL)
        self.w.say(f"{calls} CALLs in both directions, {n} schema validation error(s)")

    def run(self) -> None:
        try:
            self.boot()
        except TimeoutError as exc:
            self.fail(str(exc))
            return
        for step in (self.get_configuration, self.change_configuration, self.trigger_messages,
                     self.availability, self.other_core, self.remote_transaction, self.remote_start_before_plug,
                     self.reset):
            try:
                step()
            except StepFailed as exc:
                self.fail(f"{step.__name__}: stopped: {exc}")
            except (OSError, ValueError, TimeoutError) as exc:
                self.fail(f"{step.__name__}: {type(exc).__name__}: {exc}")
        self.schema_errors()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--charger", required=True)
    p.add_argument("--csms-log", required=True)
    p.add_argument("--csms-control", required=True, help="the central system's control socket")
    p.add_argument("--wallbox-control", required=True, help="heidelberg.py's control socket")
    p.add_argument("--gateway-pid", type=int)
    p.add_argument("--boot-timeout", type=float, default=30)
    args = p.parse_args()
    core = Core(args)
    core.run()
    for f in core.failures:
        print(f"  [{args.name}] FAILED: {f}")
    verdict = "PASS" if not core.failures else "FAIL"
    print(f"{verdict} {args.name} ({core.steps} CALLs sent, {len(core.failures)} failed assertion(s))", flush=True)
    return 0 if not core.failures else 1


if __name__ == "__main__":
    sys.exit(main())
