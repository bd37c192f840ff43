//! The bus task: the only owner of one connection, serving requests one at a time.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_modbus::client::{Client as _, Context};
use tokio_modbus::prelude::SlaveContext as _;
use tokio_modbus::{Request, Response, Slave};
use tokio_util::sync::CancellationToken;

use crate::devicemap::{Table, WriteFunction};

use super::endpoint::{self, Endpoint};
use super::error::BusError;
use super::health::{Admission, UnitHealth};
use super::stats::BusStats;
use super::timing::DeviceTiming;
use super::warn_limit::WarnLimiter;

/// Requests waiting for a bus; senders wait when it is full (back-pressure on the chargers).
const QUEUE_DEPTH: usize = 64;
/// A TCP connect gets at least this long, even for devices with a short reply timeout.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// After a failed connect, requests fail at once for this long (doubling up to
/// [`MAX_RECONNECT_BACKOFF`]) so a dead endpoint is not hammered.
const FIRST_RECONNECT_BACKOFF: Duration = Duration::from_millis(250);
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(5);
/// Guard against absurd request delays (an `Instant` overflow would panic); validated maps
/// stay far below.
const MAX_REQUEST_DELAY: Duration = Duration::from_secs(3600);

// Quantity limits of the Modbus Application Protocol v1.1b3 §6.1–6.4, 6.11, 6.12.
const MAX_READ_REGISTERS: u16 = 125;
const MAX_READ_BITS: u16 = 2000;
const MAX_WRITE_REGISTERS: usize = 123;
const MAX_WRITE_COILS: usize = 1968;

// Exception codes a device answers for requests it cannot serve (§7).
const ILLEGAL_FUNCTION: u8 = 0x01;
const ILLEGAL_DATA_ADDRESS: u8 = 0x02;
const ILLEGAL_DATA_VALUE: u8 = 0x03;

/// A cheap clonable handle to one bus task.
#[derive(Clone, Debug)]
pub struct BusHandle {
    name: Arc<str>,
    tx: mpsc::Sender<Job>,
    stats: Arc<Mutex<BusStats>>,
}

impl BusHandle {
    /// Read `count` registers (or bits) of `table` from `unit`, starting at wire address
    /// `address` (0-based). Coils and discrete inputs come back as one `u16` (0 or 1) per
    /// address.
    ///
    /// Requests a device must reject (a count of 0, more than 125 registers or 2000 bits, or a
    /// range past address 65535) are answered here with the exception the device would send
    /// (0x03 or 0x02), without bus traffic.
    pub async fn read(
        &self,
        unit: u8,
        timing: &DeviceTiming,
        table: Table,
        address: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError> {
        self.submit(
            unit,
            timing,
            Op::Read {
                table,
                address,
                count,
            },
        )
        .await
    }

    /// Write `words` to `table` of `unit` starting at wire address `address`.
    ///
    /// Holding registers: FC 6 when `function` is [`WriteFunction::Single`] and there is one
    /// word, FC 16 otherwise. Coils (each word non-zero = on): FC 5 / FC 15 by the same rule.
    /// Input registers and discrete inputs are read-only: exception 0x01 without bus traffic;
    /// an empty write or one longer than 123 registers / 1968 coils gets 0x03.
    pub async fn write(
        &self,
        unit: u8,
        timing: &DeviceTiming,
        table: Table,
        address: u16,
        words: &[u16],
        function: WriteFunction,
    ) -> Result<(), BusError> {
        self.submit(
            unit,
            timing,
            Op::Write {
                table,
                address,
                words: words.to_vec(),
                function,
            },
        )
        .await
        .map(|_| ())
    }

    /// The bus's name (from the configuration), for logs and metrics labels.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A snapshot of the bus's counters.
    #[must_use]
    pub fn stats(&self) -> BusStats {
        lock(&self.stats).clone()
    }

    async fn submit(&self, unit: u8, timing: &DeviceTiming, op: Op) -> Result<Vec<u16>, BusError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            unit,
            timing: *timing,
            op,
            reply,
        };
        self.tx.send(job).await.map_err(|_| BusError::Closed)?;
        answer.await.unwrap_or(Err(BusError::Closed))
    }
}

/// Start the task that owns `endpoint` and return a handle to it. The connection is opened
/// lazily by the first request. The task ends when `shutdown` is cancelled (requests then
/// fail with [`BusError::Closed`]) or when every handle is dropped.
///
/// Must be called within a Tokio runtime; without one the returned handle's requests fail
/// with [`BusError::Closed`].
#[must_use]
pub fn spawn_bus(name: String, endpoint: Endpoint, shutdown: CancellationToken) -> BusHandle {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let stats = Arc::new(Mutex::new(BusStats::default()));
    let name: Arc<str> = name.into();
    let task = BusTask {
        name: name.clone(),
        endpoint,
        context: None,
        last_frame_end: None,
        reconnect: Reconnect::default(),
        health: UnitHealth::default(),
        warnings: WarnLimiter::default(),
        stats: stats.clone(),
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(task.run(rx, shutdown));
        }
        Err(err) => {
            tracing::error!(bus = %name, %err, "cannot start the bus task outside a Tokio runtime");
        }
    }
    BusHandle { name, tx, stats }
}

/// One request, with the channel its result goes back on.
#[derive(Debug)]
struct Job {
    unit: u8,
    timing: DeviceTiming,
    op: Op,
    reply: oneshot::Sender<Result<Vec<u16>, BusError>>,
}

#[derive(Clone, Debug)]
enum Op {
    Read {
        table: Table,
        address: u16,
        count: u16,
    },
    Write {
        table: Table,
        address: u16,
        words: Vec<u16>,
        function: WriteFunction,
    },
}

impl Op {
    /// The Modbus request for this operation, or the exception code a device would answer.
    fn request(&self) -> Result<Request<'static>, u8> {
        match self {
            Op::Read {
                table,
                address,
                count,
            } => {
                let max = if table.is_bits() {
                    MAX_READ_BITS
                } else {
                    MAX_READ_REGISTERS
                };
                if *count == 0 || *count > max {
                    return Err(ILLEGAL_DATA_VALUE);
                }
                if u32::from(*address) + u32::from(*count) > 0x1_0000 {
                    return Err(ILLEGAL_DATA_ADDRESS);
                }
                Ok(match table {
                    Table::Holding => Request::ReadHoldingRegisters(*address, *count),
                    Table::Input => Request::ReadInputRegisters(*address, *count),
                    Table::Coil => Request::ReadCoils(*address, *count),
                    Table::Discrete => Request::ReadDiscreteInputs(*address, *count),
                })
            }
            Op::Write {
                table,
                address,
                words,
                function,
            } => {
                let max = match table {
                    Table::Holding => MAX_WRITE_REGISTERS,
                    Table::Coil => MAX_WRITE_COILS,
                    Table::Input | Table::Discrete => return Err(ILLEGAL_FUNCTION),
                };
                if words.is_empty() || words.len() > max {
                    return Err(ILLEGAL_DATA_VALUE);
                }
                if u32::from(*address) + words.len() as u32 > 0x1_0000 {
                    return Err(ILLEGAL_DATA_ADDRESS);
                }
                let single = *function == WriteFunction::Single && words.len() == 1;
                Ok(match (table, single, words.first()) {
                    (Table::Coil, true, Some(word)) => {
                        Request::WriteSingleCoil(*address, *word != 0)
                    }
                    (Table::Coil, _, _) => Request::WriteMultipleCoils(
                        *address,
                        Cow::Owned(words.iter().map(|w| *w != 0).collect()),
                    ),
                    (_, true, Some(word)) => Request::WriteSingleRegister(*address, *word),
                    _ => Request::WriteMultipleRegisters(*address, Cow::Owned(words.clone())),
                })
            }
        }
    }

    /// Check that `response` answers this operation; returns the words read.
    fn accept(&self, response: Response) -> Result<Vec<u16>, String> {
        let bits = |mut bits: Vec<bool>, count: u16| {
            // Bit replies are padded to whole bytes (§6.1, §6.2).
            if bits.len() < usize::from(count) {
                return Err(format!("reply has {} bits, expected {count}", bits.len()));
            }
            bits.truncate(usize::from(count));
            Ok(bits.into_iter().map(u16::from).collect())
        };
        let words = |words: Vec<u16>, count: u16| {
            if words.len() == usize::from(count) {
                Ok(words)
            } else {
                Err(format!(
                    "reply has {} registers, expected {count}",
                    words.len()
                ))
            }
        };
        match (self, response) {
            (Op::Read { count, .. }, Response::ReadCoils(b) | Response::ReadDiscreteInputs(b)) => {
                bits(b, *count)
            }
            (
                Op::Read { count, .. },
                Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w),
            ) => words(w, *count),
            (
                Op::Write { address, words, .. },
                Response::WriteSingleRegister(a, _) | Response::WriteSingleCoil(a, _),
            ) if a == *address && words.len() == 1 => Ok(Vec::new()),
            (
                Op::Write { address, words, .. },
                Response::WriteMultipleRegisters(a, n) | Response::WriteMultipleCoils(a, n),
            ) if a == *address && usize::from(n) == words.len() => Ok(Vec::new()),
            (_, other) => Err(format!("reply does not match the request: {other:?}")),
        }
    }

    fn describe(&self) -> String {
        match self {
            Op::Read {
                table,
                address,
                count,
            } => format!("read {} {address}+{count}", table.as_str()),
            Op::Write {
                table,
                address,
                words,
                ..
            } => format!("write {} {address}+{}", table.as_str(), words.len()),
        }
    }
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    /// The device answered with an exception: final, not retried.
    Exception(u8),
    /// No reply in time: the connection was dropped.
    Timeout,
    /// Broken connection or garbled reply: the connection was dropped.
    Transport(String),
    /// A connection opened for an earlier request turned out to be closed by the peer.
    Stale(String),
    /// Could not (re)connect: not retried within this request (the reconnect backs off).
    Connect(String),
}

/// Backoff between failed connects.
#[derive(Debug, Default)]
struct Reconnect {
    not_before: Option<Instant>,
    backoff: Option<Duration>,
    last_error: String,
}

impl Reconnect {
    fn failed(&mut self, error: String, now: Instant) {
        let backoff = self.backoff.map_or(FIRST_RECONNECT_BACKOFF, |b| {
            b.saturating_mul(2).min(MAX_RECONNECT_BACKOFF)
        });
        self.backoff = Some(backoff);
        self.not_before = Some(now + backoff);
        self.last_error = error;
    }

    fn succeeded(&mut self) {
        *self = Reconnect::default();
    }
}

struct BusTask {
    name: Arc<str>,
    endpoint: Endpoint,
    context: Option<Context>,
    /// When the last frame on the line ended (reply received, or the attempt gave up).
    last_frame_end: Option<Instant>,
    reconnect: Reconnect,
    health: UnitHealth,
    warnings: WarnLimiter,
    stats: Arc<Mutex<BusStats>>,
}

impl BusTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>, shutdown: CancellationToken) {
        tracing::debug!(bus = %self.name, endpoint = %self.endpoint, "bus task started");
        loop {
            let job = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
            };
            if job.reply.is_closed() {
                // The caller gave up waiting; do not spend line time on it.
                continue;
            }
            let started = Instant::now();
            let result = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                result = self.serve(job.unit, &job.timing, &job.op) => result,
            };
            lock(&self.stats).busy += started.elapsed();
            // The caller may have stopped waiting; nothing to do then.
            let _ = job.reply.send(result);
        }
        tracing::debug!(bus = %self.name, "bus task stopped");
    }

    /// Serve one request: admission, attempts with retries, bookkeeping.
    async fn serve(
        &mut self,
        unit: u8,
        timing: &DeviceTiming,
        op: &Op,
    ) -> Result<Vec<u16>, BusError> {
        let request = match op.request() {
            Ok(request) => request,
            Err(code) => {
                tracing::debug!(bus = %self.name, unit, op = %op.describe(), code, "refused locally");
                return Err(BusError::Exception(code));
            }
        };
        let attempts = match self.health.admit(unit, Instant::now()) {
            Admission::Normal => timing.retries.saturating_add(1),
            Admission::Probe => 1,
            Admission::Skip { remaining } => {
                tracing::debug!(bus = %self.name, unit, op = %op.describe(), ?remaining,
                    "unit in backoff after repeated timeouts: not sent");
                lock(&self.stats).skipped += 1;
                return Err(BusError::Timeout);
            }
        };
        let mut last = BusError::Timeout;
        let mut attempt = 0;
        let mut stale_retried = false;
        while attempt < attempts {
            attempt += 1;
            let started = Instant::now();
            let failure = match self.attempt(unit, timing, request.clone(), op).await {
                Ok(words) => {
                    tracing::debug!(bus = %self.name, unit, op = %op.describe(), attempt,
                        elapsed = ?started.elapsed(), "ok");
                    lock(&self.stats).ok += 1;
                    self.health.record_answer(unit);
                    self.warnings.clear(unit);
                    return Ok(words);
                }
                Err(failure) => failure,
            };
            let (error, retry) = match failure {
                Failure::Exception(code) => (BusError::Exception(code), false),
                Failure::Timeout => (BusError::Timeout, true),
                Failure::Transport(text) => (BusError::Transport(text), true),
                Failure::Stale(text) => {
                    if !stale_retried {
                        // A kept-alive connection the device closed while idle (Alfen
                        // closes after 60 s) is not the device's fault: try once more on a
                        // new connection without using up one of the map's retries.
                        stale_retried = true;
                        attempt -= 1;
                    }
                    (BusError::Transport(text), true)
                }
                Failure::Connect(text) => (BusError::Transport(text), false),
            };
            self.count_failure(&error);
            if let BusError::Exception(_) = error {
                self.health.record_answer(unit);
                self.warn(unit, op, &error);
                return Err(error);
            }
            tracing::debug!(bus = %self.name, unit, op = %op.describe(), attempt, attempts,
                elapsed = ?started.elapsed(), %error, "attempt failed");
            last = error;
            if !retry {
                break;
            }
        }
        self.warn(unit, op, &last);
        if last == BusError::Timeout
            && let Some(period) = self.health.record_timeout(unit, Instant::now())
        {
            tracing::warn!(bus = %self.name, unit, ?period,
                "unit keeps timing out: its requests fail at once for a while");
        }
        Err(last)
    }

    /// One request on the wire: wait the delay and silence, connect if needed, call with a
    /// timeout. Drops the connection on anything but a clean answer.
    async fn attempt(
        &mut self,
        unit: u8,
        timing: &DeviceTiming,
        request: Request<'static>,
        op: &Op,
    ) -> Result<Vec<u16>, Failure> {
        if self.context.is_none()
            && let Some(not_before) = self.reconnect.not_before
        {
            let now = Instant::now();
            if now < not_before {
                return Err(Failure::Connect(format!(
                    "{} (next connect attempt in {:?})",
                    self.reconnect.last_error,
                    not_before - now
                )));
            }
        }

        // The device's request delay, and on RTU at least t3.5 of silence since the last
        // frame (Modbus over Serial Line v1.02 §2.5.1.1). Deadlines, not sleeps: the time
        // already spent since the last frame counts towards both, so a line that has been
        // quiet for longer than the delay sends at once (a limit write is not held up).
        let delay = timing.request_delay.min(MAX_REQUEST_DELAY);
        let mut deadline = self
            .last_frame_end
            .map_or_else(|| Instant::now() + delay, |end| end + delay);
        if let (Some(silence), Some(end)) = (self.endpoint.frame_silence(), self.last_frame_end) {
            deadline = deadline.max(end + silence);
        }
        tokio::time::sleep_until(deadline).await;

        let reused = self.context.is_some();
        let context = match self.context.as_mut() {
            Some(context) => context,
            None => {
                let connect_timeout = timing.timeout.max(MIN_CONNECT_TIMEOUT);
                match endpoint::open(&self.endpoint, connect_timeout).await {
                    Ok(context) => {
                        tracing::debug!(bus = %self.name, endpoint = %self.endpoint, "connected");
                        lock(&self.stats).connects += 1;
                        self.reconnect.succeeded();
                        // A freshly opened line is in an unknown state (we may have closed it
                        // mid-frame): keep t3.5 of silence before the first frame.
                        if let Some(silence) = self.endpoint.frame_silence() {
                            tokio::time::sleep(silence).await;
                        }
                        self.context.insert(context)
                    }
                    Err(error) => {
                        self.reconnect.failed(error.clone(), Instant::now());
                        return Err(Failure::Connect(error));
                    }
                }
            }
        };
        context.set_slave(Slave(unit));
        let outcome = tokio::time::timeout(timing.timeout, context.call(request)).await;
        self.last_frame_end = Some(Instant::now());
        let failure = match outcome {
            Ok(Ok(Ok(response))) => match op.accept(response) {
                Ok(words) => return Ok(words),
                Err(text) => Failure::Transport(text),
            },
            Ok(Ok(Err(exception))) => return Err(Failure::Exception(u8::from(exception))),
            Ok(Err(tokio_modbus::Error::Transport(error))) if reused && is_disconnect(&error) => {
                Failure::Stale(format!("connection closed or broken ({error})"))
            }
            Ok(Err(error)) => Failure::Transport(error.to_string()),
            Err(_elapsed) => Failure::Timeout,
        };
        // tokio-modbus #324: a reply that arrives after we stopped waiting would be read as
        // the answer to the next request on the same connection. Start over on a new one.
        self.context = None;
        Err(failure)
    }

    fn count_failure(&self, error: &BusError) {
        let mut stats = lock(&self.stats);
        match error {
            BusError::Exception(_) => stats.exceptions += 1,
            BusError::Timeout => stats.timeouts += 1,
            BusError::Transport(_) | BusError::Closed => stats.transport_errors += 1,
        }
        stats.last_error = Some(error.to_string());
    }

    /// Log a failed request, at most once a minute per unit and kind of error (the text of
    /// transport errors varies: transaction ids, backoff times).
    fn warn(&mut self, unit: u8, op: &Op, error: &BusError) {
        let kind = match error {
            BusError::Timeout => "timeout".to_owned(),
            BusError::Exception(code) => format!("exception {code}"),
            BusError::Transport(_) => "transport".to_owned(),
            BusError::Closed => "closed".to_owned(),
        };
        if let Some(suppressed) = self.warnings.check(unit, &kind, Instant::now()) {
            if suppressed > 0 {
                tracing::warn!(bus = %self.name, unit, op = %op.describe(), suppressed,
                    "{error} (repeated)");
            } else {
                tracing::warn!(bus = %self.name, unit, op = %op.describe(), "{error}");
            }
        }
    }
}

/// Whether an I/O error on a kept connection may mean the peer closed it, rather than that
/// it sent garbage (`InvalidData` from the decoder). tokio-modbus 0.17 reports a TCP end of
/// stream as `io::Error::last_os_error()` (`src/service/tcp.rs`), whose kind is arbitrary, so
/// every other kind counts.
fn is_disconnect(error: &std::io::Error) -> bool {
    error.kind() != std::io::ErrorKind::InvalidData
}

/// Lock the stats, also if a thread panicked while holding the lock (the counters are
/// still usable).
fn lock(stats: &Mutex<BusStats>) -> MutexGuard<'_, BusStats> {
    stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(table: Table, words: &[u16], function: WriteFunction) -> Op {
        Op::Write {
            table,
            address: 10,
            words: words.to_vec(),
            function,
        }
    }

    #[test]
    fn single_register_writes_use_fc6_only_when_asked() {
        assert_eq!(
            write(Table::Holding, &[7], WriteFunction::Single).request(),
            Ok(Request::WriteSingleRegister(10, 7))
        );
        assert_eq!(
            write(Table::Holding, &[7], WriteFunction::Multiple).request(),
            Ok(Request::WriteMultipleRegisters(10, Cow::Owned(vec![7])))
        );
        assert_eq!(
            write(Table::Holding, &[7, 8], WriteFunction::Single).request(),
            Ok(Request::WriteMultipleRegisters(10, Cow::Owned(vec![7, 8])))
        );
    }

    #[test]
    fn coil_writes_use_fc5_or_fc15() {
        assert_eq!(
            write(Table::Coil, &[2], WriteFunction::Single).request(),
            Ok(Request::WriteSingleCoil(10, true))
        );
        assert_eq!(
            write(Table::Coil, &[1, 0], WriteFunction::Single).request(),
            Ok(Request::WriteMultipleCoils(
                10,
                Cow::Owned(vec![true, false])
            ))
        );
    }

    #[test]
    fn requests_a_device_would_reject_are_refused_locally() {
        let read = |table, address, count| Op::Read {
            table,
            address,
            count,
        };
        assert_eq!(
            read(Table::Holding, 0, 0).request(),
            Err(ILLEGAL_DATA_VALUE)
        );
        assert_eq!(
            read(Table::Input, 0, 126).request(),
            Err(ILLEGAL_DATA_VALUE)
        );
        assert!(read(Table::Coil, 0, 2000).request().is_ok());
        assert_eq!(
            read(Table::Coil, 0, 2001).request(),
            Err(ILLEGAL_DATA_VALUE)
        );
        assert_eq!(
            read(Table::Holding, 65535, 2).request(),
            Err(ILLEGAL_DATA_ADDRESS)
        );
        assert!(read(Table::Holding, 65535, 1).request().is_ok());
        assert_eq!(
            write(Table::Input, &[1], WriteFunction::Multiple).request(),
            Err(ILLEGAL_FUNCTION)
        );
        assert_eq!(
            write(Table::Holding, &[], WriteFunction::Multiple).request(),
            Err(ILLEGAL_DATA_VALUE)
        );
        assert_eq!(
            write(Table::Holding, &[0; 124], WriteFunction::Multiple).request(),
            Err(ILLEGAL_DATA_VALUE)
        );
    }

    #[test]
    fn replies_must_match_the_request() {
        let read = Op::Read {
            table: Table::Holding,
            address: 0,
            count: 2,
        };
        assert_eq!(
            read.accept(Response::ReadHoldingRegisters(vec![1, 2])),
            Ok(vec![1, 2])
        );
        assert!(
            read.accept(Response::ReadHoldingRegisters(vec![1]))
                .is_err()
        );
        assert!(read.accept(Response::WriteSingleRegister(0, 1)).is_err());
        let coils = Op::Read {
            table: Table::Coil,
            address: 0,
            count: 3,
        };
        let padded = vec![true, false, true, false, false, false, false, false];
        assert_eq!(coils.accept(Response::ReadCoils(padded)), Ok(vec![1, 0, 1]));
        let fc6 = write(Table::Holding, &[7], WriteFunction::Single);
        assert_eq!(fc6.accept(Response::WriteSingleRegister(10, 7)), Ok(vec![]));
        assert!(fc6.accept(Response::WriteSingleRegister(11, 7)).is_err());
    }

    fn table(i: u8) -> Table {
        [Table::Holding, Table::Input, Table::Coil, Table::Discrete][usize::from(i % 4)]
    }

    proptest::proptest! {
        #[test]
        fn reads_build_a_request_or_an_exception_and_check_any_reply(
            t in 0u8..4, address: u16, count: u16, reply in proptest::collection::vec(proptest::prelude::any::<u16>(), 0..300),
        ) {
            let op = Op::Read { table: table(t), address, count };
            if let Ok(request) = op.request() {
                let valid = match request {
                    Request::ReadHoldingRegisters(a, n) | Request::ReadInputRegisters(a, n)
                    | Request::ReadCoils(a, n) | Request::ReadDiscreteInputs(a, n) => a == address && n == count,
                    _ => false,
                };
                proptest::prop_assert!(valid);
            }
            let bits: Vec<bool> = reply.iter().map(|w| w % 2 == 1).collect();
            for response in [
                Response::ReadHoldingRegisters(reply.clone()),
                Response::ReadInputRegisters(reply.clone()),
                Response::ReadCoils(bits.clone()),
                Response::WriteMultipleRegisters(address, count),
            ] {
                if let Ok(words) = op.accept(response) {
                    proptest::prop_assert_eq!(words.len(), usize::from(count));
                }
            }
        }

        #[test]
        fn writes_build_a_request_or_an_exception(
            t in 0u8..4, address: u16, words in proptest::collection::vec(proptest::prelude::any::<u16>(), 0..2000), single: bool,
        ) {
            let function = if single { WriteFunction::Single } else { WriteFunction::Multiple };
            let op = Op::Write { table: table(t), address, words: words.clone(), function };
            match op.request() {
                Ok(_) => proptest::prop_assert!(table(t).writable() && !words.is_empty()),
                Err(code) => proptest::prop_assert!((1..=3).contains(&code)),
            }
        }
    }

    #[tokio::test]
    async fn requests_after_shutdown_fail_with_closed() {
        let shutdown = CancellationToken::new();
        let bus = spawn_bus(
            "test".into(),
            Endpoint::Tcp {
                addr: "127.0.0.1:9".into(),
            },
            shutdown.clone(),
        );
        shutdown.cancel();
        let timing = DeviceTiming {
            request_delay: Duration::ZERO,
            timeout: Duration::from_millis(100),
            retries: 0,
        };
        // The task may not have noticed yet: wait for the channel to close.
        bus.tx.closed().await;
        assert_eq!(
            bus.read(1, &timing, Table::Holding, 0, 1).await,
            Err(BusError::Closed)
        );
        assert_eq!(bus.name(), "test");
    }

    #[tokio::test]
    async fn absurd_timing_does_not_panic() {
        let shutdown = CancellationToken::new();
        let bus = spawn_bus(
            "huge".into(),
            Endpoint::Tcp {
                addr: "127.0.0.1:9".into(),
            },
            shutdown.clone(),
        );
        let timing = DeviceTiming {
            request_delay: Duration::MAX,
            timeout: Duration::MAX,
            retries: u32::MAX,
        };
        let handle = bus.clone();
        let pending =
            tokio::spawn(async move { handle.read(1, &timing, Table::Holding, 0, 1).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // a panicking task would have dropped its receiver
        assert!(!bus.tx.is_closed(), "the bus task died");
        shutdown.cancel();
        assert_eq!(pending.await.ok(), Some(Err(BusError::Closed)));
    }

    #[test]
    fn a_handle_made_outside_a_runtime_reports_closed() {
        let bus = spawn_bus(
            "nort".into(),
            Endpoint::Tcp {
                addr: "127.0.0.1:9".into(),
            },
            CancellationToken::new(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(runtime) = runtime else { return };
        let timing = DeviceTiming {
            request_delay: Duration::ZERO,
            timeout: Duration::from_millis(100),
            retries: 0,
        };
        let result = runtime.block_on(bus.read(1, &timing, Table::Holding, 0, 1));
        assert_eq!(result, Err(BusError::Closed));
    }
}
