//! The charging-profile fixtures (tests/fixtures/charging_profiles/) and test timestamps of
//! the smart-charging tests.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// An RFC 3339 test timestamp, parsed as the gateway parses OCPP timestamps.
pub fn at(s: &str) -> DateTime<Utc> {
    chargebridge::smartcharging::timestamp::parse(s).expect("test timestamp")
}

/// The JSON fixture `name` from tests/fixtures/charging_profiles/.
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/charging_profiles/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}
