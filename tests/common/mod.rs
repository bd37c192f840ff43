//! Shared helpers for the integration tests: the simulator's test map (`map.rs`), waiting on
//! the loopback central system (`csms`), polling until something holds (`wait`), the
//! diagnostics of a device map that fails to load (`map_errors`), the charging-profile
//! fixtures (`profiles`) and capturing the log (`log_capture`).
#![allow(dead_code, clippy::unwrap_used)]

pub mod csms;
pub mod gateway;
pub mod log_capture;
pub mod map_errors;
pub mod profiles;
pub mod wait;

use chargebridge::devicemap::*;

include!("map.rs");
