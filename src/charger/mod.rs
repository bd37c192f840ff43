//! One charge point per wallbox: a pure state machine ([`machine`]) and the task that connects
//! it to the wallbox and the central system.
//!
//! - [`keys`]: OCPP configuration keys
//! - [`reading`]: a poll's decoded values in OCPP terms
//! - [`status`]: the connector status table
//! - [`meter`]: MeterValues payloads
//! - [`machine`]: the charge point state machine

pub mod device;
pub mod keys;
pub mod machine;
pub mod meter;
pub mod reading;
pub mod session_energy;
pub mod status;
pub mod task;

pub use machine::{AuthMode, CallOutcome, Charger, ChargerSettings, Identity, OutgoingCall};
pub use reading::Reading;
pub use session_energy::SessionEnergy;

#[cfg(test)]
mod scenario_tests;
