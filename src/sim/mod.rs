//! placeholder
pub mod csms;
pub mod pki;
