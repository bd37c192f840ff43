//! GetCompositeSchedule.conf payloads built from the fixture profiles.

mod common;

use chargebridge::smartcharging::{
    ChargingProfile, Electrical, ProfileSet, RateUnit, Reject, SetContext, TxContext,
    composite_schedule, parse_remote_start_profile, parse_set_charging_profile,
};
use common::profiles::{at, fixture};
use serde_json::{Value, json};

fn install(set: &mut ProfileSet, name: &str) {
    let ctx = SetContext {
        now: at("2026-03-01T00:00:00Z"),
        transaction: None,
    };
    let (connector, profile): (u32, ChargingProfile) =
        parse_set_charging_profile(&fixture(name), &ctx).expect("fixture is accepted");
    set.install(connector, profile).expect("room");
}

const THREE_PHASE: Electrical = Electrical {
    phases: 3,
    voltage: 230.0,
    max_current: 32.0,
    min_current: 6.0,
};

/// `[(startPeriod, limit)]` of a composite schedule.
fn periods(v: &Value) -> Vec<(u64, f64)> {
    v["chargingSchedule"]["chargingSchedulePeriod"]
        .as_array()
        .expect("periods")
        .iter()
        .map(|p| {
            (
                p["startPeriod"].as_u64().expect("startPeriod"),
                p["limit"].as_f64().expect("limit"),
            )
        })
        .collect()
}

fn composite(set: &ProfileSet, now: &str, duration: u32, unit: Option<RateUnit>) -> Value {
    composite_schedule(set, 1, at(now), duration, unit, None, &THREE_PHASE).expect("accepted")
}

#[test]
fn a_period_starting_inside_the_range_is_reported() {
    // EVerest/libocpp #609.
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_from_1000_10A_then_20A");
    let v = composite(&set, "2026-03-04T09:50:00Z", 3600, Some(RateUnit::A));
    assert_eq!(v["status"], json!("Accepted"));
    assert_eq!(v["connectorId"], json!(1));
    assert_eq!(v["scheduleStart"], json!("2026-03-04T09:50:00.000Z"));
    assert_eq!(v["chargingSchedule"]["duration"], json!(3600));
    assert_eq!(v["chargingSchedule"]["chargingRateUnit"], json!("A"));
    // errata 3.24: scheduleStart, not chargingSchedule.startSchedule.
    assert!(v["chargingSchedule"].get("startSchedule").is_none());
    // Before the profile starts nothing limits: the charger's maximum.
    assert_eq!(periods(&v), vec![(0, 32.0), (600, 10.0), (2400, 20.0)]);
    assert_eq!(
        v["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"],
        json!(3)
    );
}

#[test]
fn charge_point_max_caps_every_interval() {
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_from_1000_10A_then_20A");
    install(&mut set, "ChargePointMaxProfile_16A");
    let v = composite(&set, "2026-03-04T09:50:00Z", 3600, None);
    assert_eq!(periods(&v), vec![(0, 16.0), (600, 10.0), (2400, 16.0)]);
}

#[test]
fn duration_0_gives_the_limit_now() {
    // EVerest/EVerest PR #1716, libocpp #1169.
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_from_1000_10A_then_20A");
    let v = composite(&set, "2026-03-04T09:50:00Z", 0, None);
    assert_eq!(v["chargingSchedule"]["duration"], json!(0));
    assert_eq!(periods(&v), vec![(0, 32.0)]);
    let v = composite(&set, "2026-03-04T10:00:00Z", 0, None);
    assert_eq!(periods(&v), vec![(0, 10.0)]);
    // A profile with duration 0 never shows up.
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector0_10A");
    install(&mut set, "TxDefaultProfile_duration0");
    let v = composite(&set, "2026-01-01T00:00:00Z", 60, None);
    assert_eq!(periods(&v), vec![(0, 10.0)]);
}

#[test]
fn power_profiles_are_reported_in_watts_by_default_and_convertible() {
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_11kW");
    // sap-labs-france/ev-server #1837: a W profile comes back in W unless A is asked for.
    let v = composite(&set, "2026-03-05T12:00:00Z", 600, None);
    assert_eq!(v["chargingSchedule"]["chargingRateUnit"], json!("W"));
    assert_eq!(periods(&v), vec![(0, 11000.0)]);
    let v = composite(&set, "2026-03-05T12:00:00Z", 600, Some(RateUnit::A));
    assert_eq!(periods(&v), vec![(0, 15.9)]);
    // 1 phase wired: 47.8 A clamped to 32 A, × 230 V × 1 phase (lbbrhzn/ocpp #2117: only
    // phases that carry current count).
    let one = Electrical {
        phases: 1,
        ..THREE_PHASE
    };
    let v = composite_schedule(&set, 1, at("2026-03-05T12:00:00Z"), 600, None, None, &one)
        .expect("accepted");
    assert_eq!(periods(&v), vec![(0, 7360.0)]);
    assert_eq!(
        v["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"],
        json!(1)
    );
    // An A profile asked for in W: A × 230 V × 3.
    let mut set = ProfileSet::new();
    install(&mut set, "ChargePointMaxProfile_16A");
    let v = composite(&set, "2026-03-05T12:00:00Z", 600, Some(RateUnit::W));
    assert_eq!(periods(&v), vec![(0, 11040.0)]);
}

#[test]
fn odd_limits_are_reported_as_multiples_of_a_tenth() {
    let now = at("2026-03-05T12:00:00Z");
    let mut set = ProfileSet::new();
    let p = parse_remote_start_profile(&fixture("RemoteStart_TxProfile_evcc_8116"), now)
        .expect("accepted");
    set.install(1, p).expect("room");
    let tx = TxContext {
        id: Some(5),
        started: now,
    };
    let v =
        composite_schedule(&set, 1, now, 3600, None, Some(&tx), &THREE_PHASE).expect("accepted");
    assert_eq!(periods(&v), vec![(0, 8.2)]);
    assert_eq!(
        v["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"].to_string(),
        "8.2"
    );
}

#[test]
fn connector_0_is_the_whole_charge_point_and_unknown_connectors_are_rejected() {
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector1_6A");
    install(&mut set, "ChargePointMaxProfile_16A");
    let now = at("2026-03-05T12:00:00Z");
    let zero = composite_schedule(&set, 0, now, 60, None, None, &THREE_PHASE).expect("accepted");
    assert_eq!(zero["connectorId"], json!(0));
    assert_eq!(periods(&zero), vec![(0, 6.0)]);
    let unknown = composite_schedule(&set, 2, now, 60, None, None, &THREE_PHASE);
    assert!(matches!(
        unknown,
        Err(Reject::Status {
            status: "Rejected",
            ..
        })
    ));
    assert_eq!(
        unknown.expect_err("rejected").reply(),
        Ok(json!({"status": "Rejected"}))
    );
}

#[test]
fn a_daily_recurrence_over_two_days() {
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector0_10A");
    install(&mut set, "Recurring_Daily_2200_across_midnight");
    let v = composite(&set, "2026-03-05T20:00:00Z", 2 * 86_400, None);
    let h = 3600;
    assert_eq!(
        periods(&v),
        vec![
            (0, 10.0),
            (2 * h, 16.0),
            (6 * h, 11.0),
            (10 * h, 10.0),
            (26 * h, 16.0),
            (30 * h, 11.0),
            (34 * h, 10.0),
        ]
    );
}

#[test]
fn a_request_at_a_fraction_of_a_second_starts_on_the_whole_second() {
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_from_1000_10A_then_20A");
    let v = composite(&set, "2026-03-04T09:59:59.750Z", 120, None);
    assert_eq!(v["scheduleStart"], json!("2026-03-04T09:59:59.000Z"));
    assert_eq!(periods(&v), vec![(0, 32.0), (1, 10.0)]);
}

#[test]
fn without_a_transaction_relative_schedules_start_at_schedule_start() {
    // As if a transaction started now (libocpp's reading); with a transaction, from its start.
    let mut set = ProfileSet::new();
    let ctx = SetContext {
        now: at("2026-03-01T00:00:00Z"),
        transaction: None,
    };
    let relative = json!({"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 3, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": "A", "duration": 5400,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}, {"startPeriod": 1800, "limit": 12.0}]}}});
    let (c, p) = parse_set_charging_profile(&relative, &ctx).expect("valid");
    set.install(c, p).expect("room");
    let v = composite(&set, "2026-03-05T12:00:00Z", 7200, None);
    assert_eq!(periods(&v), vec![(0, 6.0), (1800, 12.0), (5400, 32.0)]);
    let tx = TxContext {
        id: Some(1),
        started: at("2026-03-05T11:40:00Z"),
    };
    let v = composite_schedule(
        &set,
        1,
        at("2026-03-05T12:00:00Z"),
        7200,
        None,
        Some(&tx),
        &THREE_PHASE,
    )
    .expect("accepted");
    assert_eq!(periods(&v), vec![(0, 6.0), (600, 12.0), (4200, 32.0)]);
}
