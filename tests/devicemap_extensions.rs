//! The format extensions for real wallboxes (`poll: never`, `status.vehicle`,
//! `control.power_limit`): what they load into, and one test per new validation rule with the
//! message and the line:column it points at.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

mod common;

use chargebridge::devicemap::{
    Iec61851State as S, KeepaliveAction, PollClass, PowerLimitSpec, VehicleSpec, load_str, plan,
};
use common::map_errors::{HEAD, one};

/// Registers start on line 4; `status` follows them, then `rest`.
fn map(registers: &str, status: &str, rest: &str) -> String {
    format!("{HEAD}registers:\n{registers}{status}{rest}")
}

const STATUS: &str = "status: { register: state, map: { 2: A, 3: C2 } }\n";

// ---- what the extensions load into ----

#[test]
fn the_extensions_load() {
    let m = load_str(
        "t",
        "t.yaml",
        &map(
            "  state: { input: 5 }\n  cable: { input: 6 }\n  watts: { holding: 10, type: u32 }\n  beat: { holding: 20, poll: never }\n",
            "status:\n  register: state\n  map: { 2: A, 3: C2 }\n  vehicle: { register: cable, connected: [5, 7] }\n",
            "control:\n  power_limit: { register: watts, max_w: 11000 }\nkeepalive:\n  every: 5s\n  write: { register: beat, value: 1 }\n",
        ),
    )
    .unwrap();
    assert_eq!(m.registers[3].poll, PollClass::Never);
    assert_eq!(
        m.status.vehicle,
        Some(VehicleSpec {
            register: 1,
            connected: vec![5, 7]
        })
    );
    assert_eq!(
        m.control.power_limit,
        Some(PowerLimitSpec {
            register: 2,
            min_w: 1380.0,
            max_w: 11000.0,
            off_value: 0.0
        })
    );
    // Write-only registers are never read, and reads do not span them.
    let all = [PollClass::Always, PollClass::Slow, PollClass::Once];
    assert!(
        plan(&m, &all)
            .iter()
            .all(|b| !(b.start <= 20 && b.last_address() >= 20))
    );
}

#[test]
fn the_cable_state_refines_the_state() {
    let v = VehicleSpec {
        register: 0,
        connected: vec![5, 7],
    };
    assert_eq!(v.combine(S::C2, 7), S::C2);
    assert_eq!(v.combine(S::C2, 1), S::A, "no vehicle on the cable");
    assert_eq!(v.combine(S::A, 5), S::B1, "a vehicle is there");
    assert_eq!(v.combine(S::F, 0), S::F, "faults stand");
    assert_eq!(v.combine(S::E, 7), S::E);
}

#[test]
fn power_limits_convert_amperes_with_phases_and_voltage() {
    let p = PowerLimitSpec {
        register: 0,
        min_w: 1380.0,
        max_w: 11000.0,
        off_value: 0.0,
    };
    assert_eq!(p.watts(Some(16.0), 32.0, 1, 230.0), 3680.0);
    assert_eq!(
        p.watts(Some(16.0), 32.0, 3, 230.0),
        11000.0,
        "capped at max_w"
    );
    assert_eq!(
        p.watts(Some(16.0), 10.0, 3, 230.0),
        6900.0,
        "max_current first"
    );
    assert_eq!(p.watts(Some(5.0), 32.0, 1, 230.0), 0.0, "below min_w: off");
    assert_eq!(p.watts(None, 32.0, 3, 230.0), 0.0);
    assert_eq!(p.watts(Some(f64::NAN), 32.0, 3, 230.0), 0.0);
}

// ---- poll: never ----

#[test]
fn an_unknown_poll_class_lists_never() {
    one(
        &map("  state: { input: 5, poll: sometimes }\n", STATUS, ""),
        4,
        "sometimes",
        &["registers.state.poll", "never"],
    );
}

#[test]
fn a_write_only_status_register() {
    one(
        &map(
            "  state: { holding: 5, poll: never }\n",
            "status: { register: state, map: { 2: A } }\n",
            "",
        ),
        5,
        "state,",
        &["status.register", "`poll: never`", "write-only"],
    );
}

#[test]
fn a_write_only_measurand_register() {
    one(
        &map(
            "  state: { input: 5 }\n  power: { holding: 6, poll: never }\n",
            STATUS,
            "measurands:\n  Power.Active.Import: power\n",
        ),
        8,
        "power",
        &["measurands.Power.Active.Import", "`poll: never`"],
    );
}

#[test]
fn a_write_only_keepalive_read() {
    one(
        &map(
            "  state: { input: 5 }\n  beat: { holding: 6, poll: never }\n",
            STATUS,
            "keepalive:\n  every: 5s\n  read: beat\n",
        ),
        9,
        "beat",
        &["keepalive.read", "`poll: never`", "give it `poll: always`"],
    );
}

#[test]
fn a_write_only_timeout_register_for_every_from() {
    one(
        &map(
            "  state: { input: 5 }\n  wd: { holding: 6, poll: never }\n",
            STATUS,
            "keepalive:\n  every_from: { register: wd, unit: s }\n  read: state\n",
        ),
        8,
        "wd,",
        &["keepalive.every_from.register", "`poll: never`"],
    );
}

#[test]
fn a_write_only_identity_register() {
    one(
        &map(
            "  state: { input: 5 }\n  fw: { holding: 6, poll: never }\n",
            STATUS,
            "identity:\n  firmware: { register: fw }\n",
        ),
        8,
        "fw ",
        &["identity.firmware.register", "`poll: never`"],
    );
}

// ---- status.vehicle ----

#[test]
fn a_vehicle_register_that_is_not_declared() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "status:\n  register: state\n  map: { 2: A }\n  vehicle: { register: cabel, connected: [2] }\n",
            "",
        ),
        8,
        "cabel",
        &["status.vehicle.register", "unknown register `cabel`"],
    );
}

#[test]
fn a_vehicle_register_that_is_a_float() {
    one(
        &map(
            "  state: { input: 5 }\n  cable: { input: 6, type: f32 }\n",
            "status:\n  register: state\n  map: { 2: A }\n  vehicle: { register: cable, connected: [2] }\n",
            "",
        ),
        9,
        "cable,",
        &["status.vehicle.register", "f32", "integer register"],
    );
}

#[test]
fn a_vehicle_without_connected_values() {
    one(
        &map(
            "  state: { input: 5 }\n  cable: { input: 6 }\n",
            "status:\n  register: state\n  map: { 2: A }\n  vehicle: { register: cable, connected: [] }\n",
            "",
        ),
        9,
        "[]",
        &["status.vehicle.connected", "empty", "[5, 7]"],
    );
}

#[test]
fn a_vehicle_with_a_negative_connected_value() {
    one(
        &map(
            "  state: { input: 5 }\n  cable: { input: 6 }\n",
            "status:\n  register: state\n  map: { 2: A }\n  vehicle: { register: cable, connected: [2, -1] }\n",
            "",
        ),
        9,
        "-1",
        &["status.vehicle.connected"],
    );
}

#[test]
fn a_vehicle_without_connected() {
    one(
        &map(
            "  state: { input: 5 }\n  cable: { input: 6 }\n",
            "status:\n  register: state\n  map: { 2: A }\n  vehicle: { register: cable }\n",
            "",
        ),
        9,
        "vehicle",
        &["status.vehicle", "missing `connected`"],
    );
}

// ---- control.power_limit ----

#[test]
fn a_power_limit_and_a_current_limit_together() {
    one(
        &map(
            "  state: { input: 5 }\n  amps: { holding: 6 }\n  watts: { holding: 7, type: u32 }\n",
            STATUS,
            "control:\n  current_limit: { register: amps, max: 16 }\n  power_limit: { register: watts, max_w: 11000 }\n",
        ),
        10,
        "power_limit",
        &["either `current_limit` (A) or `power_limit` (W)"],
    );
}

#[test]
fn a_power_limit_without_max_w() {
    one(
        &map(
            "  state: { input: 5 }\n  watts: { holding: 7, type: u32 }\n",
            STATUS,
            "control:\n  power_limit: { register: watts }\n",
        ),
        8,
        "power_limit",
        &["control.power_limit", "missing `max_w`"],
    );
}

#[test]
fn a_power_limit_with_min_w_above_max_w() {
    one(
        &map(
            "  state: { input: 5 }\n  watts: { holding: 7, type: u32 }\n",
            STATUS,
            "control:\n  power_limit: { register: watts, min_w: 5000, max_w: 4000 }\n",
        ),
        8,
        "5000",
        &["min_w 5000 W is greater than max_w 4000 W"],
    );
}

#[test]
fn a_negative_power() {
    one(
        &map(
            "  state: { input: 5 }\n  watts: { holding: 7, type: u32 }\n",
            STATUS,
            "control:\n  power_limit: { register: watts, max_w: -1 }\n",
        ),
        8,
        "-1",
        &["control.power_limit.max_w", "cannot be negative"],
    );
}

#[test]
fn a_power_limit_too_large_for_its_register() {
    one(
        &map(
            "  state: { input: 5 }\n  watts: { holding: 7 }\n",
            STATUS,
            "control:\n  power_limit: { register: watts, max_w: 70000 }\n",
        ),
        8,
        "70000",
        &["control.power_limit.max_w", "does not fit"],
    );
}

#[test]
fn a_power_limit_on_an_input_register() {
    one(
        &map(
            "  state: { input: 5 }\n  watts: { input: 7, type: u32 }\n",
            STATUS,
            "control:\n  power_limit: { register: watts, max_w: 11000 }\n",
        ),
        8,
        "watts,",
        &["control.power_limit.register", "read-only input register"],
    );
}

// ---- keepalive.write.value_from ----

#[test]
fn a_keepalive_copy_loads() {
    let m = load_str(
        "t",
        "t.yaml",
        &map(
            "  state: { input: 5 }\n  timeout: { holding: 6 }\n  beat: { holding: 7, poll: never }\n",
            STATUS,
            "keepalive:\n  every_from: { register: timeout, unit: s, divide: 2 }\n  write: { register: beat, value_from: timeout }\n",
        ),
    )
    .unwrap();
    assert_eq!(
        m.keepalive.unwrap().action,
        KeepaliveAction::Copy {
            register: 2,
            from: 1
        }
    );
}

#[test]
fn a_keepalive_write_with_value_and_value_from() {
    one(
        &map(
            "  state: { input: 5 }\n  timeout: { holding: 6 }\n",
            STATUS,
            "keepalive:\n  every: 5s\n  write: { register: timeout, value: 1, value_from: timeout }\n",
        ),
        9,
        "value_from",
        &["either `value` or `value_from`"],
    );
}

#[test]
fn a_keepalive_copy_from_a_write_only_register() {
    one(
        &map(
            "  state: { input: 5 }\n  timeout: { holding: 6, poll: never }\n  beat: { holding: 7 }\n",
            STATUS,
            "keepalive:\n  every: 5s\n  write: { register: beat, value_from: timeout }\n",
        ),
        10,
        "timeout",
        &["keepalive.write.value_from", "`poll: never`"],
    );
}

// ---- `counts: session` on the energy register ----

const COUNTED: &str =
    "  state: { input: 0 }\n  energy: { holding: 10, type: u32 }\n  power: { holding: 12 }\n";

#[test]
fn a_per_session_energy_register_is_marked_and_the_default_is_lifetime() {
    use chargebridge::devicemap::Counts;
    let yaml = map(
        COUNTED,
        STATUS,
        "measurands:\n  Energy.Active.Import.Register: { register: energy, counts: session }\n  Power.Active.Import: power\n",
    );
    let m = load_str("t", "t.yaml", &yaml).unwrap();
    let energy = m.measurand("Energy.Active.Import.Register").unwrap();
    assert_eq!(energy.counts, Counts::Session);
    assert_eq!(energy.sources.len(), 1);
    assert_eq!(
        m.measurand("Power.Active.Import").unwrap().counts,
        Counts::Lifetime
    );
    let plain = map(
        COUNTED,
        STATUS,
        "measurands:\n  Energy.Active.Import.Register: { register: energy }\n",
    );
    let m = load_str("t", "t.yaml", &plain).unwrap();
    assert_eq!(
        m.measurand("Energy.Active.Import.Register").unwrap().counts,
        Counts::Lifetime
    );
    // The shipped ABB map uses it: its only energy register counts per session.
    let abb = chargebridge::devicemap::resolve("abb-terra-ac", &[]).unwrap();
    assert_eq!(
        abb.measurand("Energy.Active.Import.Register")
            .unwrap()
            .counts,
        Counts::Session
    );
}

#[test]
fn counts_is_refused_on_other_measurands_and_for_unknown_values() {
    // Registers on lines 4-6, status on 7, measurands on 8.
    one(
        &map(
            COUNTED,
            STATUS,
            "measurands:\n  Power.Active.Import: { register: power, counts: session }\n",
        ),
        9,
        "Power",
        &["Energy.Active.Import.Register only"],
    );
    one(
        &map(
            COUNTED,
            STATUS,
            "measurands:\n  Energy.Active.Import.Register: { register: energy, counts: daily }\n",
        ),
        9,
        "daily",
        &["lifetime", "session"],
    );
    one(
        &map(
            COUNTED,
            STATUS,
            "measurands:\n  Energy.Active.Import.Register: { register: energy, count: session }\n",
        ),
        9,
        "count:",
        &["count"],
    );
}
