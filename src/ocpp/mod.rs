//! OCPP 1.6J towards the central system: the RPC envelope ([`rpc`]), the TLS client
//! configuration ([`tls`]), reconnect delays ([`backoff`]), opening the WebSocket (`handshake`) and the session of one
//! charge point ([`session`]).

pub mod backoff;
pub(crate) mod handshake;
pub mod rpc;
pub mod session;
pub mod tls;
