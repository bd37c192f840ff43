//! chargebridge: an edge gateway that makes Modbus RTU/TCP wallboxes appear to an OCPP 1.6J
//! central system as native charge points.
//!
//! # Layout
//! - [`config`]: the gateway configuration (load, validate, resolve secrets)
//! - [`devicemap`]: the device-map format: schema, validation, codec and read plan (pure)
//! - [`modbus`]: one bus task per serial port or TCP endpoint, reached through handles
//! - [`ocpp`]: the OCPP-J RPC envelope, messages and the WebSocket session per charge point
//! - [`charger`]: one task per wallbox around a pure state machine
//! - [`smartcharging`]: charging profiles and the limit they impose (pure functions of `now`)
//! - [`sim`]: the wallbox simulator and the small loopback central system
//! - [`probe`]: `chargebridge probe`, reading a live wallbox once to check a map
//! - [`telemetry`], [`metrics`], [`http`]: what the gateway knows about itself, served as
//!   `/metrics`, `/status`, `/status.json` and `/healthz`
//! - [`cli`]: the subcommands
//! - [`bench`]: `chargebridge bench`, the measurement harnesses behind benches/README.md

pub mod bench;
pub mod charger;
pub mod cli;
pub mod config;
pub mod demo;
pub mod devicemap;
pub mod diag;
pub mod duration;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod modbus;
pub mod ocpp;
pub mod probe;
pub mod security;
pub mod sim;
pub mod smartcharging;
pub mod store;
pub mod telemetry;
