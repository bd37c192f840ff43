//! Shared helpers for the simulator's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use chargebridge::devicemap::*;

include!("map.rs");
