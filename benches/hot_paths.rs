//! Criterion benchmarks of the pure code that runs on every poll or every OCPP message:
//! register decoding, read planning, the OCPP-J envelope, and the smart-charging schedule.
//!
//! `cargo bench --bench hot_paths` (optimised `bench` profile); results and the machine are in
//! benches/README.md, "Scale and footprint".

use std::hint::black_box;

use chargebridge::devicemap::{self, DeviceMap, PollClass, RegisterImage, codec, plan};
use chargebridge::ocpp::rpc::Frame;
use chargebridge::smartcharging::{
    ChargingProfile, Electrical, ProfileSet, SetContext, composite_schedule, limit_at,
    parse_set_charging_profile,
};
use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;

fn map(name: &str) -> DeviceMap {
    match devicemap::resolve(name, &[]) {
        Ok(m) => m,
        Err(d) => panic!("built-in map {name}: {d}"),
    }
}

/// Words for every block of the map's every-cycle plan, as a device would answer them
/// (a plausible non-zero pattern; the decoder's cost does not depend on the values).
fn answers(map: &DeviceMap) -> Vec<(devicemap::ReadBlock, Vec<u16>)> {
    plan(map, &[PollClass::Always, PollClass::Slow, PollClass::Once])
        .into_iter()
        .map(|b| {
            let words = (0..b.count).map(|i| 0x4100 + i).collect();
            (b, words)
        })
        .collect()
}

/// One poll cycle's decoding: the blocks go into the register image, then every register is
/// decoded and the IEC 61851 state derived, as the device task does after each poll.
fn decode(c: &mut Criterion) {
    for name in ["heidelberg-energy-control", "alfen-eve-single"] {
        let map = map(name);
        let blocks = answers(&map);
        c.bench_function(&format!("decode cycle/{name}"), |b| {
            b.iter(|| {
                let mut image = RegisterImage::default();
                for (block, words) in &blocks {
                    image.insert_block(block.table, block.start, words);
                }
                let mut n = 0.0;
                for id in 0..map.registers.len() {
                    if let Some(v) = image.number(&map, id) {
                        n += v;
                    }
                }
                black_box((n, image.iec_state(&map)))
            });
        });
        // The codec alone, one register at a time.
        let words: Vec<Vec<u16>> = map
            .registers
            .iter()
            .map(|r| (0..r.words).map(|i| 0x4100 + i).collect())
            .collect();
        c.bench_function(&format!("decode registers/{name}"), |b| {
            b.iter(|| {
                for (reg, w) in map.registers.iter().zip(&words) {
                    let _ = black_box(codec::decode(reg, w));
                }
            });
        });
    }
}

fn read_plan(c: &mut Criterion) {
    for name in ["heidelberg-energy-control", "alfen-eve-single"] {
        let map = map(name);
        c.bench_function(&format!("plan/{name}"), |b| {
            b.iter(|| black_box(plan(black_box(&map), &[PollClass::Always, PollClass::Slow])));
        });
    }
}

const METER_VALUES: &str = r#"[2,"1f3c2a9e-0001","MeterValues",{"connectorId":1,"transactionId":4711,"meterValue":[{"timestamp":"2026-12-01T16:00:00.000Z","sampledValue":[{"value":"1250421","context":"Sample.Periodic","measurand":"Energy.Active.Import.Register","unit":"Wh","location":"Outlet"},{"value":"11040","context":"Sample.Periodic","measurand":"Power.Active.Import","unit":"W","location":"Outlet"},{"value":"16.0","context":"Sample.Periodic","measurand":"Current.Import","phase":"L1","unit":"A"},{"value":"16.0","context":"Sample.Periodic","measurand":"Current.Import","phase":"L2","unit":"A"},{"value":"16.0","context":"Sample.Periodic","measurand":"Current.Import","phase":"L3","unit":"A"}]}]}]"#;

const SET_PROFILE: &str = r#"[2,"csms-17","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"chargingProfileId":17,"stackLevel":1,"chargingProfilePurpose":"TxDefaultProfile","chargingProfileKind":"Absolute","chargingSchedule":{"chargingRateUnit":"A","startSchedule":"2026-12-01T00:00:00Z","chargingSchedulePeriod":[{"startPeriod":0,"limit":16.0},{"startPeriod":3600,"limit":10.0,"numberPhases":3},{"startPeriod":7200,"limit":6.0}]}}}]"#;

fn envelope(c: &mut Criterion) {
    for (what, text) in [
        ("MeterValues", METER_VALUES),
        ("SetChargingProfile", SET_PROFILE),
    ] {
        c.bench_function(&format!("envelope parse/{what}"), |b| {
            b.iter(|| black_box(Frame::parse(black_box(text))));
        });
        let frame = match Frame::parse(text) {
            Ok(f) => f,
            Err(e) => panic!("fixture frame: {e:?}"),
        };
        c.bench_function(&format!("envelope serialize/{what}"), |b| {
            b.iter(|| black_box(black_box(&frame).to_json()));
        });
    }
}

fn at(s: &str) -> DateTime<Utc> {
    match chargebridge::smartcharging::timestamp::parse(s) {
        Some(t) => t,
        None => panic!("timestamp {s}"),
    }
}

fn profiles() -> ProfileSet {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/charging_profiles"
    );
    let mut set = ProfileSet::new();
    let ctx = SetContext {
        now: at("2026-03-01T00:00:00Z"),
        transaction: None,
    };
    for name in [
        "ChargePointMaxProfile_16A",
        "TxDefaultProfile_from_1000_10A_then_20A",
        "TxDefaultProfile_stack1_evening_8A_then_14A",
        "Recurring_Daily_2200_across_midnight",
    ] {
        let text = match std::fs::read_to_string(format!("{dir}/{name}.json")) {
            Ok(t) => t,
            Err(e) => panic!("fixture {name}: {e}"),
        };
        let payload: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => panic!("fixture {name}: {e}"),
        };
        let (connector, profile): (u32, ChargingProfile) =
            match parse_set_charging_profile(&payload, &ctx) {
                Ok(p) => p,
                Err(e) => panic!("fixture {name}: {e:?}"),
            };
        if let Err(e) = set.install(connector, profile) {
            panic!("fixture {name}: {e:?}");
        }
    }
    set
}

fn schedule(c: &mut Criterion) {
    let set = profiles();
    let el = Electrical {
        phases: 3,
        voltage: 230.0,
        max_current: 32.0,
        min_current: 6.0,
    };
    let now = at("2026-03-04T09:50:00Z");
    c.bench_function("limit_at/4 profiles", |b| {
        b.iter(|| black_box(limit_at(black_box(&set), 1, now, None, &el)));
    });
    c.bench_function("composite_schedule/4 profiles, 24 h", |b| {
        b.iter(|| {
            black_box(composite_schedule(
                black_box(&set),
                1,
                now,
                86_400,
                None,
                None,
                &el,
            ))
        });
    });
}

/// Short runs: the figures are single-digit microseconds with little spread, and the whole
/// suite must fit a measurement slot on a shared machine.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode, read_plan, envelope, schedule
}
criterion_main!(benches);
