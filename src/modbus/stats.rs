//! Counters of one bus, read as a snapshot through [`crate::modbus::BusHandle::stats`].

use std::time::Duration;

/// A snapshot of a bus's counters since it was spawned. Counts are per attempt on the wire
/// (a request retried twice counts three times), except `skipped`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Attempts answered with data (or a write confirmation).
    pub ok: u64,
    /// Attempts answered with a Modbus exception.
    pub exceptions: u64,
    /// Attempts that got no reply within the timeout.
    pub timeouts: u64,
    /// Attempts that failed to connect, broke the connection, or got a garbled reply.
    pub transport_errors: u64,
    /// Requests failed at once with a timeout because their unit was in backoff.
    pub skipped: u64,
    /// Connections (or serial port opens) established.
    pub connects: u64,
    /// Time the bus spent serving requests, including request delays and inter-frame
    /// silences (the line is reserved for the request during them).
    pub busy: Duration,
    /// The text of the most recent error, if any.
    pub last_error: Option<String>,
}
