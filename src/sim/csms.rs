//! A small loopback OCPP 1.6J central system for `chargebridge demo` and the integration
//! tests.
//!
//! It accepts `ws[s]://127.0.0.1:<port>/<prefix>/<charger id>` with subprotocol `ocpp1.6`,
//! checks Basic Auth against a map of passwords, answers the Core CALLs a charge point sends
//! with canned, schema-valid replies, lets the caller send CALLs of its own, and records every
//! received CALL and connection change with a timestamp. It can also misbehave on purpose
//! (override a reply, stay silent, send raw text, stall a connection) so that the session's
//! failure handling can be tested against real sockets.
//!
//! It is a test peer, not a product: it validates nothing beyond the envelope. Schema
//! validation is the job of the interoperability tests against the Python `ocpp` package.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures_util::{SinkExt as _, StreamExt as _};
use percent_encoding::percent_decode_str;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use super::accept::serve_bounded;
use super::pki::TestPki;
use crate::ocpp::rpc::{ErrorCode, Frame, MessageIds};
use crate::ocpp::session::{MAX_MESSAGE_SIZE, SUBPROTOCOL};

/// The most connections served at once (a demo runs a handful of chargers, a scale test a few
/// hundred).
pub const MAX_CONNECTIONS: usize = 1024;

/// How the central system is set up. `Debug` shows the charger ids, never the passwords.
#[derive(Clone)]
pub struct CsmsOptions {
    /// Serve `wss://` with this PKI's server certificate; `None` serves plain `ws://`.
    pub tls: Option<TestPki>,
    /// Basic Auth passwords by charger id. A charger listed here must send the right password
    /// (else HTTP 401).
    pub passwords: HashMap<String, String>,
    /// Refuse ids not in `passwords` with HTTP 404 (J-errata 3.3); when false, unknown ids are
    /// accepted without authentication.
    pub reject_unknown: bool,
    /// `interval` of the BootNotification reply, in seconds (default 300).
    pub boot_interval: u32,
    /// `status` of the BootNotification reply (default `Accepted`).
    pub boot_status: String,
    /// First path segment of the endpoint (default `ocpp`).
    pub path_prefix: String,
    /// Where to listen (default `127.0.0.1:0`, a free port).
    pub bind: SocketAddr,
    /// How long a CALL of the central system waits for its answer (default 30 s).
    pub call_timeout: Duration,
    /// Require a client certificate signed by the test CA (security profile 3).
    pub require_client_cert: bool,
    /// Misbehave: never send `Sec-WebSocket-Protocol` back, as a central system without 1.6J
    /// support would.
    pub omit_subprotocol: bool,
}

impl std::fmt::Debug for CsmsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.passwords.keys().collect();
        ids.sort();
        f.debug_struct("CsmsOptions")
            .field("tls", &self.tls.is_some())
            .field("password_ids", &ids)
            .field("reject_unknown", &self.reject_unknown)
            .field("boot_interval", &self.boot_interval)
            .field("boot_status", &self.boot_status)
            .field("path_prefix", &self.path_prefix)
            .field("bind", &self.bind)
            .field("call_timeout", &self.call_timeout)
            .field("require_client_cert", &self.require_client_cert)
            .field("omit_subprotocol", &self.omit_subprotocol)
            .finish()
    }
}

impl Default for CsmsOptions {
    fn default() -> Self {
        CsmsOptions {
            tls: None,
            passwords: HashMap::new(),
            reject_unknown: false,
            boot_interval: 300,
            boot_status: "Accepted".into(),
            path_prefix: "ocpp".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            call_timeout: Duration::from_secs(30),
            require_client_cert: false,
            omit_subprotocol: false,
        }
    }
}

/// Something the central system saw.
#[derive(Clone, Debug, PartialEq)]
pub enum CsmsEvent {
    /// A charger completed the WebSocket handshake.
    Connected {
        /// The charger id from the URL.
        charger: String,
    },
    /// A charger's connection ended.
    Disconnected {
        /// The charger id from the URL.
        charger: String,
    },
    /// A charger sent a CALL (recorded before it is answered).
    Call {
        /// The charger id.
        charger: String,
        /// The OCPP action.
        action: String,
        /// The request payload.
        payload: Value,
    },
    /// An upgrade was refused with an HTTP status (401 wrong password, 404 unknown id).
    Rejected {
        /// The charger id from the URL, or the whole path when it had none.
        charger: String,
        /// The HTTP status sent.
        status: u16,
    },
    /// A charger sent something that is neither a CALL nor the answer to a pending CALL of
    /// the central system (e.g. the CALLERROR answering a garbage frame, or a stray reply).
    Unsolicited {
        /// The charger id.
        charger: String,
        /// The raw text received.
        text: String,
    },
}

impl CsmsEvent {
    /// The charger the event is about.
    pub fn charger(&self) -> &str {
        match self {
            CsmsEvent::Connected { charger }
            | CsmsEvent::Disconnected { charger }
            | CsmsEvent::Call { charger, .. }
            | CsmsEvent::Rejected { charger, .. }
            | CsmsEvent::Unsolicited { charger, .. } => charger,
        }
    }

    /// Whether this is a CALL of `action`.
    pub fn is_call(&self, action: &str) -> bool {
        matches!(self, CsmsEvent::Call { action: a, .. } if a == action)
    }
}

/// An event with the time it was recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedEvent {
    /// When (UTC).
    pub at: DateTime<Utc>,
    /// What.
    pub event: CsmsEvent,
}

/// How the central system answers an action, overriding the built-in reply.
#[derive(Clone, Debug, PartialEq)]
pub enum CsmsReply {
    /// Answer this CALLRESULT payload.
    Result(Value),
    /// Answer a CALLERROR.
    Error(ErrorCode, String),
    /// Do not answer at all (to test message timeouts).
    Ignore,
}

/// Why a CALL of the central system failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CsmsCallError {
    /// The charger is not connected.
    #[error("charger {0} is not connected")]
    NotConnected(String),
    /// No answer within `call_timeout`.
    #[error("no answer within the call timeout")]
    Timeout,
    /// The connection ended before the answer came.
    #[error("the connection ended before the answer")]
    Disconnected,
    /// The charger answered with a CALLERROR.
    #[error("the charger answered {code}: {description}")]
    CallError {
        /// The error code.
        code: ErrorCode,
        /// The description.
        description: String,
    },
}

/// Why the central system could not start.
#[derive(Debug, thiserror::Error)]
pub enum CsmsError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The test PKI could not be turned into a TLS server configuration.
    #[error("TLS server configuration: {0}")]
    Tls(String),
}

enum ConnCmd {
    Call {
        action: String,
        payload: Value,
        reply: oneshot::Sender<Result<Value, CsmsCallError>>,
    },
    Raw(String),
    Stall,
    Close,
}

struct State {
    opts: CsmsOptions,
    log: Mutex<Vec<TimedEvent>>,
    notify: Notify,
    broadcast: broadcast::Sender<TimedEvent>,
    conns: Mutex<HashMap<String, (u64, mpsc::Sender<ConnCmd>)>>,
    overrides: Mutex<HashMap<String, CsmsReply>>,
    frames: Mutex<Vec<(String, String)>>,
    next_conn: AtomicI64,
    next_transaction: AtomicI64,
    tcp_accepts: AtomicUsize,
    /// Basic Auth passwords in effect (starts as `opts.passwords`; see
    /// [`CsmsHandle::set_password`]).
    passwords: Mutex<HashMap<String, String>>,
}

/// Locks a mutex; a poisoned lock (a panicked holder) still holds consistent data here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    fn record(&self, event: CsmsEvent) {
        let timed = TimedEvent {
            at: Utc::now(),
            event,
        };
        lock(&self.log).push(timed.clone());
        let _ = self.broadcast.send(timed);
        self.notify.notify_waiters();
    }
}

struct Inner {
    state: Arc<State>,
    addr: SocketAddr,
    url: String,
    token: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// The loopback central system (see [`Csms::start`]).
#[derive(Debug)]
pub struct Csms;

/// A handle to a running central system. Clones share it; it stops when
/// [`CsmsHandle::shutdown`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct CsmsHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CsmsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsmsHandle")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Csms {
    /// Starts listening and serving. Must be called inside a Tokio runtime.
    pub async fn start(opts: CsmsOptions) -> Result<CsmsHandle, CsmsError> {
        let acceptor = match &opts.tls {
            Some(pki) => Some(tokio_rustls::TlsAcceptor::from(server_config(
                pki,
                opts.require_client_cert,
            )?)),
            None => None,
        };
        let listener = TcpListener::bind(opts.bind)
            .await
            .map_err(|source| CsmsError::Bind {
                addr: opts.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| CsmsError::Bind {
            addr: opts.bind,
            source,
        })?;
        let scheme = if acceptor.is_some() { "wss" } else { "ws" };
        let url = format!("{scheme}://{addr}/{}", opts.path_prefix);
        let (broadcast, _) = broadcast::channel(1024);
        let passwords = Mutex::new(opts.passwords.clone());
        let state = Arc::new(State {
            passwords,
            opts,
            log: Mutex::new(Vec::new()),
            notify: Notify::new(),
            broadcast,
            conns: Mutex::new(HashMap::new()),
            overrides: Mutex::new(HashMap::new()),
            frames: Mutex::new(Vec::new()),
            next_conn: AtomicI64::new(1),
            next_transaction: AtomicI64::new(1),
            tcp_accepts: AtomicUsize::new(0),
        });
        let token = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            acceptor,
            state.clone(),
            token.clone(),
        ));
        Ok(CsmsHandle {
            inner: Arc::new(Inner {
                state,
                addr,
                url,
                token,
            }),
        })
    }
}

impl CsmsHandle {
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The endpoint to give a charge point as its base URL, e.g. `wss://127.0.0.1:4711/ocpp`
    /// (the charger id is appended by the session).
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<CsmsEvent> {
        lock(&self.inner.state.log)
            .iter()
            .map(|t| t.event.clone())
            .collect()
    }

    /// Every event so far with its timestamp, in order.
    pub fn timeline(&self) -> Vec<TimedEvent> {
        lock(&self.inner.state.log).clone()
    }

    /// The number of events so far: pass it to [`CsmsHandle::wait_for_since`] to wait only
    /// for events that come later.
    pub fn mark(&self) -> usize {
        lock(&self.inner.state.log).len()
    }

    /// Live events, for printing a timeline.
    pub fn subscribe(&self) -> broadcast::Receiver<TimedEvent> {
        self.inner.state.broadcast.subscribe()
    }

    /// The first event (already recorded or still to come) that matches `pred`, or `None`
    /// after `timeout`.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&CsmsEvent) -> bool,
        timeout: Duration,
    ) -> Option<CsmsEvent> {
        self.wait_for_since(0, pred, timeout).await
    }

    /// Like [`CsmsHandle::wait_for`], looking only at events from index `since` on (see
    /// [`CsmsHandle::mark`]).
    pub async fn wait_for_since(
        &self,
        since: usize,
        pred: impl Fn(&CsmsEvent) -> bool,
        timeout: Duration,
    ) -> Option<CsmsEvent> {
        let state = &self.inner.state;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut next = since;
        loop {
            let notified = state.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Copy first, then test: `pred` may look at the handle itself (e.g. `events()`).
            let fresh: Vec<CsmsEvent> = {
                let log = lock(&state.log);
                log.iter().skip(next).map(|t| t.event.clone()).collect()
            };
            next += fresh.len();
            if let Some(hit) = fresh.into_iter().find(|e| pred(e)) {
                return Some(hit);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Every text frame received from `charger`, exactly as sent, in order (to assert the exact
    /// JSON on the wire and the order of CALLs and answers).
    pub fn received(&self, charger: &str) -> Vec<String> {
        lock(&self.inner.state.frames)
            .iter()
            .filter(|(c, _)| c == charger)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Overrides the reply to `action` for every charger; `None` restores the built-in one.
    pub fn set_reply(&self, action: &str, reply: Option<CsmsReply>) {
        let mut overrides = lock(&self.inner.state.overrides);
        match reply {
            Some(r) => overrides.insert(action.to_owned(), r),
            None => overrides.remove(action),
        };
    }

    /// Changes the Basic Auth password expected from `charger` from the next connection on, as
    /// a central system does after `ChangeConfiguration AuthorizationKey` (SWP use case A01).
    pub fn set_password(&self, charger: &str, password: &str) {
        lock(&self.inner.state.passwords).insert(charger.to_owned(), password.to_owned());
    }

    /// How many TCP connections were accepted so far, including those that then failed the
    /// TLS or WebSocket handshake (to count a client's attempts).
    pub fn connection_attempts(&self) -> usize {
        self.inner.state.tcp_accepts.load(Ordering::SeqCst)
    }

    /// Whether `charger` is connected now.
    pub fn is_connected(&self, charger: &str) -> bool {
        lock(&self.inner.state.conns).contains_key(charger)
    }

    fn conn(&self, charger: &str) -> Result<mpsc::Sender<ConnCmd>, CsmsCallError> {
        lock(&self.inner.state.conns)
            .get(charger)
            .map(|c| c.1.clone())
            .ok_or_else(|| CsmsCallError::NotConnected(charger.to_owned()))
    }

    /// Sends a CALL to `charger` and waits for the answer (central-system-initiated CALL).
    pub async fn call(
        &self,
        charger: &str,
        action: &str,
        payload: Value,
    ) -> Result<Value, CsmsCallError> {
        let conn = self.conn(charger)?;
        let (reply, answer) = oneshot::channel();
        conn.send(ConnCmd::Call {
            action: action.to_owned(),
            payload,
            reply,
        })
        .await
        .map_err(|_| CsmsCallError::Disconnected)?;
        match tokio::time::timeout(self.inner.state.opts.call_timeout, answer).await {
            Err(_) => Err(CsmsCallError::Timeout),
            Ok(Err(_)) => Err(CsmsCallError::Disconnected),
            Ok(Ok(result)) => result,
        }
    }

    /// Sends `text` as it is in one text frame (to test how the charger copes with garbage).
    pub async fn send_raw(&self, charger: &str, text: &str) -> Result<(), CsmsCallError> {
        self.conn(charger)?
            .send(ConnCmd::Raw(text.to_owned()))
            .await
            .map_err(|_| CsmsCallError::Disconnected)
    }

    /// Stops reading from `charger`'s connection while keeping it open: no more answers, no
    /// pongs. The charger should notice a dead peer.
    pub async fn stall(&self, charger: &str) -> Result<(), CsmsCallError> {
        self.conn(charger)?
            .send(ConnCmd::Stall)
            .await
            .map_err(|_| CsmsCallError::Disconnected)
    }

    /// Closes `charger`'s connection (a central system dropping it).
    pub async fn disconnect(&self, charger: &str) -> Result<(), CsmsCallError> {
        self.conn(charger)?
            .send(ConnCmd::Close)
            .await
            .map_err(|_| CsmsCallError::Disconnected)
    }

    /// Stops listening and closes every connection.
    pub fn shutdown(&self) {
        self.inner.token.cancel();
        // The connection tasks are dropped mid-flight and never reach their own clean-up.
        lock(&self.inner.state.conns).clear();
    }
}

fn server_config(
    pki: &TestPki,
    require_client_cert: bool,
) -> Result<Arc<rustls::ServerConfig>, CsmsError> {
    let tls_err = |e: &dyn std::fmt::Display| CsmsError::Tls(e.to_string());
    let chain = CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&format!("server certificate: {e:?}")))?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())
        .map_err(|e| tls_err(&format!("server key: {e:?}")))?;
    let provider = crate::ocpp::tls::provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(crate::ocpp::tls::VERSIONS)
        .map_err(|e| tls_err(&e))?;
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| tls_err(&format!("CA certificate: {e:?}")))?;
            roots.add(cert).map_err(|e| tls_err(&e))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_err(&e))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| tls_err(&e))?;
    Ok(Arc::new(config))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    token: CancellationToken,
) {
    let served = serve_bounded(
        listener,
        MAX_CONNECTIONS,
        token,
        "csms",
        move |tcp, _peer, stop| {
            let _ = tcp.set_nodelay(true);
            state.tcp_accepts.fetch_add(1, Ordering::SeqCst);
            let state = state.clone();
            let acceptor = acceptor.clone();
            async move {
                // The connection tasks never look at the token themselves: drop them mid-flight.
                tokio::select! {
                    () = serve_tcp(tcp, acceptor, state) => {}
                    () = stop.cancelled() => {}
                }
            }
        },
    )
    .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "csms: accepting failed, no longer listening");
    }
}

async fn serve_tcp(tcp: TcpStream, acceptor: Option<tokio_rustls::TlsAcceptor>, state: Arc<State>) {
    const HANDSHAKE: Duration = Duration::from_secs(10);
    match acceptor {
        None => serve_ws(tcp, state).await,
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => serve_ws(tls, state).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "csms: TLS handshake failed"),
            Err(_) => tracing::debug!("csms: TLS handshake timed out"),
        },
    }
}

/// The result of looking at the upgrade request.
enum Upgrade {
    Accepted { charger: String, agreed: bool },
    Refused { charger: String, status: u16 },
}

fn refuse(status: StatusCode, text: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(text.to_owned()));
    *response.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"chargebridge\""),
        );
    }
    response
}

fn check_upgrade(
    opts: &CsmsOptions,
    passwords: &HashMap<String, String>,
    request: &Request,
) -> Result<(String, bool), (String, u16)> {
    let path = request.uri().path();
    let prefix = format!("/{}/", opts.path_prefix.trim_matches('/'));
    let Some(segment) = path.strip_prefix(&prefix) else {
        return Err((path.to_owned(), 404));
    };
    let charger = match percent_decode_str(segment).decode_utf8() {
        Ok(id) if !id.is_empty() && !segment.contains('/') => id.into_owned(),
        _ => return Err((path.to_owned(), 404)),
    };
    match passwords.get(&charger) {
        Some(expected)
            if basic_auth(request).as_deref() != Some(&format!("{charger}:{expected}")) =>
        {
            return Err((charger, 401));
        }
        None if opts.reject_unknown => return Err((charger, 404)),
        _ => {}
    }
    let offered = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    Ok((charger, offered))
}

/// The decoded `user:password` of a Basic Authorization header.
fn basic_auth(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = value.strip_prefix("Basic ")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

async fn serve_ws<S>(stream: S, state: Arc<State>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut upgrade = None;
    // tungstenite's callback signature returns the whole HTTP response as the error.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| match check_upgrade(
        &state.opts,
        &lock(&state.passwords),
        request,
    ) {
        Err((charger, status)) => {
            upgrade = Some(Upgrade::Refused { charger, status });
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
            Err(refuse(code, "refused"))
        }
        Ok((charger, agreed)) => {
            if agreed && !state.opts.omit_subprotocol {
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(SUBPROTOCOL),
                );
            }
            upgrade = Some(Upgrade::Accepted { charger, agreed });
            Ok(response)
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE));
    let accepted = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)),
    )
    .await;
    let ws = match (accepted, upgrade) {
        (_, Some(Upgrade::Refused { charger, status })) => {
            state.record(CsmsEvent::Rejected { charger, status });
            return;
        }
        (Ok(Ok(ws)), Some(Upgrade::Accepted { charger, agreed })) => {
            if !agreed {
                // OCPP-J §3.1.2 / J-errata: no agreed subprotocol, complete and close at once.
                let mut ws = ws;
                let _ = ws.close(None).await;
                return;
            }
            (ws, charger)
        }
        _ => return,
    };
    let (ws, charger) = ws;
    let serial = state.next_conn.fetch_add(1, Ordering::SeqCst) as u64;
    let (tx, rx) = mpsc::channel(16);
    // A reconnect replaces the older connection of the same id; dropping its sender ends it.
    lock(&state.conns).insert(charger.clone(), (serial, tx));
    state.record(CsmsEvent::Connected {
        charger: charger.clone(),
    });
    connection(ws, &charger, rx, &state).await;
    {
        let mut conns = lock(&state.conns);
        if conns.get(&charger).is_some_and(|c| c.0 == serial) {
            conns.remove(&charger);
        }
    }
    state.record(CsmsEvent::Disconnected { charger });
}

async fn connection<S>(
    mut ws: WebSocketStream<S>,
    charger: &str,
    mut rx: mpsc::Receiver<ConnCmd>,
    state: &State,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ids = MessageIds::with_prefix("csms");
    let mut pending: HashMap<String, oneshot::Sender<Result<Value, CsmsCallError>>> =
        HashMap::new();
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None | Some(ConnCmd::Close) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return;
                }
                Some(ConnCmd::Stall) => {
                    // Hold the socket without reading it until told otherwise.
                    while let Some(cmd) = rx.recv().await {
                        if matches!(cmd, ConnCmd::Close) {
                            break;
                        }
                    }
                    return;
                }
                Some(ConnCmd::Raw(text)) => {
                    if ws.send(Message::text(text)).await.is_err() {
                        return;
                    }
                }
                Some(ConnCmd::Call { action, payload, reply }) => {
                    let id = ids.next_id();
                    let frame = Frame::Call { id: id.clone(), action, payload };
                    if ws.send(Message::text(frame.to_json())).await.is_err() {
                        let _ = reply.send(Err(CsmsCallError::Disconnected));
                        return;
                    }
                    pending.insert(id, reply);
                }
            },
            msg = ws.next() => {
                let text = match msg {
                    None | Some(Err(_)) => return,
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => continue,
                };
                lock(&state.frames).push((charger.to_owned(), text.clone()));
                let answer = match Frame::parse(&text) {
                    Ok(Frame::Call { id, action, payload }) => {
                        state.record(CsmsEvent::Call {
                            charger: charger.to_owned(),
                            action: action.clone(),
                            payload: payload.clone(),
                        });
                        answer(state, id, &action, &payload)
                    }
                    Ok(Frame::CallResult { id, payload }) => match pending.remove(&id) {
                        Some(reply) => {
                            let _ = reply.send(Ok(payload));
                            None
                        }
                        None => {
                            state.record(CsmsEvent::Unsolicited { charger: charger.to_owned(), text });
                            None
                        }
                    },
                    Ok(Frame::CallError { id, code, description, .. }) => match pending.remove(&id) {
                        Some(reply) => {
                            let _ = reply.send(Err(CsmsCallError::CallError { code, description }));
                            None
                        }
                        None => {
                            state.record(CsmsEvent::Unsolicited { charger: charger.to_owned(), text });
                            None
                        }
                    },
                    Err(e) => {
                        state.record(CsmsEvent::Unsolicited { charger: charger.to_owned(), text });
                        e.reply()
                    }
                };
                if let Some(frame) = answer
                    && ws.send(Message::text(frame.to_json())).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// The UTC time as OCPP wants it: RFC 3339 with milliseconds and `Z` (ocpp16-facts §2.6).
fn now_ocpp() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The reply to a charger's CALL: an override if one is set, else the built-in one.
fn answer(state: &State, id: String, action: &str, payload: &Value) -> Option<Frame> {
    let reply = lock(&state.overrides).get(action).cloned();
    let reply = reply.unwrap_or_else(|| builtin_reply(state, action, payload));
    match reply {
        CsmsReply::Result(payload) => Some(Frame::CallResult { id, payload }),
        CsmsReply::Error(code, description) => Some(Frame::CallError {
            id,
            code,
            description,
            details: json!({}),
        }),
        CsmsReply::Ignore => None,
    }
}

fn builtin_reply(state: &State, action: &str, payload: &Value) -> CsmsReply {
    let accepted = json!({ "status": "Accepted" });
    CsmsReply::Result(match action {
        "BootNotification" => json!({
            "status": state.opts.boot_status,
            "currentTime": now_ocpp(),
            "interval": state.opts.boot_interval,
        }),
        "Heartbeat" => json!({ "currentTime": now_ocpp() }),
        "Authorize" => json!({ "idTagInfo": accepted }),
        "StartTransaction" => json!({
            "idTagInfo": accepted,
            "transactionId": state.next_transaction.fetch_add(1, Ordering::SeqCst),
        }),
        "StopTransaction" => {
            if payload.get("idTag").is_some() {
                json!({ "idTagInfo": accepted })
            } else {
                json!({})
            }
        }
        "DataTransfer" => accepted,
        "StatusNotification"
        | "MeterValues"
        | "DiagnosticsStatusNotification"
        | "FirmwareStatusNotification" => json!({}),
        other => {
            return CsmsReply::Error(
                ErrorCode::NotImplemented,
                format!("the test central system does not know {other}"),
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            opts: CsmsOptions::default(),
            log: Mutex::new(Vec::new()),
            notify: Notify::new(),
            broadcast: broadcast::channel(4).0,
            conns: Mutex::new(HashMap::new()),
            overrides: Mutex::new(HashMap::new()),
            frames: Mutex::new(Vec::new()),
            next_conn: AtomicI64::new(1),
            next_transaction: AtomicI64::new(1),
            tcp_accepts: AtomicUsize::new(0),
            passwords: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn boot_notification_is_accepted_with_a_utc_millisecond_timestamp() {
        let s = state();
        let Some(Frame::CallResult { payload, .. }) =
            answer(&s, "1".into(), "BootNotification", &json!({}))
        else {
            panic!("no result")
        };
        assert_eq!(payload["status"], "Accepted");
        assert_eq!(payload["interval"], 300);
        let t = payload["currentTime"].as_str().unwrap();
        assert_eq!(t.len(), "2024-01-01T00:00:00.000Z".len(), "{t}");
        assert!(t.ends_with('Z'));
        assert!(DateTime::parse_from_rfc3339(t).is_ok());
    }

    #[test]
    fn options_debug_never_shows_passwords() {
        let opts = CsmsOptions {
            passwords: HashMap::from([("CB-1".to_owned(), "hunter2-secret".to_owned())]),
            ..CsmsOptions::default()
        };
        let shown = format!("{opts:?}");
        assert!(shown.contains("CB-1"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn transaction_ids_increase() {
        let s = state();
        let id = |s: &State| match answer(s, "1".into(), "StartTransaction", &json!({})) {
            Some(Frame::CallResult { payload, .. }) => payload["transactionId"].as_i64(),
            _ => None,
        };
        let a = id(&s).unwrap();
        let b = id(&s).unwrap();
        assert!(b > a);
    }

    #[test]
    fn unknown_actions_are_not_implemented_and_overrides_win() {
        let s = state();
        assert!(matches!(
            answer(&s, "1".into(), "Foo", &json!({})),
            Some(Frame::CallError {
                code: ErrorCode::NotImplemented,
                ..
            })
        ));
        lock(&s.overrides).insert("Heartbeat".into(), CsmsReply::Ignore);
        assert_eq!(answer(&s, "1".into(), "Heartbeat", &json!({})), None);
    }
}
