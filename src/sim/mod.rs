//! The wallbox simulator: a Modbus server that serves any device map's registers and behaves
//! like the wallbox, with a simulated EV (architecture.md §The simulator).
//!
//! - [`device`]: one wallbox's registers, EV, watchdog and energy meter (pure)
//! - [`ev`]: the EV and the IEC 61851 state it produces (pure)
//! - [`pdu`]: Modbus request PDUs -> responses against a device (pure)
//! - [`rtu`], [`tcp`]: the servers (RTU framing is our own: silent for other unit ids)
//! - [`accept`]: the bounded accept loop the TCP servers share
//! - [`handle`]: [`SimHandle`], the shared, clonable handle tests and scripts drive
//! - [`script`], [`control`]: timed scripts and the line-protocol control socket
//! - [`mod@run`]: the `chargebridge sim` subcommand ([`spawn`], [`fn@run`])
//! - [`csms`], [`pki`]: the small loopback central system and its throwaway certificates

pub mod accept;
pub mod control;
pub mod csms;
pub mod device;
pub mod ev;
pub mod handle;
pub mod pdu;
pub mod pki;
pub mod rtu;
pub mod run;
pub mod script;
pub mod tcp;

pub use device::{Exception, SimDevice, SimError, SimOptions, SimSnapshot, WriteRecord};
pub use ev::Ev;
pub use handle::SimHandle;
pub use run::{RunningSim, SimArgs, run, spawn};
pub use script::{ScriptStep, SimCommand, parse_script};
