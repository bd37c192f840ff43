//! limit_at driven by the JSON fixture profiles in tests/fixtures/charging_profiles/, one scenario
//! per test: stacking, recurrence, validity, units, purposes and the field pitfalls of
//! ocpp16-facts §2.3.

mod common;

use chargebridge::smartcharging::{
    ChargingProfile, Electrical, Limit, ProfileSet, Purpose, SetContext, Setpoint, TxContext,
    limit_at, parse_remote_start_profile, parse_set_charging_profile,
};
use common::profiles::{at, fixture};

/// Parses a SetChargingProfile fixture as the charge point would and installs it.
fn install_with(set: &mut ProfileSet, name: &str, tx: Option<TxContext>) -> (u32, ChargingProfile) {
    let ctx = SetContext {
        now: at("2026-03-01T00:00:00Z"),
        transaction: tx,
    };
    let (connector, profile) =
        parse_set_charging_profile(&fixture(name), &ctx).expect("fixture is accepted");
    set.install(connector, profile.clone())
        .expect("room to install");
    (connector, profile)
}

fn install(set: &mut ProfileSet, name: &str) {
    install_with(set, name, None);
}

const THREE_PHASE: Electrical = Electrical {
    phases: 3,
    voltage: 230.0,
    max_current: 32.0,
    min_current: 6.0,
};

const ONE_PHASE: Electrical = Electrical {
    phases: 1,
    ..THREE_PHASE
};

fn limit(set: &ProfileSet, t: &str) -> Limit {
    limit_at(set, 1, at(t), None, &THREE_PHASE)
}

fn amps(set: &ProfileSet, t: &str) -> Option<f64> {
    limit(set, t).amps
}

#[test]
fn without_profiles_nothing_limits() {
    let set = ProfileSet::new();
    assert_eq!(
        limit(&set, "2026-03-05T12:00:00Z"),
        Limit {
            amps: None,
            source: None,
            next_change: None
        }
    );
}

#[test]
fn charge_point_max_caps_the_tx_default() {
    let mut set = ProfileSet::new();
    install(&mut set, "ChargePointMaxProfile_16A");
    assert_eq!(amps(&set, "2026-03-05T12:00:00Z"), Some(16.0));
    install(&mut set, "TxDefaultProfile_connector0_10A");
    let l = limit(&set, "2026-03-05T12:00:00Z");
    assert_eq!(l.amps, Some(10.0));
    assert_eq!(l.source, Some((Purpose::TxDefaultProfile, 10)));
    // The cap holds when the default is higher than it.
    let mut set = ProfileSet::new();
    install(&mut set, "ChargePointMaxProfile_16A");
    install(&mut set, "TxDefaultProfile_11kW");
    let l = limit(&set, "2026-03-05T12:00:00Z");
    assert_eq!(l.amps, Some(15.9));
    let mut tight = THREE_PHASE;
    tight.voltage = 200.0; // 11000 W / 600 V = 18.3 A > 16 A
    let l = limit_at(&set, 1, at("2026-03-05T12:00:00Z"), None, &tight);
    assert_eq!(l.amps, Some(16.0));
    assert_eq!(l.source, Some((Purpose::ChargePointMaxProfile, 1)));
}

#[test]
fn charge_point_max_is_shared_and_applies_with_or_without_a_transaction() {
    // matth-x/MicroOcppSimulator #21: one ChargePointMaxProfile for the whole charge point.
    let mut set = ProfileSet::new();
    let (connector, _) = install_with(&mut set, "ChargePointMaxProfile_16A", None);
    assert_eq!(connector, 0);
    let tx = TxContext {
        id: Some(3),
        started: at("2026-03-05T11:00:00Z"),
    };
    let now = at("2026-03-05T12:00:00Z");
    for (c, t) in [(0, None), (1, None), (0, Some(&tx)), (1, Some(&tx))] {
        assert_eq!(
            limit_at(&set, c, now, t, &THREE_PHASE).amps,
            Some(16.0),
            "connector {c}"
        );
    }
}

#[test]
fn higher_stack_level_wins_and_falls_back_when_its_duration_ends() {
    // EVerest/libocpp #819: the prevailing profile is the highest stack level that applies now.
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector0_10A");
    install(&mut set, "TxDefaultProfile_stack1_evening_8A_then_14A");
    let l = limit(&set, "2026-03-02T17:59:59Z");
    assert_eq!(l.amps, Some(10.0));
    assert_eq!(l.next_change, Some(at("2026-03-02T18:00:00Z")));
    let l = limit(&set, "2026-03-02T18:00:00Z");
    assert_eq!(
        (l.amps, l.source),
        (Some(8.0), Some((Purpose::TxDefaultProfile, 12)))
    );
    assert_eq!(l.next_change, Some(at("2026-03-02T19:00:00Z")));
    let l = limit(&set, "2026-03-02T19:00:00Z");
    assert_eq!(l.amps, Some(14.0));
    assert_eq!(l.next_change, Some(at("2026-03-02T21:00:00Z")));
    // errata 3.43/3.44: past `duration` the lower stack level applies again.
    let l = limit(&set, "2026-03-02T21:00:00Z");
    assert_eq!(
        (l.amps, l.source),
        (Some(10.0), Some((Purpose::TxDefaultProfile, 10)))
    );
    assert_eq!(l.next_change, None);
}

#[test]
fn charge_point_max_stacks_too() {
    let mut set = ProfileSet::new();
    install(&mut set, "ChargePointMaxProfile_16A");
    install(&mut set, "ChargePointMaxProfile_stack1_evening_12A");
    install(&mut set, "TxDefaultProfile_11kW");
    assert_eq!(amps(&set, "2026-03-02T16:59:59Z"), Some(15.9));
    let l = limit(&set, "2026-03-02T17:00:00Z");
    assert_eq!(
        (l.amps, l.source),
        (Some(12.0), Some((Purpose::ChargePointMaxProfile, 2)))
    );
    assert_eq!(l.next_change, Some(at("2026-03-02T20:00:00Z")));
    assert_eq!(amps(&set, "2026-03-02T20:00:00Z"), Some(15.9));
}

#[test]
fn connector_tx_default_beats_the_connector_0_default() {
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector0_10A");
    install(&mut set, "TxDefaultProfile_connector1_6A");
    let l = limit(&set, "2026-03-05T12:00:00Z");
    assert_eq!(
        (l.amps, l.source),
        (Some(6.0), Some((Purpose::TxDefaultProfile, 11)))
    );
    assert!(set.clear(None, Some(1), None, None));
    assert_eq!(amps(&set, "2026-03-05T12:00:00Z"), Some(10.0));
}

#[test]
fn daily_recurrence_restarts_at_the_start_schedule_time_and_runs_across_midnight() {
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector0_10A");
    install(&mut set, "Recurring_Daily_2200_across_midnight");
    let l = limit(&set, "2026-03-05T21:59:00Z");
    assert_eq!(l.amps, Some(10.0));
    assert_eq!(l.next_change, Some(at("2026-03-05T22:00:00Z")));
    let l = limit(&set, "2026-03-05T22:00:00Z");
    assert_eq!(
        (l.amps, l.source),
        (Some(16.0), Some((Purpose::TxDefaultProfile, 20)))
    );
    assert_eq!(l.next_change, Some(at("2026-03-06T02:00:00Z")));
    assert_eq!(amps(&set, "2026-03-05T23:59:59.999Z"), Some(16.0));
    assert_eq!(amps(&set, "2026-03-06T00:00:00Z"), Some(16.0));
    let l = limit(&set, "2026-03-06T02:00:00Z");
    assert_eq!(l.amps, Some(11.0));
    assert_eq!(l.next_change, Some(at("2026-03-06T06:00:00Z")));
    // The 8 h duration ends at 06:00: back to the lower stack level until 22:00.
    let l = limit(&set, "2026-03-06T06:00:00Z");
    assert_eq!(l.amps, Some(10.0));
    assert_eq!(l.next_change, Some(at("2026-03-06T22:00:00Z")));
    // Not restarted at 00:00 (SAP simulator PR #634).
    assert_ne!(
        limit(&set, "2026-03-06T00:00:00Z").next_change,
        Some(at("2026-03-06T00:00:00Z"))
    );
}

#[test]
fn weekly_recurrence_runs_across_the_week_boundary() {
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector0_10A");
    install(&mut set, "Recurring_Weekly_Sunday_2000_48h");
    assert_eq!(amps(&set, "2026-03-08T19:59:59Z"), Some(10.0)); // Sunday
    assert_eq!(amps(&set, "2026-03-08T20:00:00Z"), Some(7.0));
    assert_eq!(amps(&set, "2026-03-09T00:00:00Z"), Some(7.0)); // Monday, a new ISO week
    let l = limit(&set, "2026-03-09T20:00:00Z");
    assert_eq!(l.amps, Some(9.0));
    assert_eq!(l.next_change, Some(at("2026-03-10T20:00:00Z")));
    let l = limit(&set, "2026-03-10T20:00:00Z"); // Tuesday: the 48 h are over
    assert_eq!(l.amps, Some(10.0));
    assert_eq!(l.next_change, Some(at("2026-03-15T20:00:00Z")));
    assert_eq!(amps(&set, "2026-03-15T20:00:00Z"), Some(7.0));
}

#[test]
fn validity_window_bounds_a_profile() {
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector0_10A");
    install(&mut set, "TxDefaultProfile_valid_0800_1200_5A");
    let l = limit(&set, "2026-03-03T07:59:59Z");
    assert_eq!(l.amps, Some(10.0));
    assert_eq!(l.next_change, Some(at("2026-03-03T08:00:00Z"))); // validFrom given as 10:00+02:00
    let l = limit(&set, "2026-03-03T08:00:00Z");
    assert_eq!(l.amps, Some(5.0));
    assert_eq!(l.next_change, Some(at("2026-03-03T12:00:00Z")));
    let l = limit(&set, "2026-03-03T12:00:00Z");
    assert_eq!(l.amps, Some(10.0));
    assert_eq!(l.next_change, None);
}

#[test]
fn watts_become_amps_per_phase_with_the_nominal_voltage() {
    // c-jimenez/open-ocpp #7 (W→A), lbbrhzn/ocpp #1545 (a W limit must not be ignored).
    let now = at("2026-03-05T12:00:00Z");
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_11kW");
    // 3 phases: 11000 / (230 × 3) = 15.94 → 15.9 A.
    assert_eq!(limit_at(&set, 1, now, None, &THREE_PHASE).amps, Some(15.9));
    // 1 phase wired: numberPhases absent ⇒ 3, capped at 1 (errata 3.34): 47.8 A, clamped to 32 A.
    assert_eq!(limit_at(&set, 1, now, None, &ONE_PHASE).amps, Some(32.0));
    let big = Electrical {
        max_current: 63.0,
        ..ONE_PHASE
    };
    assert_eq!(limit_at(&set, 1, now, None, &big).amps, Some(47.8));

    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_3680W_1phase");
    // numberPhases 1: 3680 / 230 = 16 A on either wallbox.
    assert_eq!(limit_at(&set, 1, now, None, &THREE_PHASE).amps, Some(16.0));
    assert_eq!(limit_at(&set, 1, now, None, &ONE_PHASE).amps, Some(16.0));
}

#[test]
fn limits_are_clamped_to_max_current() {
    let mut set = ProfileSet::new();
    install(&mut set, "ChargePointMaxProfile_16A");
    let small = Electrical {
        max_current: 13.0,
        ..THREE_PHASE
    };
    let l = limit_at(&set, 1, at("2026-03-05T12:00:00Z"), None, &small);
    assert_eq!(l.amps, Some(13.0));
}

#[test]
fn remote_start_tx_profile_with_an_odd_limit_overrides_the_default() {
    let now = at("2026-03-05T12:00:00Z");
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector1_6A");
    let profile = parse_remote_start_profile(&fixture("RemoteStart_TxProfile_evcc_8116"), now)
        .expect("evcc's profile is accepted");
    set.install(1, profile).expect("room");
    let tx = TxContext {
        id: None,
        started: now,
    };
    let l = limit_at(&set, 1, now, Some(&tx), &THREE_PHASE);
    // 8.228260869565219 rounded down; the TxProfile replaces the (lower) default.
    assert_eq!(
        (l.amps, l.source),
        (Some(8.2), Some((Purpose::TxProfile, 1)))
    );
    let tx = TxContext { id: Some(5), ..tx };
    assert_eq!(
        limit_at(&set, 1, now, Some(&tx), &THREE_PHASE).amps,
        Some(8.2)
    );
    // No transaction, no TxProfile.
    assert_eq!(limit_at(&set, 1, now, None, &THREE_PHASE).amps, Some(6.0));
    // The transaction ends: its profile is gone for good (libocpp #781).
    set.end_transaction(Some(5));
    assert_eq!(
        limit_at(&set, 1, now, Some(&tx), &THREE_PHASE).amps,
        Some(6.0)
    );
    assert_eq!(set.len(), 1);
}

#[test]
fn relative_tx_profile_runs_from_the_transaction_start_then_falls_back() {
    let tx = TxContext {
        id: Some(77),
        started: at("2026-03-05T12:00:00Z"),
    };
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector0_10A");
    install_with(&mut set, "TxProfile_Relative_6A_then_16A_2h", Some(tx));
    let l = |t: &str| limit_at(&set, 1, at(t), Some(&tx), &THREE_PHASE);
    assert_eq!(l("2026-03-05T12:00:00Z").amps, Some(6.0));
    assert_eq!(
        l("2026-03-05T12:00:00Z").next_change,
        Some(at("2026-03-05T12:30:00Z"))
    );
    assert_eq!(l("2026-03-05T12:30:00Z").amps, Some(16.0));
    assert_eq!(
        l("2026-03-05T12:30:00Z").next_change,
        Some(at("2026-03-05T14:00:00Z"))
    );
    let after = l("2026-03-05T14:00:00Z");
    assert_eq!(
        (after.amps, after.source),
        (Some(10.0), Some((Purpose::TxDefaultProfile, 10)))
    );
    // Another transaction does not see it.
    let other = TxContext { id: Some(78), ..tx };
    assert_eq!(
        limit_at(
            &set,
            1,
            at("2026-03-05T12:00:00Z"),
            Some(&other),
            &THREE_PHASE
        )
        .amps,
        Some(10.0)
    );
}

#[test]
fn a_profile_with_duration_0_never_applies() {
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector0_10A");
    install(&mut set, "TxDefaultProfile_duration0");
    for t in [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.5Z",
        "2026-03-05T12:00:00Z",
    ] {
        assert_eq!(amps(&set, t), Some(10.0), "{t}");
    }
}

#[test]
fn a_limit_below_min_charging_rate_pauses() {
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_minChargingRate_6A");
    let l = limit(&set, "2026-01-01T00:30:00Z");
    assert_eq!(l.amps, Some(0.0));
    assert_eq!(l.next_change, Some(at("2026-01-01T01:00:00Z")));
    assert_eq!(amps(&set, "2026-01-01T01:00:00Z"), Some(6.0));
}

#[test]
fn evcc_default_profile_at_max_stack_level_applies_from_its_start() {
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector0_10A");
    install(&mut set, "evcc_TxDefaultProfile_stack8");
    // startSchedule 09:59:58.123+01:00 = 08:59:58.123Z.
    assert_eq!(amps(&set, "2026-03-05T08:59:58Z"), Some(10.0));
    assert_eq!(
        limit(&set, "2026-03-05T08:59:58Z").next_change,
        Some(at("2026-03-05T08:59:58.123Z"))
    );
    assert_eq!(amps(&set, "2026-03-05T08:59:58.123Z"), Some(16.0));
}

#[test]
fn setpoints_turn_off_below_the_map_minimum_and_default_to_max_current() {
    let mut set = ProfileSet::new();
    assert_eq!(
        limit(&set, "2026-01-01T00:30:00Z").setpoint(&THREE_PHASE),
        Setpoint::Amps(32.0)
    );
    install(&mut set, "TxDefaultProfile_minChargingRate_6A");
    // 0 A (below minChargingRate) and anything under the map's 6 A minimum are `off`.
    assert_eq!(
        limit(&set, "2026-01-01T00:30:00Z").setpoint(&THREE_PHASE),
        Setpoint::Off
    );
    assert_eq!(
        limit(&set, "2026-01-01T01:00:00Z").setpoint(&THREE_PHASE),
        Setpoint::Amps(6.0)
    );
    let picky = Electrical {
        min_current: 6.5,
        ..THREE_PHASE
    };
    assert_eq!(
        limit_at(&set, 1, at("2026-01-01T01:00:00Z"), None, &picky).setpoint(&picky),
        Setpoint::Off
    );
}

#[test]
fn a_replacement_valid_only_later_leaves_a_gap() {
    // §3.13.2: the same stackLevel and purpose replaces at once; until the new validFrom no
    // profile of that purpose applies.
    let mut set = ProfileSet::new();
    install(&mut set, "TxDefaultProfile_connector0_10A");
    let mut later = fixture("TxDefaultProfile_connector0_10A");
    later["csChargingProfiles"]["chargingProfileId"] = serde_json::json!(99);
    later["csChargingProfiles"]["validFrom"] = serde_json::json!("2026-03-06T00:00:00Z");
    later["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] =
        serde_json::json!(12.0);
    let ctx = SetContext {
        now: at("2026-03-05T12:00:00Z"),
        transaction: None,
    };
    let (c, p) = parse_set_charging_profile(&later, &ctx).expect("valid");
    set.install(c, p).expect("room");
    assert_eq!(set.len(), 1);
    let l = limit(&set, "2026-03-05T12:00:00Z");
    assert_eq!(
        (l.amps, l.next_change),
        (None, Some(at("2026-03-06T00:00:00Z")))
    );
    assert_eq!(amps(&set, "2026-03-06T00:00:00Z"), Some(12.0));
}

#[test]
fn a_tx_profile_may_have_a_validity_window() {
    // errata 3.65/3.66.
    let tx = TxContext {
        id: Some(77),
        started: at("2026-03-05T12:00:00Z"),
    };
    let mut v = fixture("TxProfile_Relative_6A_then_16A_2h");
    v["csChargingProfiles"]["validTo"] = serde_json::json!("2026-03-05T12:10:00Z");
    let ctx = SetContext {
        now: at("2026-03-05T12:00:00Z"),
        transaction: Some(tx),
    };
    let (c, p) = parse_set_charging_profile(&v, &ctx).expect("validTo is allowed on a TxProfile");
    let mut set = ProfileSet::new();
    set.install(c, p).expect("room");
    let l = limit_at(&set, 1, at("2026-03-05T12:05:00Z"), Some(&tx), &THREE_PHASE);
    assert_eq!(
        (l.amps, l.next_change),
        (Some(6.0), Some(at("2026-03-05T12:10:00Z")))
    );
    let l = limit_at(&set, 1, at("2026-03-05T12:10:00Z"), Some(&tx), &THREE_PHASE);
    assert_eq!(l.amps, None);
}
