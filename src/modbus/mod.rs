//! Modbus buses: one task per RS-485 port or Modbus TCP endpoint, reached through handles.
//!
//! Each bus task is the only owner of its connection. Charger tasks hold a cheap clonable
//! [`BusHandle`] and send it requests; the task serves them strictly one at a time in arrival
//! order, with the device's timing ([`DeviceTiming`]): the request delay, the RTU inter-frame
//! silence, a timeout around every call, and retries. After a timeout or a garbled reply the
//! connection is dropped and reopened, so a late reply is never taken for the answer to the
//! next request (tokio-modbus has neither a timeout nor a reconnect of its own).
//!
//! Limits worth knowing:
//! - Modbus RTU has no transaction id. A reply that arrives after the timeout *and* after
//!   the port was reopened and flushed can still be taken for the next reply if it has the
//!   same unit, function code and length; choose timeouts well above the device's
//!   turnaround time.
//! - Unit 0 (broadcast) gets no reply, so requests to it end in [`BusError::Timeout`].
//! - A unit that keeps timing out is skipped for a while; see [`health`].
//!
//! - [`bus`]: the task, [`spawn_bus`] and [`BusHandle`]
//! - [`endpoint`]: where a bus is connected and how a connection is opened
//! - [`timing`]: per-device timing and the RTU inter-frame silence (pure)
//! - [`health`]: the per-unit backoff for silent units (pure)
//! - [`pty`]: an in-process pseudo-terminal pair for the demo and the tests

pub mod bus;
pub mod endpoint;
pub mod error;
pub mod health;
pub mod pty;
pub mod stats;
pub mod timing;
mod warn_limit;

pub use bus::{BusHandle, spawn_bus};
pub use endpoint::Endpoint;
pub use error::BusError;
pub use pty::PtyPair;
pub use stats::BusStats;
pub use timing::{DeviceTiming, rtu_frame_silence};
