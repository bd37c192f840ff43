#!/usr/bin/env node
// A second OCPP 1.6J central system for the interoperability suite, built on the npm package
// `ocpp-rpc` in strictMode: every CALL and CALLRESULT, in both directions, is validated against
// the package's own OCPP 1.6 JSON schemas (an implementation independent of the Python `ocpp`
// package that csms.py uses).
//
// It speaks csms.py's interface so the same driver (core.py) and log readers work with both:
// the same options (--host --port --ready-file --cert --key --log --charger ID:ENV_VAR
// --heartbeat-interval --control), the same JSON-lines records ("listening", "auth_rejected",
// "connect", "message", "validation_error", "call_result", "control", "disconnect", "stopped")
// and the same control-socket protocol: one JSON request per line,
// {"charger", "action", "payload", "timeout"} -> {"ok": true, "payload"} or
// {"ok": false, "error", "description"}.
//
// strictMode answers an invalid inbound CALL with a CALLERROR and rejects an invalid CALLRESULT
// to our own CALL; neither is fatal to ocpp-rpc, so each `strictValidationFailure` event is
// written as a `validation_error` record, which the checker counts (zero required).
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');
const net = require('node:net');
const { RPCServer } = require('ocpp-rpc');

function parseArgs(argv) {
  const opts = {
    host: '127.0.0.1', port: 0, pathPrefix: '/ocpp', heartbeatInterval: 60, chargers: [],
    sampledData: null, meterInterval: null,
  };
  const takes = {
    '--host': v => { opts.host = v; },
    '--port': v => { opts.port = Number(v); },
    '--ready-file': v => { opts.readyFile = v; },
    '--cert': v => { opts.cert = v; },
    '--key': v => { opts.key = v; },
    '--log': v => { opts.log = v; },
    '--path-prefix': v => { opts.pathPrefix = v.replace(/\/+$/, ''); },
    '--charger': v => { opts.chargers.push(v); },
    '--heartbeat-interval': v => { opts.heartbeatInterval = Number(v); },
    '--control': v => { opts.control = v; },
    '--sampled-data': v => { opts.sampledData = v; },
    '--meter-interval': v => { opts.meterInterval = v; },
  };
  for (let i = 0; i < argv.length; i++) {
    const set = takes[argv[i]];
    if (!set || i + 1 >= argv.length) {
      throw new Error(`usage: csms.js --cert PEM --key PEM --log FILE [--charger ID:ENV_VAR]... (bad option ${argv[i]})`);
    }
    set(argv[++i]);
  }
  if (!opts.cert || !opts.key || !opts.log) throw new Error('--cert, --key and --log are required');
  return opts;
}

// ID:ENV_VAR pairs: the password is read from the environment, never from argv.
function credentials(items) {
  const creds = new Map();
  for (const item of items) {
    const at = item.lastIndexOf(':');
    if (at <= 0) throw new Error(`--charger expects ID:ENV_VAR, got ${item}`);
    const id = item.slice(0, at);
    const password = process.env[item.slice(at + 1)];
    if (!password) throw new Error(`--charger ${id}: environment variable ${item.slice(at + 1)} is not set`);
    creds.set(id, password);
  }
  return creds;
}

class JsonLog {
  constructor(path) {
    this.fd = fs.openSync(path, 'a');
    this.counts = {};
  }

  // Synchronous append: a killed process keeps every record written so far.
  write(kind, fields = {}) {
    this.counts[kind] = (this.counts[kind] || 0) + 1;
    fs.writeSync(this.fd, JSON.stringify({ ts: Date.now() / 1000, kind, ...fields }) + '\n');
  }
}

function nowIso() {
  return new Date().toISOString();
}

let nextTransactionId = 1;

// Answers to the charge point's CALLs (OCPP 1.6 section 4), as csms.py gives them.
function handlers(settings) {
  return {
    BootNotification: () => ({ status: 'Accepted', currentTime: nowIso(), interval: settings.heartbeatInterval }),
    Heartbeat: () => ({ currentTime: nowIso() }),
    StatusNotification: () => ({}),
    Authorize: () => ({ idTagInfo: { status: 'Accepted' } }),
    StartTransaction: () => ({ transactionId: nextTransactionId++, idTagInfo: { status: 'Accepted' } }),
    StopTransaction: () => ({ idTagInfo: { status: 'Accepted' } }),
    MeterValues: () => ({}),
    DataTransfer: () => ({ status: 'UnknownVendorId' }),
    DiagnosticsStatusNotification: () => ({}),
    FirmwareStatusNotification: () => ({}),
  };
}

class Session {
  constructor(client, log) {
    this.client = client;
    this.log = log;
    this.id = client.identity;
    this.outActions = new Map(); // our CALLs by message id
    this.inActions = new Map(); // the charge point's CALLs by message id
  }

  record(direction, raw) {
    let msg;
    try {
      msg = JSON.parse(raw.toString());
    } catch (err) {
      this.log.write('message', { dir: direction, charger: this.id, raw: raw.toString() });
      return;
    }
    const fields = { dir: direction, charger: this.id };
    if (Array.isArray(msg) && msg.length >= 3) {
      const [type, id] = msg;
      Object.assign(fields, { type, id });
      const replyAction = direction === 'in' ? this.outActions.get(id) : this.inActions.get(id);
      if (type === 2 && msg.length >= 4) {
        Object.assign(fields, { action: msg[2], payload: msg[3] });
        (direction === 'in' ? this.inActions : this.outActions).set(id, msg[2]);
      } else if (type === 3) {
        Object.assign(fields, { action: replyAction ?? null, payload: msg[2] });
      } else if (type === 4) {
        Object.assign(fields, {
          action: replyAction ?? null, error_code: msg[2], description: msg[3] ?? null, details: msg[4] ?? null,
        });
      }
    } else {
      fields.raw = msg;
    }
    this.log.write('message', fields);
  }

  // One CALL for the control socket; never throws.
  async request(action, payload, timeoutS) {
    try {
      const result = await this.client.call(action, payload, { callTimeoutMs: timeoutS * 1000 });
      return { ok: true, payload: result };
    } catch (err) {
      if (err && err.rpcErrorCode) {
        return { ok: false, error: err.rpcErrorCode, description: err.rpcErrorMessage || err.message || '' };
      }
      return { ok: false, error: (err && err.name) || 'Error', description: String(err && err.message) };
    }
  }
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const creds = credentials(opts.chargers);
  const log = new JsonLog(opts.log);
  const sessions = new Map();
  const settings = { heartbeatInterval: opts.heartbeatInterval };
  const answers = handlers(settings);

  const rpc = new RPCServer({
    protocols: ['ocpp1.6'],
    strictMode: true,
    pingIntervalMs: 0, // the charge point pings (WebSocketPingInterval)
    callTimeoutMs: 30000,
  });

  rpc.auth((accept, reject, handshake) => {
    const prefix = opts.pathPrefix || '';
    const charger = handshake.identity;
    if (handshake.endpoint !== (prefix || '/') || !creds.has(charger)) {
      log.write('auth_rejected', { path: handshake.request.url, charger, reason: 'unknown charge point', status: 404 });
      return reject(404, 'unknown charge point');
    }
    if (!handshake.protocols.has('ocpp1.6')) {
      log.write('protocol_error', { charger, reason: 'subprotocol ocpp1.6 not offered' });
      return reject(400, 'subprotocol ocpp1.6 required');
    }
    // OCPP 1.6 security whitepaper, profile 2: user name = identity (ocpp-rpc checks that).
    const want = Buffer.from(creds.get(charger));
    const got = handshake.password;
    const ok = got !== undefined && got.length === want.length && crypto.timingSafeEqual(got, want);
    if (!ok) {
      // ocpp-rpc leaves the password undefined when the user name is not the identity.
      const reason = !handshake.headers.authorization ? 'no basic auth' : (got === undefined ? 'wrong user' : 'wrong password');
      log.write('auth_rejected', { path: handshake.request.url, charger, reason, status: 401 });
      return reject(401, 'authentication required');
    }
    accept({ charger }, 'ocpp1.6');
  });

  rpc.on('client', client => {
    const socket = client.handshake.request.socket;
    log.write('connect', {
      charger: client.identity,
      path: client.handshake.request.url,
      subprotocol: client.protocol,
      tls_version: typeof socket.getProtocol === 'function' ? socket.getProtocol() : null,
      cipher: typeof socket.getCipher === 'function' ? (socket.getCipher() || {}).standardName : null,
      user_agent: client.handshake.headers['user-agent'] ?? null,
    });
    const session = new Session(client, log);
    sessions.set(client.identity, session);
    client.on('message', ({ message, outbound }) => session.record(outbound ? 'out' : 'in', message));
    client.on('strictValidationFailure', ev => {
      log.write('validation_error', {
        charger: client.identity,
        dir: ev.outbound ? 'out' : 'in',
        action: ev.method,
        id: ev.messageId,
        error: (ev.error && ev.error.rpcErrorCode) || (ev.error && ev.error.name) || 'ValidationError',
        description: ev.error ? ev.error.message : '',
        details: { cause: ev.error && ev.error.details, is_call: ev.isCall, params: ev.params, result: ev.result },
      });
    });
    client.on('badMessage', ({ buffer, error }) => {
      log.write('validation_error', {
        charger: client.identity, dir: 'in', action: null, id: null, error: 'BadMessage',
        description: String(error && error.message), details: { raw: String(buffer) },
      });
    });
    for (const [action, answer] of Object.entries(answers)) {
      client.handle(action, () => answer());
    }
    if (opts.sampledData || opts.meterInterval) {
      // As csms.py: configure after each accepted boot, after the first StatusNotifications.
      client.on('callResult', ({ method, outbound }) => {
        if (outbound || method !== 'BootNotification') return;
        setTimeout(async () => {
          const configure = [];
          if (opts.sampledData) configure.push(['MeterValuesSampledData', opts.sampledData]);
          if (opts.meterInterval) configure.push(['MeterValueSampleInterval', String(opts.meterInterval)]);
          for (const [key, value] of configure) {
            const reply = await session.request('ChangeConfiguration', { key, value }, 30);
            log.write('call_result', {
              charger: client.identity, action: 'ChangeConfiguration', request: { key, value },
              status: reply.ok ? reply.payload.status : undefined, error: reply.ok ? undefined : reply.error,
            });
          }
        }, 500);
      });
    }
    client.once('close', ({ code, reason }) => {
      if (sessions.get(client.identity) === session) sessions.delete(client.identity);
      log.write('disconnect', { charger: client.identity, code, reason: reason ? String(reason) : null });
    });
  });

  const tls = https.createServer({
    cert: fs.readFileSync(opts.cert),
    key: fs.readFileSync(opts.key),
    minVersion: 'TLSv1.2', // behaviour.md: TLS 1.2 minimum (security profile 2)
  });
  tls.on('upgrade', rpc.handleUpgrade);
  tls.on('request', (req, res) => {
    res.writeHead(426, { 'Content-Type': 'text/plain' });
    res.end('websocket only\n');
  });

  let control = null;
  if (opts.control) {
    control = net.createServer(conn => {
      let buf = '';
      let chain = Promise.resolve();
      conn.on('error', () => {});
      conn.on('data', data => {
        buf += data.toString();
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          chain = chain.then(async () => {
            let reply;
            let req;
            try {
              req = JSON.parse(line);
              if (typeof req.charger !== 'string' || typeof req.action !== 'string') throw new Error('charger and action required');
            } catch (err) {
              reply = { ok: false, error: 'BadRequest', description: err.message };
            }
            if (!reply) {
              const session = sessions.get(req.charger);
              reply = session
                ? await session.request(req.action, req.payload || {}, Number(req.timeout || 30))
                : { ok: false, error: 'NotConnected', description: `${req.charger} is not connected` };
              log.write('control', { charger: req.charger, action: req.action, request: req.payload || {}, reply });
            }
            if (!conn.destroyed) conn.write(JSON.stringify(reply) + '\n');
          });
        }
      });
    });
    control.listen(opts.control);
  }

  tls.listen(opts.port, opts.host, () => {
    const { port } = tls.address();
    log.write('listening', { host: opts.host, port });
    if (opts.readyFile) fs.writeFileSync(opts.readyFile, `${port}\n`);
    console.log(`csms.js: listening on wss://${opts.host}:${port}${opts.pathPrefix}/<id> (ocpp-rpc, strictMode)`);
  });

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    const errors = log.counts.validation_error || 0;
    try {
      await rpc.close({ code: 1001, reason: 'central system stopping', awaitPending: false, force: true });
    } catch (err) {
      // closing is best effort
    }
    tls.close();
    if (control) control.close();
    log.write('stopped', { validation_errors: errors });
    console.log(`csms.js: stopped; ${errors} schema validation error(s)`);
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

try {
  main();
} catch (err) {
  console.error(`csms.js: ${err.message}`);
  process.exit(2);
}
