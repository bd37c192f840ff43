//! One WebSocket session per charge point: connect, authenticate, keep alive, reconnect, and
//! carry CALLs both ways.
//!
//! A single task owns the socket (house rule: one task per resource). Callers reach it through a
//! cloneable [`SessionHandle`]; inbound CALLs and connection changes come out of the event
//! receiver returned by [`spawn_session`].
//!
//! Rules (OCPP-J 1.6 and behaviour.md §Connection):
//! - URL = `base_url` + `/` + the percent-encoded charger id (OCPP-J §3.1.1), subprotocol
//!   `ocpp1.6` requested and required in the answer; Basic Auth `id:password` when a password
//!   is set (SWP §3.1; never logged).
//! - At most one outgoing CALL in flight (OCPP-J §4.1.1); a new message id per send; replies
//!   with unknown ids are ignored (the late answer to a CALL that timed out must not be taken
//!   for the answer to the next one, ocpp-go #294).
//! - Inbound CALLs are answered when the charger answers; the read loop never waits for that,
//!   so the charger may issue its own CALLs before or after answering (answer first, act after).
//! - WebSocket ping every `ping_interval`; nothing received within `ping_interval + 10 s`
//!   drops the connection (ocpp-go CSMSs drop silent sockets after 60 s, ocpp16-facts §2.4).
//! - Reconnect with exponential back-off and jitter ([`super::backoff`]); refused upgrades
//!   (401, 404, TLS) back off the same way.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::backoff::Backoff;
use super::handshake::{self, ConnectError, Ws};
use super::rpc::{ErrorCode, Frame, MessageIds};

pub use super::handshake::{MAX_MESSAGE_SIZE, SUBPROTOCOL};

/// How long the peer may stay silent beyond one ping interval before the connection is
/// considered dead.
pub const PONG_GRACE: Duration = Duration::from_secs(10);

/// A connection that stayed up this long resets the back-off: the next outage starts again
/// with short delays.
pub const STABLE_CONNECTION: Duration = Duration::from_secs(30);

/// The longest ping interval or message timeout used; longer values (a central system may set
/// `WebSocketPingInterval` to anything) are cut to this, so time arithmetic cannot overflow.
pub const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

fn bounded(d: Duration) -> Duration {
    d.min(MAX_INTERVAL)
}

/// The reason given with [`SessionEvent::Disconnected`] after [`SessionHandle::reconnect`].
pub const RECONNECT_REQUESTED: &str = "reconnect requested";

/// The most inbound CALLs awaiting the charger's answer. OCPP-J allows one per direction;
/// this only bounds memory against a peer that ignores that rule.
const MAX_INBOUND_IN_FLIGHT: usize = 8;

/// Path-segment encoding of the charger id: everything but RFC 3986 unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How a session connects. `Debug` never shows the password.
#[derive(Clone)]
pub struct SessionConfig {
    /// The central system's endpoint, `ws://` or `wss://`, with or without a trailing `/`.
    pub base_url: String,
    /// The charge point identity, appended as one percent-encoded path segment.
    pub charger_id: String,
    /// Basic Auth password (security profiles 1 and 2); `None` sends no Authorization header.
    pub password: Option<String>,
    /// TLS configuration for `wss://`; `None` uses the operating system's trust store.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// WebSocket ping interval (`WebSocketPingInterval`, default 30 s); zero turns pings off.
    pub ping_interval: Duration,
    /// How long an outgoing CALL may wait for its answer (`MessageTimeout`, default 30 s).
    pub message_timeout: Duration,
    /// The shortest reconnect delay (default 1 s).
    pub backoff_min: Duration,
    /// The longest reconnect delay (default 5 min).
    pub backoff_max: Duration,
}

impl SessionConfig {
    /// A configuration with the defaults of behaviour.md: 30 s ping and message timeout, back-off
    /// 1 s to 5 min, no password, the system trust store.
    pub fn new(base_url: impl Into<String>, charger_id: impl Into<String>) -> Self {
        SessionConfig {
            base_url: base_url.into(),
            charger_id: charger_id.into(),
            password: None,
            tls: None,
            ping_interval: Duration::from_secs(30),
            message_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }

    /// The URL connected to: `base_url` + `/` + the percent-encoded charger id.
    pub fn url(&self) -> String {
        format!(
            "{}/{}",
            self.base_url.trim_end_matches('/'),
            utf8_percent_encode(&self.charger_id, SEGMENT)
        )
    }
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("base_url", &self.base_url)
            .field("charger_id", &self.charger_id)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .field("ping_interval", &self.ping_interval)
            .field("message_timeout", &self.message_timeout)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .finish()
    }
}

/// The charger's answer to an inbound CALL: the CALLRESULT payload, or a CALLERROR code and
/// description.
pub type CallAnswer = Result<Value, (ErrorCode, String)>;

/// What the session reports to its owner.
#[derive(Debug)]
pub enum SessionEvent {
    /// The WebSocket is up; CALLs can be sent.
    Connected,
    /// The WebSocket went down (after a [`SessionEvent::Connected`]).
    Disconnected {
        /// Why, for logs and the status page.
        reason: String,
    },
    /// The central system sent a CALL. Send the answer through `reply`; dropping `reply`
    /// answers `InternalError`.
    Call {
        /// The OCPP action.
        action: String,
        /// The request payload (a JSON object).
        payload: Value,
        /// Where the answer goes.
        reply: oneshot::Sender<CallAnswer>,
    },
}

/// Why an outgoing CALL did not get a CALLRESULT.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CallFailure {
    /// There was no connection when the CALL was made; nothing was sent.
    #[error("not connected to the central system")]
    NotConnected,
    /// No answer within the message timeout.
    #[error("no answer from the central system within the message timeout")]
    Timeout,
    /// The connection was lost while the CALL was outstanding; it may or may not have arrived.
    #[error("the connection was lost before the central system answered")]
    Disconnected,
    /// The central system answered with a CALLERROR.
    #[error("the central system answered {code}: {description}")]
    CallError {
        /// The error code.
        code: ErrorCode,
        /// The error description.
        description: String,
        /// The error details.
        details: Value,
    },
}

#[derive(Clone)]
struct Settings {
    ping_interval: Duration,
    message_timeout: Duration,
    password: Option<String>,
}

#[derive(Debug)]
struct Shared {
    connected: AtomicBool,
    settings: watch::Sender<Settings>,
    reconnect: Notify,
    status: std::sync::Mutex<SessionStatus>,
}

impl Shared {
    fn update_status(&self, f: impl FnOnce(&mut SessionStatus)) {
        // A poisoned lock only means a panic elsewhere; the counters are still usable.
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut status);
    }
}

/// What the session has been through, for the status page and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStatus {
    /// Whether the WebSocket is up.
    pub connected: bool,
    /// Connection attempts so far (successful or not).
    pub attempts: u64,
    /// Connections established so far; more than one means reconnects.
    pub connections: u64,
    /// Why the last attempt failed or the last connection ended, e.g. `the central system
    /// refused the upgrade with HTTP 401 (check the charger's password)`. Never holds secrets.
    pub last_error: Option<String>,
    /// When the current connection was established, or the last one ended.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("ping_interval", &self.ping_interval)
            .field("message_timeout", &self.message_timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct OutgoingCall {
    action: String,
    payload: Value,
    reply: oneshot::Sender<Result<Value, CallFailure>>,
}

/// A handle to one charge point's session. Cheap to clone; all clones share the session.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    calls: mpsc::Sender<OutgoingCall>,
    shared: Arc<Shared>,
}

impl SessionHandle {
    /// Sends a CALL and waits for its answer. Fails at once with
    /// [`CallFailure::NotConnected`] while offline. CALLs from several clones are sent one after
    /// the other, each waiting for the previous answer (one CALL in flight, OCPP-J §4.1.1).
    pub async fn call(&self, action: &str, payload: Value) -> Result<Value, CallFailure> {
        if !self.is_connected() {
            return Err(CallFailure::NotConnected);
        }
        let (reply, answer) = oneshot::channel();
        let call = OutgoingCall {
            action: action.to_owned(),
            payload,
            reply,
        };
        self.calls
            .send(call)
            .await
            .map_err(|_| CallFailure::NotConnected)?;
        // The session task always answers; a dropped sender means it ended (shutdown).
        answer.await.unwrap_or(Err(CallFailure::NotConnected))
    }

    /// Whether the WebSocket is up right now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// A snapshot of the connection history (attempts, connections, last error).
    pub fn status(&self) -> SessionStatus {
        self.shared
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Changes the ping interval (`WebSocketPingInterval`) at once; zero turns pings off.
    pub fn set_ping_interval(&self, d: Duration) {
        self.shared
            .settings
            .send_modify(|s| s.ping_interval = bounded(d));
    }

    /// Changes the message timeout (`MessageTimeout`) for CALLs sent from now on.
    pub fn set_message_timeout(&self, d: Duration) {
        self.shared
            .settings
            .send_modify(|s| s.message_timeout = bounded(d));
    }

    /// Changes the Basic Auth password used from the next connection on (`AuthorizationKey`).
    /// Call [`SessionHandle::reconnect`] to use it at once.
    pub fn set_password(&self, password: Option<String>) {
        self.shared.settings.send_modify(|s| s.password = password);
    }

    /// Closes the current connection (if any) and connects again after a short random delay,
    /// e.g. after a new `AuthorizationKey` or a Reset.
    pub fn reconnect(&self) {
        self.shared.reconnect.notify_one();
    }
}

/// Starts the session task of one charge point. Must be called inside a Tokio runtime. The
/// task runs until `shutdown` is cancelled; it then closes the WebSocket.
pub fn spawn_session(
    cfg: SessionConfig,
    shutdown: CancellationToken,
) -> (SessionHandle, mpsc::Receiver<SessionEvent>) {
    let (call_tx, call_rx) = mpsc::channel(16);
    let (event_tx, event_rx) = mpsc::channel(64);
    let (settings, _) = watch::channel(Settings {
        ping_interval: bounded(cfg.ping_interval),
        message_timeout: bounded(cfg.message_timeout),
        password: cfg.password.clone(),
    });
    let shared = Arc::new(Shared {
        connected: AtomicBool::new(false),
        settings,
        reconnect: Notify::new(),
        status: std::sync::Mutex::new(SessionStatus::default()),
    });
    let span = tracing::info_span!("ocpp", charger = %cfg.charger_id);
    let task = Session {
        cfg,
        shared: shared.clone(),
        calls: call_rx,
        events: event_tx,
        shutdown,
        warned_plain: false,
    };
    tokio::spawn(task.run().instrument(span));
    (
        SessionHandle {
            calls: call_tx,
            shared,
        },
        event_rx,
    )
}

type InboundAnswer = Pin<Box<dyn Future<Output = (String, CallAnswer)> + Send>>;

struct Session {
    cfg: SessionConfig,
    shared: Arc<Shared>,
    calls: mpsc::Receiver<OutgoingCall>,
    events: mpsc::Sender<SessionEvent>,
    shutdown: CancellationToken,
    warned_plain: bool,
}

impl Session {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.cfg.backoff_min, self.cfg.backoff_max);
        let mut default_tls: Option<Arc<rustls::ClientConfig>> = None;
        loop {
            let delay = backoff.next_delay(rand::random());
            tracing::debug!(?delay, "waiting before connecting");
            if !self.idle(delay).await {
                break;
            }
            self.shared.update_status(|s| s.attempts += 1);
            if !self.warned_plain
                && !is_secure(&self.cfg.url())
                && self.shared.settings.borrow().password.is_some()
            {
                // Security profile 1: only on a trusted network (SWP §3.1); say so once.
                tracing::warn!("sending the Basic Auth password over unencrypted ws://");
                self.warned_plain = true;
            }
            let attempt = tokio::select! {
                r = self.connect(&mut default_tls) => r,
                () = self.shutdown.cancelled() => break,
            };
            let ws = match attempt {
                Ok(ws) => ws,
                Err(e) => {
                    tracing::warn!(error = %e, attempt = backoff.attempts(), "connecting to the central system failed");
                    self.shared
                        .update_status(|s| s.last_error = Some(e.to_string()));
                    continue;
                }
            };
            tracing::info!(url = %self.cfg.url(), "connected to the central system");
            self.shared.connected.store(true, Ordering::SeqCst);
            self.shared.update_status(|s| {
                s.connected = true;
                s.connections += 1;
                s.since = Some(chrono::Utc::now());
            });
            self.emit(SessionEvent::Connected).await;
            let since = Instant::now();
            let reason = self.connection(ws).await;
            self.shared.connected.store(false, Ordering::SeqCst);
            self.shared.update_status(|s| {
                s.connected = false;
                s.last_error = Some(reason.clone());
                s.since = Some(chrono::Utc::now());
            });
            tracing::info!(%reason, "disconnected from the central system");
            self.emit(SessionEvent::Disconnected {
                reason: reason.clone(),
            })
            .await;
            // A connection that stayed up, or one closed on request, starts the back-off over.
            if since.elapsed() >= STABLE_CONNECTION || reason == RECONNECT_REQUESTED {
                backoff.reset();
            }
            if self.shutdown.is_cancelled() {
                break;
            }
        }
        self.shared.connected.store(false, Ordering::SeqCst);
    }

    /// Waits `delay` while answering CALLs with `NotConnected`; a reconnect request cuts the
    /// wait short. Returns false on shutdown.
    async fn idle(&mut self, delay: Duration) -> bool {
        let wake = tokio::time::sleep(delay);
        tokio::pin!(wake);
        let mut calls_open = true;
        loop {
            tokio::select! {
                () = &mut wake => return true,
                () = self.shutdown.cancelled() => return false,
                () = self.shared.reconnect.notified() => return true,
                call = self.calls.recv(), if calls_open => match call {
                    Some(call) => { let _ = call.reply.send(Err(CallFailure::NotConnected)); }
                    // Every handle is gone; keep going for the events.
                    None => calls_open = false,
                },
            }
        }
    }

    async fn emit(&self, event: SessionEvent) {
        tokio::select! {
            // A closed receiver means nobody listens; that is not an error of the session.
            _ = self.events.send(event) => {}
            () = self.shutdown.cancelled() => {}
        }
    }

    async fn connect(
        &self,
        default_tls: &mut Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Ws, ConnectError> {
        let (password, timeout) = {
            let settings = self.shared.settings.borrow();
            (settings.password.clone(), settings.message_timeout)
        };
        let url = self.cfg.url();
        let tls = if is_secure(&url) {
            Some(match (&self.cfg.tls, &*default_tls) {
                (Some(tls), _) | (None, Some(tls)) => tls.clone(),
                (None, None) => {
                    let tls = super::tls::client_config(None, None)?;
                    *default_tls = Some(tls.clone());
                    tls
                }
            })
        } else {
            None
        };
        // The handshake is bounded like a CALL: a peer that accepts TCP and then says nothing
        // must not stall the session.
        handshake::open(
            &url,
            &self.cfg.charger_id,
            password.as_deref(),
            tls,
            timeout.max(Duration::from_secs(1)),
        )
        .await
    }

    /// Serves one connection until it ends; returns why it ended.
    async fn connection(&mut self, mut ws: Ws) -> String {
        let mut settings_rx = self.shared.settings.subscribe();
        let mut settings = settings_rx.borrow_and_update().clone();
        let mut ids = MessageIds::new();
        let mut pending: Option<(String, Instant, OutgoingCall)> = None;
        let mut answers: FuturesUnordered<InboundAnswer> = FuturesUnordered::new();
        let mut calls_open = true;
        let mut last_rx = Instant::now();
        let mut next_ping = Instant::now() + settings.ping_interval;

        let reason = loop {
            let pinging = !settings.ping_interval.is_zero();
            let pending_deadline = pending.as_ref().map(|p| p.1);
            let dead_at = last_rx + settings.ping_interval + PONG_GRACE;
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    flush_answers(&mut ws, &mut answers, settings.message_timeout).await;
                    break "shutting down".to_owned();
                }
                () = self.shared.reconnect.notified() => {
                    // Answer first: the charger replies (e.g. to a ChangeConfiguration of
                    // AuthorizationKey) before it asks for the reconnect, and that reply must
                    // still go out on this connection.
                    flush_answers(&mut ws, &mut answers, settings.message_timeout).await;
                    break RECONNECT_REQUESTED.to_owned();
                }
                msg = ws.next() => {
                    let msg = match msg {
                        None => break "the connection was closed".to_owned(),
                        Some(Err(e)) => break format!("read error: {e}"),
                        Some(Ok(msg)) => msg,
                    };
                    last_rx = Instant::now();
                    let text = match msg {
                        Message::Text(t) => t.to_string(),
                        // OCPP-J uses text frames; be lenient with UTF-8 sent as binary.
                        Message::Binary(b) => match String::from_utf8(b.to_vec()) {
                            Ok(t) => t,
                            Err(_) => {
                                tracing::warn!("dropping a binary frame that is not UTF-8");
                                continue;
                            }
                        },
                        Message::Close(frame) => {
                            break match frame {
                                Some(f) => format!("closed by the central system ({} {})", u16::from(f.code), f.reason),
                                None => "closed by the central system".to_owned(),
                            };
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                    };
                    if let Some(reply) = self.inbound(&text, &mut pending, &mut answers)
                        && let Err(e) = send(&mut ws, reply, settings.message_timeout).await
                    {
                        break e;
                    }
                }
                Some((id, answer)) = answers.next(), if !answers.is_empty() => {
                    if let Err(e) = send(&mut ws, answer_frame(id, answer), settings.message_timeout).await {
                        break e;
                    }
                }
                call = self.calls.recv(), if pending.is_none() && calls_open => {
                    let Some(call) = call else {
                        calls_open = false;
                        continue;
                    };
                    if call.reply.is_closed() {
                        continue; // the caller gave up before it was sent
                    }
                    // Answer first, act after: an answer the charger gave before making this
                    // CALL (RemoteStartTransaction Accepted, then StartTransaction) goes first.
                    flush_answers(&mut ws, &mut answers, settings.message_timeout).await;
                    let id = ids.next_id();
                    let frame = Frame::Call { id: id.clone(), action: call.action.clone(), payload: call.payload.clone() };
                    tracing::debug!(action = %call.action, %id, "sending CALL");
                    if let Err(e) = send(&mut ws, frame.to_json(), settings.message_timeout).await {
                        let _ = call.reply.send(Err(CallFailure::Disconnected));
                        break e;
                    }
                    // Read the timeout now: a change may still wait in the settings branch.
                    let timeout = self.shared.settings.borrow().message_timeout;
                    pending = Some((id, Instant::now() + timeout, call));
                }
                () = sleep_until_opt(pending_deadline) => {
                    if let Some((id, _, call)) = pending.take() {
                        tracing::warn!(action = %call.action, %id, "no answer within the message timeout");
                        let _ = call.reply.send(Err(CallFailure::Timeout));
                    }
                }
                () = tokio::time::sleep_until(next_ping), if pinging => {
                    next_ping = Instant::now() + settings.ping_interval;
                    let ping = tokio::time::timeout(settings.message_timeout, ws.send(Message::Ping(Default::default())));
                    match ping.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break format!("write error: {e}"),
                        Err(_) => break "write timed out".to_owned(),
                    }
                }
                () = tokio::time::sleep_until(dead_at), if pinging => {
                    break format!("nothing received for {:?} (no pong)", settings.ping_interval + PONG_GRACE);
                }
                changed = settings_rx.changed() => {
                    if changed.is_ok() {
                        let old = settings.ping_interval;
                        settings = settings_rx.borrow_and_update().clone();
                        if settings.ping_interval != old {
                            // A new interval starts counting now, also for the liveness check.
                            next_ping = Instant::now() + settings.ping_interval;
                            last_rx = Instant::now();
                        }
                    }
                }
            }
        };
        if let Some((_, _, call)) = pending.take() {
            let _ = call.reply.send(Err(CallFailure::Disconnected));
        }
        // Close politely (or complete the peer's close handshake); bounded, because the peer
        // may be dead or no longer reading.
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        reason
    }

    /// Handles one inbound text frame; returns a frame to send back at once, if any.
    fn inbound(
        &self,
        text: &str,
        pending: &mut Option<(String, Instant, OutgoingCall)>,
        answers: &mut FuturesUnordered<InboundAnswer>,
    ) -> Option<String> {
        let frame = match Frame::parse(text) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(code = %e.code, error = %e.description, answered = e.reply_id.is_some(), "unreadable frame from the central system");
                return e.reply().map(|f| f.to_json());
            }
        };
        match frame {
            Frame::Call {
                id,
                action,
                payload,
            } => {
                tracing::debug!(%action, %id, "received CALL");
                if answers.len() >= MAX_INBOUND_IN_FLIGHT {
                    return Some(error_reply(
                        id,
                        ErrorCode::InternalError,
                        "too many CALLs in flight",
                    ));
                }
                let (reply, answer) = oneshot::channel();
                let event = SessionEvent::Call {
                    action,
                    payload,
                    reply,
                };
                if let Err(e) = self.events.try_send(event) {
                    let why = match e {
                        mpsc::error::TrySendError::Full(_) => "the charge point is busy",
                        mpsc::error::TrySendError::Closed(_) => "the charge point is not running",
                    };
                    return Some(error_reply(id, ErrorCode::InternalError, why));
                }
                answers.push(Box::pin(async move {
                    let answer = answer.await.unwrap_or_else(|_| {
                        Err((
                            ErrorCode::InternalError,
                            "no answer from the charge point".into(),
                        ))
                    });
                    (id, answer)
                }));
                None
            }
            Frame::CallResult { id, payload } => {
                match take_pending(pending, &id) {
                    Some(call) => {
                        let _ = call.reply.send(Ok(payload));
                    }
                    None => tracing::debug!(%id, "ignoring a CALLRESULT with an unknown id"),
                }
                None
            }
            Frame::CallError {
                id,
                code,
                description,
                details,
            } => {
                match take_pending(pending, &id) {
                    Some(call) => {
                        let _ = call.reply.send(Err(CallFailure::CallError {
                            code,
                            description,
                            details,
                        }));
                    }
                    None => tracing::debug!(%id, "ignoring a CALLERROR with an unknown id"),
                }
                None
            }
        }
    }
}

fn take_pending(
    pending: &mut Option<(String, Instant, OutgoingCall)>,
    id: &str,
) -> Option<OutgoingCall> {
    if pending.as_ref().is_some_and(|p| p.0 == id) {
        pending.take().map(|p| p.2)
    } else {
        None
    }
}

fn is_secure(url: &str) -> bool {
    url.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("wss:"))
}

fn answer_frame(id: String, answer: CallAnswer) -> String {
    match answer {
        Ok(payload) => Frame::CallResult { id, payload },
        Err((code, description)) => Frame::CallError {
            id,
            code,
            description,
            details: Value::Object(Default::default()),
        },
    }
    .to_json()
}

/// Sends the answers the charger has already given, before the connection is closed.
async fn flush_answers(
    ws: &mut Ws,
    answers: &mut FuturesUnordered<InboundAnswer>,
    limit: Duration,
) {
    while let Some(Some((id, answer))) = answers.next().now_or_never() {
        if send(ws, answer_frame(id, answer), limit).await.is_err() {
            return;
        }
    }
}

fn error_reply(id: String, code: ErrorCode, description: &str) -> String {
    Frame::CallError {
        id,
        code,
        description: description.to_owned(),
        details: Value::Object(Default::default()),
    }
    .to_json()
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Sends one text frame, bounded by `limit` (a peer that stops reading must not stall us).
async fn send(ws: &mut Ws, text: String, limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, ws.send(Message::text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write error: {e}")),
        Err(_) => Err("write timed out".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_charger_id_is_one_percent_encoded_path_segment() {
        let cfg = SessionConfig::new("wss://csms.example.com/ocppj", "RDAM 123");
        assert_eq!(cfg.url(), "wss://csms.example.com/ocppj/RDAM%20123");
        let cfg = SessionConfig::new("wss://csms.example.com/ocppj/", "a/b?c#d");
        assert_eq!(cfg.url(), "wss://csms.example.com/ocppj/a%2Fb%3Fc%23d");
        let cfg = SessionConfig::new("ws://h/", "CB-0001_x.y~z");
        assert_eq!(cfg.url(), "ws://h/CB-0001_x.y~z");
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let mut cfg = SessionConfig::new("wss://h/ocpp", "CB-1");
        cfg.password = Some("s3cret-password-123".into());
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
