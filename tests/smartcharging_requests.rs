//! SetChargingProfile / RemoteStartTransaction profile / ClearChargingProfile /
//! GetCompositeSchedule payloads: what is accepted, what is a CALLERROR, what is `Rejected`, and
//! how installed profiles replace, clear and persist.

mod common;

use chargebridge::ocpp::rpc::ErrorCode;
use chargebridge::smartcharging::{
    CHARGE_PROFILE_MAX_STACK_LEVEL, CHARGING_SCHEDULE_MAX_PERIODS, ChargingProfile, ClearRequest,
    CompositeRequest, Kind, MAX_CHARGING_PROFILES_INSTALLED, ProfileSet, Purpose, RateUnit, Reject,
    SetContext, TxContext, parse_clear_charging_profile, parse_get_composite_schedule,
    parse_remote_start_profile, parse_set_charging_profile,
};
use common::profiles::at;
use serde_json::{Value, json};

fn idle() -> SetContext {
    SetContext {
        now: at("2026-03-05T12:00:00Z"),
        transaction: None,
    }
}

fn charging(id: Option<i32>) -> SetContext {
    SetContext {
        transaction: Some(TxContext {
            id,
            started: at("2026-03-05T11:00:00Z"),
        }),
        ..idle()
    }
}

/// A valid TxDefaultProfile payload on connector 1, to be bent by each test.
fn base() -> Value {
    json!({
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 7,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": "2026-03-05T00:00:00Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]
            }
        }
    })
}

fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = base();
    edit(&mut v);
    v
}

fn profile_mut(v: &mut Value) -> &mut Value {
    &mut v["csChargingProfiles"]
}

fn rejected(r: Result<(u32, ChargingProfile), Reject>) -> String {
    match r {
        Err(Reject::Status { status, why }) => {
            assert_eq!(status, "Rejected");
            why
        }
        other => panic!("expected status Rejected, got {other:?}"),
    }
}

fn call_error<T: std::fmt::Debug>(r: Result<T, Reject>) -> ErrorCode {
    match r {
        Err(Reject::CallError { code, .. }) => code,
        other => panic!("expected a CALLERROR, got {other:?}"),
    }
}

#[test]
fn a_plain_tx_default_profile_is_read() {
    let (connector, p) = parse_set_charging_profile(&base(), &idle()).expect("valid");
    assert_eq!(connector, 1);
    assert_eq!(p.id, 7);
    assert_eq!(p.purpose, Purpose::TxDefaultProfile);
    assert_eq!(p.kind, Kind::Absolute);
    assert_eq!(p.schedule.unit, RateUnit::A);
    assert_eq!(p.schedule.start_schedule, Some(at("2026-03-05T00:00:00Z")));
    assert_eq!(p.schedule.periods[0].limit, 16.0);
}

#[test]
fn lenient_input_is_accepted() {
    let v = json!({
        "connectorId": 1.0,
        "csChargingProfiles": {
            "chargingProfileId": 7, "stackLevel": 8.0, "transactionId": null,
            "chargingProfilePurpose": "txdefaultprofile", "chargingProfileKind": "ABSOLUTE",
            "validFrom": "2026-03-05T13:00:00+01", "validTo": "2026-03-06T00:00:00",
            "chargingSchedule": {
                "startSchedule": "2026-03-05T01:00:00+01:00",
                "chargingRateUnit": "a", "minChargingRate": 1.25,
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 8.228260869565219},
                    {"startPeriod": 60, "limit": 7, "numberPhases": 1}
                ]
            }
        }
    });
    let (_, p) = parse_set_charging_profile(&v, &idle()).expect("lenient in");
    assert_eq!(p.stack_level, 8);
    assert_eq!(p.valid_from, Some(at("2026-03-05T12:00:00Z")));
    assert_eq!(p.valid_to, Some(at("2026-03-06T00:00:00Z")));
    assert_eq!(p.schedule.start_schedule, Some(at("2026-03-05T00:00:00Z")));
    // Kept exactly: the limit is rounded only when applied.
    assert_eq!(p.schedule.periods[0].limit, 8.228260869565219);
    assert_eq!(p.schedule.periods[1].number_phases, Some(1));
}

#[test]
fn malformed_payloads_are_call_errors() {
    let ctx = idle();
    let parse = |v: &Value| parse_set_charging_profile(v, &ctx);
    assert_eq!(
        call_error(parse(&json!([1, 2]))),
        ErrorCode::FormationViolation
    );
    assert_eq!(
        call_error(parse(&json!("x"))),
        ErrorCode::FormationViolation
    );
    assert_eq!(
        call_error(parse(&json!({"connectorId": 1}))),
        ErrorCode::OccurenceConstraintViolation
    );
    let cases: Vec<(Value, ErrorCode)> = vec![
        (
            with(|v| v["connectorId"] = json!(2)),
            ErrorCode::PropertyConstraintViolation,
        ),
        (
            with(|v| v["connectorId"] = json!(-1)),
            ErrorCode::PropertyConstraintViolation,
        ),
        (
            with(|v| v["connectorId"] = json!("1")),
            ErrorCode::TypeConstraintViolation,
        ),
        (
            with(|v| v["connectorId"] = json!(1.5)),
            ErrorCode::TypeConstraintViolation,
        ),
        (
            with(|v| profile_mut(v)["chargingSchedule"]["chargingRateUnit"] = json!("kW")),
            ErrorCode::PropertyConstraintViolation,
        ),
        (
            with(|v| profile_mut(v)["chargingProfilePurpose"] = json!("Whatever")),
            ErrorCode::PropertyConstraintViolation,
        ),
        (
            with(|v| profile_mut(v)["chargingProfileKind"] = json!(3)),
            ErrorCode::TypeConstraintViolation,
        ),
        (
            with(|v| profile_mut(v)["stackLevel"] = json!(-1)),
            ErrorCode::PropertyConstraintViolation,
        ),
        (
            with(|v| profile_mut(v)["chargingProfileId"] = json!(1u64 << 40)),
            ErrorCode::PropertyConstraintViolation,
        ),
        (
            with(|v| profile_mut(v)["validFrom"] = json!("tomorrow")),
            ErrorCode::TypeConstraintViolation,
        ),
        (
            with(|v| profile_mut(v)["chargingSchedule"]["chargingSchedulePeriod"] = json!({})),
            ErrorCode::TypeConstraintViolation,
        ),
        (
            with(|v| {
                profile_mut(v)["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] =
                    json!("16")
            }),
            ErrorCode::TypeConstraintViolation,
        ),
        (
            with(|v| {
                profile_mut(v)["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"] =
                    json!(4)
            }),
            ErrorCode::PropertyConstraintViolation,
        ),
        (
            with(|v| {
                profile_mut(v)
                    .as_object_mut()
                    .map(|o| o.remove("chargingSchedule"));
            }),
            ErrorCode::OccurenceConstraintViolation,
        ),
    ];
    for (payload, code) in cases {
        assert_eq!(call_error(parse(&payload)), code, "{payload}");
    }
}

#[test]
fn stack_level_is_capped_at_charge_profile_max_stack_level() {
    let max = CHARGE_PROFILE_MAX_STACK_LEVEL;
    let ok = with(|v| profile_mut(v)["stackLevel"] = json!(max));
    assert!(parse_set_charging_profile(&ok, &idle()).is_ok());
    let too_high = with(|v| profile_mut(v)["stackLevel"] = json!(max + 1));
    assert!(rejected(parse_set_charging_profile(&too_high, &idle())).contains("stackLevel"));
}

#[test]
fn periods_are_capped_at_charging_schedule_max_periods() {
    // open-ocpp checked the period count against the stack level; this checks the right key.
    let periods = |n: usize| {
        let list: Vec<Value> = (0..n)
            .map(|i| json!({"startPeriod": i * 60, "limit": 10.0}))
            .collect();
        with(|v| profile_mut(v)["chargingSchedule"]["chargingSchedulePeriod"] = json!(list))
    };
    assert!(parse_set_charging_profile(&periods(CHARGING_SCHEDULE_MAX_PERIODS), &idle()).is_ok());
    let why = rejected(parse_set_charging_profile(
        &periods(CHARGING_SCHEDULE_MAX_PERIODS + 1),
        &idle(),
    ));
    assert!(why.contains("ChargingScheduleMaxPeriods"), "{why}");
    assert!(!rejected(parse_set_charging_profile(&periods(0), &idle())).is_empty());
}

#[test]
fn schedule_rules_are_enforced() {
    let period_list = |list: Value| {
        with(move |v| profile_mut(v)["chargingSchedule"]["chargingSchedulePeriod"] = list)
    };
    let cases = [
        (
            period_list(json!([{"startPeriod": 60, "limit": 10.0}])),
            "first startPeriod",
        ),
        (
            period_list(
                json!([{"startPeriod": 0, "limit": 10.0}, {"startPeriod": 0, "limit": 8.0}]),
            ),
            "ascending",
        ),
        (
            period_list(
                json!([{"startPeriod": 0, "limit": 10.0}, {"startPeriod": 120, "limit": 8.0}, {"startPeriod": 60, "limit": 6.0}]),
            ),
            "ascending",
        ),
        (
            period_list(json!([{"startPeriod": 0, "limit": -1.0}])),
            "negative",
        ),
        (
            with(|v| profile_mut(v)["chargingSchedule"]["minChargingRate"] = json!(-0.5)),
            "minChargingRate",
        ),
        // errata 3.56: recurrencyKind only with Recurring.
        (
            with(|v| profile_mut(v)["recurrencyKind"] = json!("Daily")),
            "recurrencyKind",
        ),
        (
            with(|v| profile_mut(v)["chargingProfileKind"] = json!("Recurring")),
            "recurrencyKind",
        ),
        (
            with(|v| {
                let p = profile_mut(v);
                p["chargingProfileKind"] = json!("Recurring");
                p["recurrencyKind"] = json!("Weekly");
                p["chargingSchedule"]
                    .as_object_mut()
                    .map(|s| s.remove("startSchedule"));
            }),
            "startSchedule",
        ),
        (
            with(|v| profile_mut(v)["chargingProfileKind"] = json!("Relative")),
            "startSchedule",
        ),
        (
            with(|v| {
                let p = profile_mut(v);
                p["validFrom"] = json!("2026-03-06T00:00:00Z");
                p["validTo"] = json!("2026-03-05T00:00:00Z");
            }),
            "validTo",
        ),
        (
            with(|v| profile_mut(v)["transactionId"] = json!(5)),
            "transactionId",
        ),
    ];
    for (payload, needle) in cases {
        let why = rejected(parse_set_charging_profile(&payload, &charging(Some(5))));
        assert!(why.contains(needle), "{why} / {payload}");
    }
}

#[test]
fn an_absolute_profile_without_start_schedule_starts_on_arrival() {
    let v = with(|v| {
        profile_mut(v)["chargingSchedule"]
            .as_object_mut()
            .map(|s| s.remove("startSchedule"));
    });
    let (_, p) = parse_set_charging_profile(&v, &idle()).expect("valid");
    assert_eq!(p.schedule.start_schedule, Some(idle().now));
}

#[test]
fn purposes_go_on_their_connectors() {
    let purpose_on = |purpose: &str, connector: u32| {
        with(|v| {
            v["connectorId"] = json!(connector);
            profile_mut(v)["chargingProfilePurpose"] = json!(purpose);
        })
    };
    let ctx = charging(Some(5));
    assert!(parse_set_charging_profile(&purpose_on("ChargePointMaxProfile", 0), &ctx).is_ok());
    rejected(parse_set_charging_profile(
        &purpose_on("ChargePointMaxProfile", 1),
        &ctx,
    ));
    assert!(parse_set_charging_profile(&purpose_on("TxDefaultProfile", 0), &ctx).is_ok());
    assert!(parse_set_charging_profile(&purpose_on("TxDefaultProfile", 1), &ctx).is_ok());
    rejected(parse_set_charging_profile(
        &purpose_on("TxProfile", 0),
        &ctx,
    ));
    assert!(parse_set_charging_profile(&purpose_on("TxProfile", 1), &ctx).is_ok());
}

#[test]
fn tx_profile_needs_the_running_transaction() {
    let tx_profile = |id: Option<i32>| {
        with(|v| {
            let p = profile_mut(v);
            p["chargingProfilePurpose"] = json!("TxProfile");
            if let Some(id) = id {
                p["transactionId"] = json!(id);
            }
        })
    };
    rejected(parse_set_charging_profile(&tx_profile(None), &idle()));
    rejected(parse_set_charging_profile(&tx_profile(Some(5)), &idle()));
    rejected(parse_set_charging_profile(
        &tx_profile(Some(6)),
        &charging(Some(5)),
    ));
    rejected(parse_set_charging_profile(
        &tx_profile(Some(5)),
        &charging(None),
    ));
    let (_, p) = parse_set_charging_profile(&tx_profile(Some(5)), &charging(Some(5))).expect("ok");
    assert_eq!(p.transaction_id, Some(5));
    // No transactionId given: bound to the running transaction.
    let (_, p) = parse_set_charging_profile(&tx_profile(None), &charging(Some(5))).expect("ok");
    assert_eq!(p.transaction_id, Some(5));
}

#[test]
fn remote_start_profile_must_be_a_tx_profile_without_transaction_id() {
    let now = at("2026-03-05T12:00:00Z");
    let p = json!({
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 8.228260869565219}]}
    });
    let ok = parse_remote_start_profile(&p, now).expect("accepted");
    assert_eq!(ok.transaction_id, None);
    let mut with_id = p.clone();
    with_id["transactionId"] = json!(3);
    assert!(matches!(
        parse_remote_start_profile(&with_id, now),
        Err(Reject::Status { .. })
    ));
    let mut default = p.clone();
    default["chargingProfilePurpose"] = json!("TxDefaultProfile");
    assert!(matches!(
        parse_remote_start_profile(&default, now),
        Err(Reject::Status { .. })
    ));
    assert_eq!(
        call_error(parse_remote_start_profile(&json!(null), now)),
        ErrorCode::TypeConstraintViolation
    );
}

fn profile(id: i32, purpose: Purpose, stack_level: u32) -> ChargingProfile {
    let (_, mut p) = parse_set_charging_profile(&base(), &idle()).expect("valid");
    p.id = id;
    p.purpose = purpose;
    p.stack_level = stack_level;
    p
}

fn ids(set: &ProfileSet) -> Vec<(u32, i32)> {
    let mut v: Vec<(u32, i32)> = set.profiles().map(|(c, p)| (c, p.id)).collect();
    v.sort_unstable();
    v
}

#[test]
fn install_replaces_by_id_and_by_stack_level_purpose_and_connector() {
    let mut set = ProfileSet::new();
    set.install(1, profile(1, Purpose::TxDefaultProfile, 0))
        .expect("room");
    set.install(0, profile(2, Purpose::TxDefaultProfile, 0))
        .expect("room");
    set.install(0, profile(3, Purpose::ChargePointMaxProfile, 0))
        .expect("room");
    assert_eq!(ids(&set), vec![(0, 2), (0, 3), (1, 1)]);
    // Same id, different everything else: replaces.
    set.install(0, profile(1, Purpose::TxDefaultProfile, 3))
        .expect("room");
    assert_eq!(ids(&set), vec![(0, 1), (0, 2), (0, 3)]);
    // Same stack level, purpose and connector: replaces profile 2.
    set.install(0, profile(9, Purpose::TxDefaultProfile, 0))
        .expect("room");
    assert_eq!(ids(&set), vec![(0, 1), (0, 3), (0, 9)]);
}

#[test]
fn max_charging_profiles_installed_is_a_cap() {
    let mut set = ProfileSet::new();
    let n = i32::try_from(MAX_CHARGING_PROFILES_INSTALLED).expect("small");
    for id in 0..n {
        set.install(
            1,
            profile(id, Purpose::TxProfile, u32::try_from(id).expect("small")),
        )
        .expect("room");
    }
    let before = set.clone();
    assert!(matches!(
        set.install(1, profile(100, Purpose::TxDefaultProfile, 0)),
        Err(Reject::Status {
            status: "Rejected",
            ..
        })
    ));
    assert_eq!(set, before);
    // A replacement still fits.
    set.install(1, profile(0, Purpose::TxDefaultProfile, 0))
        .expect("replaces");
    assert_eq!(set.len(), MAX_CHARGING_PROFILES_INSTALLED);
}

fn clear_fixture() -> ProfileSet {
    let mut set = ProfileSet::new();
    set.install(0, profile(1, Purpose::ChargePointMaxProfile, 0))
        .expect("room");
    set.install(0, profile(2, Purpose::TxDefaultProfile, 0))
        .expect("room");
    set.install(0, profile(3, Purpose::TxDefaultProfile, 1))
        .expect("room");
    set.install(1, profile(4, Purpose::TxDefaultProfile, 1))
        .expect("room");
    set.install(1, profile(5, Purpose::TxProfile, 1))
        .expect("room");
    set
}

#[test]
fn clear_by_each_filter() {
    let remaining = |id, connector, purpose, stack_level| {
        let mut set = clear_fixture();
        let any = set.clear(id, connector, purpose, stack_level);
        (
            any,
            ids(&set).into_iter().map(|(_, id)| id).collect::<Vec<_>>(),
        )
    };
    assert_eq!(remaining(None, None, None, None), (true, vec![]));
    assert_eq!(
        remaining(Some(3), None, None, None),
        (true, vec![1, 2, 4, 5])
    );
    // errata 3.25: with id the other fields are ignored.
    assert_eq!(
        remaining(Some(3), Some(1), Some(Purpose::TxProfile), Some(7)),
        (true, vec![1, 2, 4, 5])
    );
    assert_eq!(
        remaining(Some(42), None, None, None),
        (false, vec![1, 2, 3, 4, 5])
    );
    assert_eq!(remaining(None, Some(0), None, None), (true, vec![4, 5]));
    assert_eq!(remaining(None, Some(1), None, None), (true, vec![1, 2, 3]));
    assert_eq!(
        remaining(None, None, Some(Purpose::TxDefaultProfile), None),
        (true, vec![1, 5])
    );
    assert_eq!(remaining(None, None, None, Some(1)), (true, vec![1, 2]));
    // errata 3.26: the fields are AND-ed.
    assert_eq!(
        remaining(None, Some(0), Some(Purpose::TxDefaultProfile), Some(1)),
        (true, vec![1, 2, 4, 5])
    );
    assert_eq!(
        remaining(None, Some(0), Some(Purpose::TxProfile), None),
        (false, vec![1, 2, 3, 4, 5])
    );
}

#[test]
fn ending_a_transaction_deletes_only_its_tx_profiles() {
    let mut set = clear_fixture();
    let mut other = profile(6, Purpose::TxProfile, 2);
    other.transaction_id = Some(99);
    set.install(1, other).expect("room");
    let mut mine = profile(7, Purpose::TxProfile, 3);
    mine.transaction_id = Some(5);
    set.install(1, mine).expect("room");
    set.end_transaction(Some(5));
    // 5 had no transactionId (bound to whatever runs), 7 was transaction 5's.
    assert_eq!(
        ids(&set).into_iter().map(|(_, id)| id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 6]
    );
}

#[test]
fn profile_sets_persist_as_set_charging_profile_payloads() {
    let mut set = ProfileSet::new();
    let v = with(|v| profile_mut(v)["validFrom"] = json!("2026-03-05T13:00:00+01:00"));
    let (c, p) = parse_set_charging_profile(&v, &idle()).expect("valid");
    set.install(c, p).expect("room");
    let json = serde_json::to_value(&set).expect("serialises");
    assert_eq!(json[0]["connectorId"], json!(1));
    assert_eq!(json[0]["csChargingProfiles"]["chargingProfileId"], json!(7));
    assert_eq!(
        json[0]["csChargingProfiles"]["validFrom"],
        json!("2026-03-05T12:00:00.000Z")
    );
    assert_eq!(
        json[0]["csChargingProfiles"]["chargingSchedule"]["chargingRateUnit"],
        json!("A")
    );
    // A stored entry is a SetChargingProfile payload the parser accepts again.
    let (c2, p2) = parse_set_charging_profile(&json[0], &idle()).expect("round trip");
    assert_eq!(
        (c2, &p2),
        (c, set.profiles().next().map(|(_, p)| p).expect("one"))
    );
    let back: ProfileSet = serde_json::from_value(json).expect("deserialises");
    assert_eq!(back, set);
}

#[test]
fn clear_and_composite_requests_are_read() {
    assert_eq!(
        parse_clear_charging_profile(&json!({})).expect("empty is all"),
        ClearRequest::default()
    );
    assert_eq!(
        parse_clear_charging_profile(&json!({"id": 3, "connectorId": 0,
            "chargingProfilePurpose": "ChargePointMaxProfile", "stackLevel": 2}))
        .expect("valid"),
        ClearRequest {
            id: Some(3),
            connector: Some(0),
            purpose: Some(Purpose::ChargePointMaxProfile),
            stack_level: Some(2)
        }
    );
    assert_eq!(
        call_error(parse_clear_charging_profile(
            &json!({"chargingProfilePurpose": "Tx"})
        )),
        ErrorCode::PropertyConstraintViolation
    );
    assert_eq!(
        parse_get_composite_schedule(
            &json!({"connectorId": 0, "duration": 3600, "chargingRateUnit": "W"})
        )
        .expect("valid"),
        CompositeRequest {
            connector: 0,
            duration_s: 3600,
            unit: Some(RateUnit::W)
        }
    );
    // §5.7: an invalid unit is PropertyConstraintViolation; an unknown connector is not a
    // CALLERROR (it is answered with status Rejected later).
    assert_eq!(
        call_error(parse_get_composite_schedule(
            &json!({"connectorId": 1, "duration": 60, "chargingRateUnit": "kWh"})
        )),
        ErrorCode::PropertyConstraintViolation
    );
    assert!(parse_get_composite_schedule(&json!({"connectorId": 9, "duration": 60})).is_ok());
    assert_eq!(
        call_error(parse_get_composite_schedule(&json!({"connectorId": 1}))),
        ErrorCode::OccurenceConstraintViolation
    );
}

#[test]
fn rejects_know_their_reply() {
    assert_eq!(
        Reject::rejected("x").reply(),
        Ok(json!({"status": "Rejected"}))
    );
    let e = parse_set_charging_profile(&json!(1), &idle()).expect_err("not an object");
    assert!(matches!(e.reply(), Err((ErrorCode::FormationViolation, _))));
}
