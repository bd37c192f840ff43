#!/usr/bin/env python3
"""Interop scenario `security`: chargebridge against the `ocpp` central system of csms.py, served
the way an AWS load balancer with ELBSecurityPolicy-TLS-1-2-Ext-2018-06 would (TLS 1.2 only, that
policy's cipher list) with HTTP Basic Auth (security profile 2).

Steps (each one a check; the run prints PASS/FAIL security and exits non-zero on failure):
 1. the gateway connects with its configured password and boots; the negotiated TLS version and
    cipher are printed;
 2. ChangeConfiguration AuthorizationKey = 40 new hex digits is Accepted; the central system takes
    the new key; the gateway reconnects with it (no 401 in between);
 3. GetConfiguration (all keys, and AuthorizationKey by name) never shows the key;
 4. ChangeConfiguration AuthorizationKey = a key the central system does NOT take: the reconnect
    with it is refused (401), the gateway rolls back and connects with the previous key again;
 5. no schema validation error; the gateway's log, /status, /status.json and /metrics hold none
    of the passwords or keys.

Usage (run.sh does this): security_scenario.py --gateway PATH --certs DIR --work DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from typing import Any

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)

import csms  # noqa: E402  (the interop central system, reused as is)
from ocpp.v16 import call  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402

CHARGER = "IB-SEC1"
ELB_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA256:"
    "ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES256-SHA:"
    "ECDHE-ECDSA-AES256-SHA:AES128-GCM-SHA256:AES128-SHA256:AES128-SHA:AES256-GCM-SHA384:AES256-SHA256:"
    "AES256-SHA"
)
WAIT = 60.0

sessions: dict[str, Any] = {}


class Session(csms.CentralSystemSession):
    """csms.py's session, remembered by charge point id so this driver can send CALLs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sessions[self.id] = self


csms.CentralSystemSession = Session  # CentralSystem.handler looks the class up at call time


class Quiet:
    """Settings: a long heartbeat, no provisioning CALLs (this driver sends its own)."""

    heartbeat_interval = 300
    boot_status = "Accepted"
    configure: list[tuple[str, str]] = []


def elb_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ELB_CIPHERS)
    ctx.load_cert_chain(cert, key)
    return ctx


def records(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


async def wait_for(what: str, predicate, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def scenario(args: argparse.Namespace, failures: list[str]) -> None:
    work = args.work
    os.makedirs(os.path.join(work, "state"), exist_ok=True)
    log_path = os.path.join(work, "csms.jsonl")
    log = csms.JsonLog(log_path)
    password = secrets.token_hex(16)
    system = csms.CentralSystem(log, Quiet(), {CHARGER: password}, "/ocpp")

    def events(kind: str, since: int = 0) -> list[dict[str, Any]]:
        return [r for r in records(log_path)[since:] if r.get("kind") == kind and r.get("charger") == CHARGER]

    def mark() -> int:
        return len(records(log_path))

    procs: list[subprocess.Popen] = []
    secrets_used = [password]
    try:
        mb_port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(here, "heidelberg.py"), "--tcp", f"127.0.0.1:{mb_port}",
             "--log", os.path.join(work, "wallbox.jsonl")],
            stdout=open(os.path.join(work, "wallbox.out"), "w"), stderr=subprocess.STDOUT))
        async with serve(system.handler, "127.0.0.1", 0, ssl=elb_context(args.cert, args.key),
                         subprotocols=["ocpp1.6"], process_request=system.process_request,
                         ping_interval=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            config = os.path.join(work, "chargebridge.yaml")
            http_port = free_port()
            with open(config, "w", encoding="utf-8") as f:
                f.write(
                    f"state_dir: {work}/state\n"
                    f"http:\n  listen: 127.0.0.1:{http_port}\n"
                    "log: { format: text, filter: debug }\n"
                    f"csms:\n  url: wss://localhost:{port}/ocpp\n  security_profile: 2\n"
                    f"  ca_file: {args.ca}\n"
                    f"chargers:\n  - id: {CHARGER}\n    device_map: heidelberg-energy-control\n"
                    f"    tcp: 127.0.0.1:{mb_port}\n    unit: 1\n    password: ${{IB_SEC1_PASSWORD}}\n"
                    "    max_current: 16\n    poll_interval: 1s\n"
                    f"    authorization: {{ mode: free, id_tag: {CHARGER} }}\n"
                )
            os.chmod(config, 0o600)
            gateway_out = os.path.join(work, "gateway.out")
            env = dict(os.environ, IB_SEC1_PASSWORD=password)
            procs.append(subprocess.Popen(args.gateway + ["run", "-c", config], env=env,
                                          stdout=open(gateway_out, "w"), stderr=subprocess.STDOUT))

            # 1. connected with the configured password, booted
            connect = (await wait_for("the first connection", lambda: events("connect")))[0]
            print(f"  [security] TLS: {connect.get('tls_version')} {connect.get('cipher')}")
            if connect.get("tls_version") != "TLSv1.2":
                failures.append(f"negotiated {connect.get('tls_version')}, expected TLSv1.2")
            await wait_for("BootNotification", lambda: [
                r for r in events("message") if r.get("action") == "BootNotification" and r.get("dir") == "in"])
            await wait_for("a session", lambda: sessions.get(CHARGER))

            # 2. a new key, taken over by the central system
            new_key = secrets.token_hex(20)
            secrets_used.append(new_key)
            since = mark()
            result = await sessions[CHARGER].send_call(call.ChangeConfiguration(key="AuthorizationKey", value=new_key))
            if getattr(result, "status", None) != "Accepted":
                failures.append(f"ChangeConfiguration AuthorizationKey answered {result!r}")
            system.credentials[CHARGER] = new_key
            await wait_for("the reconnect with the new key", lambda: events("connect", since))
            if events("auth_rejected", since):
                failures.append("the new key was refused: the gateway did not send it as written")
            await asyncio.sleep(1.0)
            await wait_for("the new session", lambda: sessions.get(CHARGER))

            # 3. the key is write-only
            everything = await sessions[CHARGER].send_call(call.GetConfiguration())
            by_name = await sessions[CHARGER].send_call(call.GetConfiguration(key=["AuthorizationKey"]))
            if everything is None or by_name is None:
                failures.append("GetConfiguration failed")
            else:
                listed = (everything.configuration_key or []) + (by_name.configuration_key or [])
                shown = json.dumps([vars(everything), vars(by_name)], default=str)
                if new_key.lower() in shown.lower() or any(k.get("key") == "AuthorizationKey" for k in listed):
                    failures.append("GetConfiguration shows the AuthorizationKey")

            # 4. a key the central system does not take: 401, rolled back, reconnected
            refused_key = secrets.token_hex(18)
            secrets_used.append(refused_key)
            since = mark()
            result = await sessions[CHARGER].send_call(call.ChangeConfiguration(key="AuthorizationKey", value=refused_key))
            if getattr(result, "status", None) != "Accepted":
                failures.append(f"second ChangeConfiguration answered {result!r}")
            refusal = (await wait_for("the 401 for the refused key", lambda: events("auth_rejected", since)))[0]
            await wait_for("the reconnect with the previous key", lambda: [
                r for r in events("connect", since) if r["ts"] > refusal["ts"]])
            print("  [security] key change, reconnect, 401 and rollback all seen")

            # 5. the gateway's own surfaces show no secret
            for path in ("/status", "/status.json", "/metrics"):
                try:
                    body = await asyncio.to_thread(
                        lambda p=path: urllib.request.urlopen(f"http://127.0.0.1:{http_port}{p}", timeout=5).read())
                except OSError as e:
                    failures.append(f"GET {path}: {e}")
                    continue
                text = body.decode("utf-8", "replace").lower()
                if any(x.lower() in text for x in secrets_used):
                    failures.append(f"a password or key appears in {path}")
    except AssertionError as e:
        failures.append(str(e))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    # 5. schema validation and secrets in the gateway's output
    if log.counts.get("validation_error", 0):
        failures.append(f"{log.counts['validation_error']} schema validation error(s), see {log_path}")
    with open(os.path.join(work, "gateway.out"), encoding="utf-8", errors="replace") as f:
        out = f.read()
    for s in secrets_used:
        if s.lower() in out.lower():
            failures.append("a password or key appears in the gateway's log")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateway", required=True, nargs="+", help="the gateway command")
    p.add_argument("--certs", required=True, help="directory written by gen-certs.sh")
    p.add_argument("--work", required=True, help="work directory for logs and config")
    args = p.parse_args()
    args.cert = os.path.join(args.certs, "server.pem")
    args.key = os.path.join(args.certs, "server.key")
    args.ca = os.path.join(args.certs, "ca.pem")
    os.makedirs(args.work, exist_ok=True)
    print("== scenario security: TLS 1.2 with the ELB 2018-06 cipher list, Basic Auth, AuthorizationKey")
    failures: list[str] = []
    asyncio.run(scenario(args, failures))
    if failures:
        print("FAIL security")
        for f in failures:
            print(f"  - {f}")
        return 1
    print("PASS security")
    return 0


if __name__ == "__main__":
    sys.exit(main())
