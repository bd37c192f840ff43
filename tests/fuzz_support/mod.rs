//! Shared by the proptest-based fuzz targets (`tests/fuzz_*.rs`; cargo-fuzz needs a nightly
//! toolchain, which this project does not depend on).
//!
//! - Every run first replays the seeds in `tests/fuzz_corpus/<target>/` (one input per file);
//!   a crash found once is added there and stays a regression test.
//! - The number of generated cases is modest by default (the normal test suite stays fast);
//!   `FUZZ_CASES=100000 cargo test --test fuzz_ocpp` runs a long campaign. `PROPTEST_CASES`
//!   works too; `FUZZ_CASES` wins.

#![allow(dead_code)]

use std::path::PathBuf;

use proptest::test_runner::Config;

/// Cases per property in a normal test run.
pub const DEFAULT_CASES: u32 = 256;

/// Cases per property: `FUZZ_CASES`, else `PROPTEST_CASES`, else [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    ["FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// The proptest configuration of every fuzz property.
pub fn config() -> Config {
    Config {
        cases: cases(),
        // Shrinking a deep JSON value can take long; a long campaign reports the input as is.
        max_shrink_iters: 2048,
        // The corpus is the regression store: a finding is added there as a seed file.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Writes `input` to the file named by `FUZZ_LAST`, if set, before it is tried: a crash that
/// aborts the process (stack overflow) cannot be shrunk by proptest, but leaves its input there.
pub fn note(input: &[u8]) {
    if let Some(path) = std::env::var_os("FUZZ_LAST") {
        let _ = std::fs::write(path, input);
    }
}

/// The seed inputs of `target`, sorted by file name: `(file name, bytes)`.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap_or_else(|err| panic!("{err}"));
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// One byte-level edit of a seed (what a coverage-guided fuzzer does most).
#[derive(Clone, Debug)]
pub enum Edit {
    /// Overwrite the byte at (position mod length).
    Set(usize, u8),
    /// Insert a byte.
    Insert(usize, u8),
    /// Remove a byte.
    Remove(usize),
    /// Duplicate a range (grows structures: nesting, repeated keys).
    Repeat(usize, usize),
}

/// Applies `edits` to `seed`; the result stays below 64 KiB.
pub fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for e in edits {
        let len = out.len().max(1);
        match *e {
            Edit::Set(at, b) => {
                if !out.is_empty() {
                    out[at % len] = b;
                }
            }
            Edit::Insert(at, b) => out.insert(at % (out.len() + 1), b),
            Edit::Remove(at) => {
                if !out.is_empty() {
                    out.remove(at % len);
                }
            }
            Edit::Repeat(at, n) => {
                let start = at % len;
                let end = (start + n % 64).min(out.len());
                if start < end && out.len() < 60_000 {
                    let piece = out[start..end].to_vec();
                    out.splice(end..end, piece);
                }
            }
        }
    }
    out
}

/// Edits for [`mutate`]; bytes lean towards the characters that matter to JSON and YAML.
pub fn edits() -> impl proptest::strategy::Strategy<Value = Vec<Edit>> {
    use proptest::prelude::*;
    let byte = prop_oneof![
        3 => prop::sample::select(b"{}[]\":,-#&*!|>'\\ \n\t0123456789.eE+-nulltruefalse".to_vec()),
        1 => any::<u8>(),
    ];
    let edit = prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(a, b)| Edit::Set(a, b)),
        (any::<usize>(), byte).prop_map(|(a, b)| Edit::Insert(a, b)),
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Edit::Repeat(a, n)),
    ];
    prop::collection::vec(edit, 1..8)
}

/// Arbitrary JSON values, nested a few levels deep.
pub fn json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            -1i64,
            0,
            1,
            2,
            3,
            6,
            16,
            32,
            86_400,
            i64::from(i32::MAX)
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "Accepted",
            "Hard",
            "Soft",
            "Inoperative",
            "Operative",
            "A",
            "W",
            "Absolute",
            "Recurring",
            "Relative",
            "Daily",
            "Weekly",
            "TxProfile",
            "TxDefaultProfile",
            "ChargePointMaxProfile",
            "2026-12-01T12:00:00Z",
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "HeartbeatInterval",
            "MeterValueSampleInterval",
            "AuthorizationKey",
            "SecurityProfile",
            "BootNotification",
            "MeterValues",
            "StatusNotification",
            "Heartbeat",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Object keys: mostly the field names OCPP payloads use, so deep paths get exercised.
pub fn key() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        4 => prop::sample::select(vec![
            "key", "value", "connectorId", "requestedMessage", "type", "idTag",
            "transactionId", "csChargingProfiles", "chargingProfile", "chargingProfileId",
            "stackLevel", "chargingProfilePurpose", "chargingProfileKind", "chargingSchedule",
            "chargingRateUnit", "chargingSchedulePeriod", "startPeriod", "limit",
            "numberPhases", "duration", "startSchedule", "validFrom", "validTo",
            "recurrencyKind", "minChargingRate", "id", "vendorId", "messageId", "data",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,8}",
    ]
}
