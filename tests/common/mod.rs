//! Shared helpers for the integration tests: the simulator's test map (`map.rs`), waiting on
//! the loopback central system (`csms`) and polling until something holds (`wait`).
#![allow(dead_code, clippy::unwrap_used)]

pub mod csms;
pub mod wait;

use chargebridge::devicemap::*;

include!("map.rs");
