"""Both central systems (csms.py on the `ocpp` package, ocpp-rpc/csms.js on ocpp-rpc in strictMode)
against a small `ocpp` charge point client over loopback WSS with Basic Auth: the same contract
(handshake checks, JSON-lines log, validation errors recorded, control socket) for each."""

from __future__ import annotations

import asyncio
import logging
import base64
import json
import os
import ssl
import subprocess
import sys
import shutil
import tempfile
import time
import unittest

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

HERE = os.path.dirname(os.path.abspath(__file__))
INTEROP = os.path.dirname(HERE)
CP = "IB-0001"
PASSWORD = "correct horse battery"
logging.getLogger("ocpp").setLevel(logging.CRITICAL)  # expected CALLERRORs are not news


class Client(ChargePoint):
    """Answers ChangeConfiguration with whatever status the test chooses (valid or not)."""

    reply_status = "Accepted"

    @on(Action.change_configuration, skip_schema_validation=True)
    async def on_change_configuration(self, key, value):
        return call_result.ChangeConfiguration(status=self.reply_status)

    @on(Action.get_configuration)
    async def on_get_configuration(self, key=None):
        return call_result.GetConfiguration(
            configuration_key=[{"key": "HeartbeatInterval", "readonly": False, "value": "60"}],
            unknown_key=[k for k in key or [] if k != "HeartbeatInterval"] or None,
        )


def read_log(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class CentralSystemContract:
    """The tests; a subclass names the central system's command (PROGRAM)."""

    PROGRAM: list[str] = []
    INVALID_CALL_ERROR = "FormatViolation"  # how the `ocpp` client names the CALLERROR it gets

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.tmp.name
        subprocess.run(["bash", os.path.join(INTEROP, "gen-certs.sh"), os.path.join(d, "certs")], check=True)
        cls.log = os.path.join(d, "csms.jsonl")
        cls.control = os.path.join(d, "csms.sock")
        ready = os.path.join(d, "port")
        env = dict(os.environ, TEST_CP_PASSWORD=PASSWORD)
        cls.proc = subprocess.Popen(
            [*cls.PROGRAM, "--port", "0", "--ready-file", ready,
             "--cert", os.path.join(d, "certs", "server.pem"), "--key", os.path.join(d, "certs", "server.key"),
             "--log", cls.log, "--charger", f"{CP}:TEST_CP_PASSWORD", "--meter-interval", "5",
             "--control", cls.control],
            env=env, stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while not (os.path.exists(ready) and os.path.getsize(ready)):
            if time.monotonic() > deadline or cls.proc.poll() is not None:
                cls.proc.kill()
                raise RuntimeError("csms.py did not start")
            time.sleep(0.05)
        with open(ready, encoding="utf-8") as f:
            cls.port = int(f.read())
        cls.ca = os.path.join(d, "certs", "ca.pem")

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        try:
            cls.proc.wait(5)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
            cls.proc.wait()
        cls.tmp.cleanup()

    def connect(self, charger=CP, password=PASSWORD, subprotocols=("ocpp1.6",), tls_max=None):
        ctx = ssl.create_default_context(cafile=self.ca)
        if tls_max:
            ctx.maximum_version = tls_max
        headers = {}
        if password is not None:
            token = base64.b64encode(f"{charger}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return websockets.connect(f"wss://localhost:{self.port}/ocpp/{charger}", ssl=ctx,
                                  subprotocols=list(subprotocols) or None, additional_headers=headers)

    def handshake_status(self, **kwargs):
        async def go():
            try:
                async with self.connect(**kwargs):
                    return 101
            except websockets.exceptions.InvalidStatus as exc:
                return exc.response.status_code
        return asyncio.run(go())

    def wait_log(self, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in read_log(self.log) if pred(r)]
            if found:
                return found
            time.sleep(0.05)
        self.fail("log record not found")

    def test_wrong_password_missing_auth_and_unknown_charger_are_refused(self):
        self.assertEqual(self.handshake_status(password="wrong"), 401)
        self.assertEqual(self.handshake_status(password=None), 401)
        self.assertEqual(self.handshake_status(charger="IB-9999"), 404)
        reasons = [r["reason"] for r in read_log(self.log) if r["kind"] == "auth_rejected"]
        self.assertIn("wrong password", reasons)
        self.assertIn("no basic auth", reasons)
        with open(self.log, encoding="utf-8") as f:
            self.assertNotIn(PASSWORD, f.read())

    def test_subprotocol_is_required(self):
        self.assertEqual(self.handshake_status(subprotocols=()), 400)
        self.assertEqual(self.handshake_status(subprotocols=("ocpp2.0.1",)), 400)

    def test_session_is_recorded_and_validation_errors_are_counted(self):
        async def go():
            async with self.connect(tls_max=ssl.TLSVersion.TLSv1_2) as ws:
                cp = Client(CP, ws)
                cp.reply_status = "Maybe"  # not in the ChangeConfiguration.conf schema
                reader = asyncio.create_task(cp.start())
                boot = await cp.call(call.BootNotification(charge_point_vendor="Heidelberg",
                                                           charge_point_model="Energy Control"))
                self.assertEqual(boot.status, "Accepted")
                await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
                # The library on our side would refuse to send this; the central system must notice
                # and answer a CALLERROR.
                try:
                    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Idle"),
                                  skip_schema_validation=True, suppress=False)
                except Exception as exc:  # the CALLERROR, raised as an OCPPError
                    reply = exc
                else:
                    reply = None
                reader.cancel()
                return reply

        reply = asyncio.run(go())
        self.assertEqual(getattr(reply, "code", None), self.INVALID_CALL_ERROR)
        errors = self.wait_log(lambda r: r["kind"] == "validation_error")
        actions = {e["action"] for e in errors}
        self.assertIn("StatusNotification", actions)
        records = read_log(self.log)
        connect = [r for r in records if r["kind"] == "connect"][-1]
        self.assertEqual(connect["subprotocol"], "ocpp1.6")
        self.assertEqual(connect["tls_version"], "TLSv1.2")
        boots = [r for r in records if r["kind"] == "message" and r.get("action") == "BootNotification"]
        self.assertEqual([b["dir"] for b in boots][:2], ["in", "out"])

    def test_invalid_reply_to_change_configuration_is_a_validation_error(self):
        async def go():
            async with self.connect() as ws:
                cp = Client("IB-0001", ws)
                cp.reply_status = "Maybe"
                reader = asyncio.create_task(cp.start())
                await cp.call(call.BootNotification(charge_point_vendor="Heidelberg", charge_point_model="EC"))
                await asyncio.sleep(1.5)  # csms sends ChangeConfiguration 0.5 s after boot
                reader.cancel()

        asyncio.run(go())
        errors = self.wait_log(lambda r: r["kind"] == "validation_error" and r["action"] == "ChangeConfiguration")
        self.assertEqual(errors[0]["dir"], "in")
        results = self.wait_log(lambda r: r["kind"] == "call_result" and r["action"] == "ChangeConfiguration")
        self.assertTrue(results[-1].get("error"))

    def test_control_socket_sends_calls_and_returns_the_raw_reply(self):
        async def request(obj):
            reader, writer = await asyncio.open_unix_connection(self.control)
            writer.write((json.dumps(obj) + "\n").encode())
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 15)
            writer.close()
            return json.loads(line)

        async def go():
            async with self.connect() as ws:
                cp = Client(CP, ws)
                reader = asyncio.create_task(cp.start())
                await cp.call(call.BootNotification(charge_point_vendor="Heidelberg", charge_point_model="EC"))
                await asyncio.sleep(1.0)  # past the ChangeConfiguration after boot
                good = await request({"charger": CP, "action": "GetConfiguration",
                                      "payload": {"key": ["HeartbeatInterval", "Nope"]}})
                cp.reply_status = "Maybe"  # an invalid ChangeConfiguration.conf
                bad = await request({"charger": CP, "action": "ChangeConfiguration",
                                     "payload": {"key": "HeartbeatInterval", "value": "5"}, "timeout": 5})
                absent = await request({"charger": "IB-0404", "action": "ClearCache", "payload": {}})
                reader.cancel()
                return good, bad, absent

        good, bad, absent = asyncio.run(go())
        self.assertEqual(good, {"ok": True, "payload": {
            "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "60"}],
            "unknownKey": ["Nope"]}})
        self.assertFalse(bad["ok"])
        self.assertEqual(absent["error"], "NotConnected")
        errors = self.wait_log(lambda r: r["kind"] == "validation_error" and r["action"] == "ChangeConfiguration"
                               and r["dir"] == "in")
        self.assertTrue(errors)
        controls = [r for r in read_log(self.log) if r["kind"] == "control"]
        self.assertEqual([c["action"] for c in controls][-3:], ["GetConfiguration", "ChangeConfiguration", "ClearCache"])


class CsmsPyTest(CentralSystemContract, unittest.TestCase):
    PROGRAM = [sys.executable, os.path.join(INTEROP, "csms.py")]


@unittest.skipUnless(shutil.which("node") and os.path.isdir(os.path.join(INTEROP, "ocpp-rpc", "node_modules")),
                     "node or ocpp-rpc/node_modules missing (bash ocpp-rpc/setup.sh)")
class CsmsJsTest(CentralSystemContract, unittest.TestCase):
    PROGRAM = ["node", os.path.join(INTEROP, "ocpp-rpc", "csms.js")]
    INVALID_CALL_ERROR = "FormationViolation"  # OCPP-J 1.6 spelling (errata section 5)


if __name__ == "__main__":
    unittest.main()
