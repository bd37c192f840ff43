#!/usr/bin/env python3
"""An OCPP 1.6J central system for the interoperability suite, built on the `ocpp` package.

Peers: chargebridge (or any charge point) connects to wss://HOST:PORT/ocpp/<charge point id>
with subprotocol ocpp1.6 and HTTP Basic Auth (OCPP 1.6 security profile 2: user name = charge
point id). The `ocpp` package validates every inbound CALL and CALLRESULT against the official
OCPP 1.6 JSON schemas.

Everything the central system sees is written to a JSON-lines log, one object per line:

  {"kind": "listening", ...}                      the server is up
  {"kind": "auth_rejected", "charger", "reason"}  HTTP 401 answered during the opening handshake
  {"kind": "connect", "charger", "subprotocol", "tls_version", ...}
  {"kind": "message", "dir": "in"|"out", "charger", "type": 2|3|4, "id", "action", "payload"}
  {"kind": "validation_error", "charger", "dir", "action", "id", "error", "description", "details"}
  {"kind": "call_result", "charger", "action", "request", "status"|"error"}
  {"kind": "handler_error", ...}                  a bug in this script; counted as a failure too
  {"kind": "disconnect", "charger", "code", "reason"}
  {"kind": "control", "charger", "action", "request", "reply"}  a CALL asked for on --control

With --control PATH a Unix socket accepts one JSON object per line,
{"charger": ID, "action": "GetConfiguration", "payload": {...}, "timeout": 30}, sends that CALL
(payload in OCPP's camelCase, validated by the `ocpp` package before it leaves) to the charge
point's current connection and answers one JSON line: {"ok": true, "payload": {...}} with the
raw CALLRESULT payload, or {"ok": false, "error": CODE, "description": TEXT}. core.py drives the
"core" scenario this way; tests/interop/ocpp-rpc/csms.js speaks the same protocol.

Validation failures are never swallowed: the `ocpp` package would only log them to its logger
and answer a CALLERROR; here every one becomes a `validation_error` line the checker counts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import functools
import hmac
import itertools
import json
import os
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import OCPPError
from ocpp.messages import CallResult, MessageType, unpack, validate_payload
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    DataTransferStatus,
    RegistrationStatus,
)
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request


class JsonLog:
    """Append-only JSON-lines log, flushed after every record so a killed run keeps it."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def write(self, kind: str, **fields: Any) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        record = {"ts": time.time(), "kind": kind, **fields}
        line = json.dumps(record, default=str, sort_keys=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


def utc_now_iso() -> str:
    """Current time as OCPP wants it: ISO 8601 UTC with a Z suffix."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Settings:
    """What the central system answers and asks; from the command line."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.heartbeat_interval: int = args.heartbeat_interval
        self.boot_status: str = args.boot_status
        self.configure: list[tuple[str, str]] = []
        if args.sampled_data:
            self.configure.append(("MeterValuesSampledData", args.sampled_data))
        if args.meter_interval is not None:
            self.configure.append(("MeterValueSampleInterval", str(args.meter_interval)))
        for item in args.set or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
            self.configure.append((key, value))


_transaction_ids = itertools.count(1)


def record_handler_errors(func):
    """Log exceptions raised inside an @on handler (bugs in this script) before re-raising."""

    @functools.wraps(func)
    async def wrapper(self: "CentralSystemSession", *args: Any, **kwargs: Any) -> Any:
        try:
            return await func(self, *args, **kwargs)
        except Exception as exc:  # re-raised: the library answers a CALLERROR
            self.log.write(
                "handler_error",
                charger=self.id,
                handler=func.__name__,
                error=type(exc).__name__,
                description=str(exc),
            )
            raise

    return wrapper


class CentralSystemSession(ChargePoint):
    """One charge point's connection as seen by the central system."""

    def __init__(self, charger_id: str, connection: ServerConnection, log: JsonLog, settings: Settings):
        super().__init__(charger_id, connection)
        self.log = log
        self.settings = settings
        # Actions of the CALLs this side sent, by unique id, so replies can be validated and logged.
        self._pending: dict[str, str] = {}
        # Actions of the CALLs the charge point sent, so our replies are logged with their action.
        self._inbound_actions: dict[str, str] = {}
        self._tasks: set[asyncio.Task] = set()
        # Raw CALLRESULT payloads by unique id, for request() (the control socket).
        self._replies: dict[str, Any] = {}

    # --- transport hooks: record everything, validate replies, never swallow errors ---

    async def _send(self, message: str) -> None:
        self._record("out", message)
        await super()._send(message)

    def _record(self, direction: str, raw: str) -> None:
        try:
            msg = json.loads(raw)
        except (TypeError, ValueError):
            self.log.write("message", dir=direction, charger=self.id, raw=raw)
            return
        fields: dict[str, Any] = {"dir": direction, "charger": self.id}
        if isinstance(msg, list) and len(msg) >= 3:
            fields.update(type=msg[0], id=msg[1])
            if msg[0] == MessageType.Call and len(msg) >= 4:
                fields["action"] = msg[2]
                fields["payload"] = msg[3]
            elif msg[0] == MessageType.CallResult:
                fields["action"] = self._reply_action(direction, msg[1])
                fields["payload"] = msg[2]
            elif msg[0] == MessageType.CallError:
                fields["action"] = self._reply_action(direction, msg[1])
                fields["error_code"] = msg[2]
                fields["description"] = msg[3] if len(msg) > 3 else None
                fields["details"] = msg[4] if len(msg) > 4 else None
        else:
            fields["raw"] = msg
        self.log.write("message", **fields)

    def _reply_action(self, direction: str, unique_id: Any) -> str | None:
        if direction == "in":
            return self._pending.get(unique_id)
        return self._inbound_actions.get(unique_id)

    async def route_message(self, raw_msg: str) -> None:
        self._record("in", raw_msg)
        try:
            msg = unpack(raw_msg)
        except OCPPError as exc:
            # Not an OCPP-J frame at all (OCPP-J 1.6 section 4): a protocol failure of the peer.
            self._validation_error("in", None, None, exc)
            return
        except Exception as exc:  # unpack should only raise OCPPError; be sure
            self._validation_error("in", None, None, exc)
            return

        if msg.message_type_id == MessageType.Call:
            self._inbound_actions[msg.unique_id] = msg.action
            try:
                await self._handle_call(msg)
            except OCPPError as exc:
                # Raised by the schema validation in _handle_call (or for an unknown action).
                self._validation_error("in", msg.action, msg.unique_id, exc)
                await self._send(msg.create_call_error(exc).to_json())
            return

        if msg.message_type_id == MessageType.CallResult:
            action = self._pending.get(msg.unique_id)
            self._replies[msg.unique_id] = msg.payload
            if action is not None:
                # Validate here as well as in call(): call() raises to its caller only, and a
                # reply nobody waits for any more (timeout) must still be checked.
                check = CallResult(unique_id=msg.unique_id, payload=msg.payload, action=action)
                try:
                    await validate_payload(check, self._ocpp_version)
                except OCPPError as exc:
                    self._validation_error("in", action, msg.unique_id, exc)
            else:
                self.log.write("unexpected_reply", charger=self.id, id=msg.unique_id)
        self._response_queue.put_nowait(msg)

    def _validation_error(self, direction: str, action: str | None, unique_id: Any, exc: Exception) -> None:
        self.log.write(
            "validation_error",
            charger=self.id,
            dir=direction,
            action=action,
            id=unique_id,
            error=type(exc).__name__,
            code=getattr(exc, "code", None),
            description=getattr(exc, "description", str(exc)),
            details=getattr(exc, "details", None),
        )

    async def send_call(self, payload: Any) -> Any:
        """Send a CALL and log its outcome; never raises."""
        action = type(payload).__name__
        unique_id = str(uuid.uuid4())
        self._pending[unique_id] = action
        request = {k: v for k, v in vars(payload).items() if v is not None}
        try:
            result = await self.call(payload, suppress=False, unique_id=unique_id)
        except OCPPError as exc:
            # A CALLERROR reply or an invalid CALLRESULT (the latter is already a validation_error).
            self.log.write(
                "call_result",
                charger=self.id,
                action=action,
                request=request,
                error=type(exc).__name__,
                description=getattr(exc, "description", str(exc)),
            )
            return None
        except Exception as exc:  # timeout, connection closed
            self.log.write(
                "call_result", charger=self.id, action=action, request=request, error=type(exc).__name__,
                description=str(exc),
            )
            return None
        status = getattr(result, "status", None)
        self.log.write("call_result", charger=self.id, action=action, request=request, status=status)
        return result

    async def request(self, action: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one CALL given in OCPP's camelCase; the control socket's reply object. Never raises.

        The CALL is built as the `ocpp` package's own dataclass, so it is schema-validated before
        it is sent, and its CALLRESULT is validated on arrival (a failure is a validation_error).
        """
        cls = getattr(call, action, None)
        if cls is None:
            return {"ok": False, "error": "UnknownAction", "description": f"the ocpp package has no {action}"}
        try:
            obj = cls(**camel_to_snake_case(payload))
        except TypeError as exc:
            return {"ok": False, "error": "BadRequest", "description": str(exc)}
        unique_id = str(uuid.uuid4())
        self._pending[unique_id] = action
        self._response_timeout = timeout
        try:
            await self.call(obj, suppress=False, unique_id=unique_id)
        except OCPPError as exc:
            if unique_id in self._replies:
                # A CALLRESULT that failed validation: already a validation_error record.
                return {"ok": False, "error": "InvalidCallResult", "description": str(exc),
                        "payload": self._replies.pop(unique_id)}
            return {"ok": False, "error": getattr(exc, "code", type(exc).__name__),
                    "description": getattr(exc, "description", str(exc))}
        except Exception as exc:  # timeout, connection closed
            return {"ok": False, "error": type(exc).__name__, "description": str(exc)}
        return {"ok": True, "payload": self._replies.pop(unique_id, None)}

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- CALL handlers (OCPP 1.6 section 4: operations initiated by the charge point) ---

    @on(Action.boot_notification)
    @record_handler_errors
    async def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=utc_now_iso(),
            interval=self.settings.heartbeat_interval,
            status=RegistrationStatus(self.settings.boot_status),
        )

    @after(Action.boot_notification)
    async def after_boot_notification(self, **_: Any) -> None:
        if self.settings.boot_status == RegistrationStatus.accepted and self.settings.configure:
            self._spawn(self._configure())

    async def _configure(self) -> None:
        # Give the charge point a moment to send its StatusNotifications first, as a real
        # central system's provisioning step would.
        await asyncio.sleep(0.5)
        for key, value in self.settings.configure:
            await self.send_call(call.ChangeConfiguration(key=key, value=value))

    @on(Action.heartbeat)
    @record_handler_errors
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=utc_now_iso())

    @on(Action.status_notification)
    @record_handler_errors
    async def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.authorize)
    @record_handler_errors
    async def on_authorize(self, **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted))

    @on(Action.start_transaction)
    @record_handler_errors
    async def on_start_transaction(self, **_: Any) -> call_result.StartTransaction:
        return call_result.StartTransaction(
            transaction_id=next(_transaction_ids),
            id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted),
        )

    @on(Action.stop_transaction)
    @record_handler_errors
    async def on_stop_transaction(self, **_: Any) -> call_result.StopTransaction:
        return call_result.StopTransaction(id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted))

    @on(Action.meter_values)
    @record_handler_errors
    async def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @on(Action.data_transfer)
    @record_handler_errors
    async def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    @on(Action.diagnostics_status_notification)
    @record_handler_errors
    async def on_diagnostics_status_notification(self, **_: Any) -> call_result.DiagnosticsStatusNotification:
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    @record_handler_errors
    async def on_firmware_status_notification(self, **_: Any) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()


def parse_basic_auth(headers: Headers) -> tuple[str, str] | None:
    """(user, password) from an Authorization: Basic header (RFC 7617), or None."""
    value = headers.get("Authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


class CentralSystem:
    """The WSS server: checks path and Basic Auth, then runs one session per connection."""

    def __init__(self, log: JsonLog, settings: Settings, credentials: dict[str, str], path_prefix: str):
        self.log = log
        self.settings = settings
        self.credentials = credentials
        self.path_prefix = path_prefix.rstrip("/") + "/"
        # The newest open session of each charge point, for the control socket.
        self.sessions: dict[str, CentralSystemSession] = {}

    def charger_id(self, path: str) -> str | None:
        path = path.split("?", 1)[0]
        if not path.startswith(self.path_prefix):
            return None
        segment = path[len(self.path_prefix):]
        if not segment or "/" in segment:
            return None
        return urllib.parse.unquote(segment)

    def process_request(self, connection: ServerConnection, request: Request):
        charger = self.charger_id(request.path)
        if charger is None or charger not in self.credentials:
            self.log.write("auth_rejected", path=request.path, charger=charger, reason="unknown charge point", status=404)
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown charge point\n")
        auth = parse_basic_auth(request.headers)
        # OCPP 1.6 security whitepaper, profile 1/2: the user name is the charge point identity.
        ok = (
            auth is not None
            and auth[0] == charger
            and hmac.compare_digest(auth[1].encode(), self.credentials[charger].encode())
        )
        if not ok:
            reason = "no basic auth" if auth is None else ("wrong user" if auth[0] != charger else "wrong password")
            self.log.write("auth_rejected", path=request.path, charger=charger, reason=reason, status=401)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "authentication required\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
            return response
        return None

    async def handler(self, connection: ServerConnection) -> None:
        charger = self.charger_id(connection.request.path) if connection.request else None
        ssl_object = connection.transport.get_extra_info("ssl_object") if connection.transport else None
        self.log.write(
            "connect",
            charger=charger,
            path=connection.request.path if connection.request else None,
            subprotocol=connection.subprotocol,
            tls_version=ssl_object.version() if ssl_object else None,
            cipher=ssl_object.cipher()[0] if ssl_object and ssl_object.cipher() else None,
            user_agent=connection.request.headers.get("User-Agent") if connection.request else None,
        )
        if charger is None or connection.subprotocol != "ocpp1.6":
            # OCPP-J 1.6 section 3.1.2: the server must agree on ocpp1.6 or close.
            self.log.write("protocol_error", charger=charger, reason="subprotocol ocpp1.6 not negotiated")
            await connection.close(1002, "subprotocol ocpp1.6 required")
            return
        session = CentralSystemSession(charger, connection, self.log, self.settings)
        self.sessions[charger] = session
        try:
            await session.start()
        except Exception as exc:  # ConnectionClosed ends every session
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            reason = getattr(getattr(exc, "rcvd", None), "reason", None)
            self.log.write("disconnect", charger=charger, error=type(exc).__name__, code=code, reason=reason)
        finally:
            if self.sessions.get(charger) is session:
                del self.sessions[charger]
            for task in list(session._tasks):
                task.cancel()

    async def control_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One control-socket connection: a JSON request per line, a JSON reply per line."""
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    charger, action = req["charger"], req["action"]
                    payload = req.get("payload") or {}
                    timeout = float(req.get("timeout", 30))
                except (ValueError, KeyError, TypeError) as exc:
                    reply: dict[str, Any] = {"ok": False, "error": "BadRequest", "description": str(exc)}
                else:
                    session = self.sessions.get(charger)
                    if session is None:
                        reply = {"ok": False, "error": "NotConnected", "description": f"{charger} is not connected"}
                    else:
                        reply = await session.request(action, payload, timeout)
                    self.log.write("control", charger=charger, action=action, request=payload, reply=reply)
                writer.write((json.dumps(reply) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # behaviour.md: TLS 1.2 minimum (OCPP 1.6 security whitepaper, profile 2).
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def parse_credentials(items: list[str]) -> dict[str, str]:
    """--charger ID:ENVVAR pairs; the password is read from the environment, never argv."""
    creds: dict[str, str] = {}
    for item in items:
        charger, sep, env = item.rpartition(":")
        if not sep or not charger:
            raise SystemExit(f"--charger expects ID:ENV_VAR, got {item!r}")
        password = os.environ.get(env)
        if not password:
            raise SystemExit(f"--charger {charger}: environment variable {env} is not set")
        creds[charger] = password
    return creds


async def main_async(args: argparse.Namespace) -> None:
    log = JsonLog(args.log)
    settings = Settings(args)
    system = CentralSystem(log, settings, parse_credentials(args.charger), args.path_prefix)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(
        system.handler,
        args.host,
        args.port,
        ssl=tls_context(args.cert, args.key),
        subprotocols=["ocpp1.6"],
        process_request=system.process_request,
        ping_interval=None,  # the charge point pings (WebSocketPingInterval); pongs are automatic
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        log.write("listening", host=args.host, port=port)
        if args.ready_file:
            with open(args.ready_file, "w", encoding="utf-8") as f:
                f.write(f"{port}\n")
        print(f"csms: listening on wss://{args.host}:{port}{args.path_prefix}/<id>", flush=True)
        control = await asyncio.start_unix_server(system.control_client, args.control) if args.control else None
        await stop
        if control is not None:
            control.close()
    errors = log.counts.get("validation_error", 0)
    log.write("stopped", validation_errors=errors)
    print(f"csms: stopped; {errors} schema validation error(s)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (see --ready-file)")
    p.add_argument("--cert", required=True, help="server certificate chain (PEM)")
    p.add_argument("--key", required=True, help="server private key (PEM)")
    p.add_argument("--log", required=True, help="JSON-lines log file (appended)")
    p.add_argument("--ready-file", help="written with the port once listening")
    p.add_argument("--path-prefix", default="/ocpp")
    p.add_argument("--charger", action="append", default=[], metavar="ID:ENV_VAR",
                   help="accepted charge point and the environment variable holding its password")
    p.add_argument("--heartbeat-interval", type=int, default=60)
    p.add_argument("--boot-status", default="Accepted", choices=[s.value for s in RegistrationStatus])
    p.add_argument("--meter-interval", type=int,
                   help="after each accepted boot: ChangeConfiguration MeterValueSampleInterval")
    p.add_argument("--sampled-data",
                   help="after each accepted boot: ChangeConfiguration MeterValuesSampledData")
    p.add_argument("--control", metavar="PATH", help="Unix socket on which CALLs to send are requested")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="more ChangeConfiguration after boot")
    args = p.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
