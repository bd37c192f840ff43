//! Properties of the composite limit over random profile sets: it never exceeds any profile
//! that applies (converted to A) nor the charger's maximum; it is constant until the reported
//! next change; composite schedules are well formed and agree with limit_at; hostile payloads
//! never panic the parser.

use chargebridge::smartcharging::{
    ChargingProfile, ChargingSchedule, Electrical, Kind, Period, ProfileSet, Purpose, RateUnit,
    Recurrency, SetContext, TxContext, composite_schedule, limit_at, parse_set_charging_profile,
};
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

fn base() -> DateTime<Utc> {
    DateTime::from_timestamp(1_772_668_800, 0).expect("2026-03-05T00:00:00Z")
}

fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s)
}

const DAY: i64 = 86_400;

prop_compose! {
    fn period_list(unit: RateUnit)(
        steps in prop::collection::vec(1u32..30_000, 0..5),
        limits in prop::collection::vec(0u32..1000, 5),
        phases in prop::collection::vec(prop::option::of(1u8..=3), 5),
    ) -> Vec<Period> {
        let scale = if unit == RateUnit::W { 40.0 } else { 0.0733 };
        let mut start = 0u32;
        let mut out = Vec::new();
        for i in 0..=steps.len() {
            out.push(Period { start_period: start, limit: f64::from(limits[i]) * scale, number_phases: phases[i] });
            if let Some(step) = steps.get(i) { start += step; }
        }
        out
    }
}

fn any_profile(id: i32) -> impl Strategy<Value = (u32, ChargingProfile)> {
    (
        0u8..3,
        0u8..3,
        prop::bool::ANY,
        0u8..3,
        0u32..4,
        -3 * DAY..3 * DAY,
        prop::option::of(0u32..200_000),
        prop::option::of(-4 * DAY..4 * DAY),
        prop::option::of(1i64..3 * DAY),
        prop::bool::ANY,
        prop::option::of(0u32..100),
    )
        .prop_flat_map(
            move |(
                purpose,
                kind,
                weekly,
                tx_binding,
                stack_level,
                start,
                duration,
                from,
                span,
                watts,
                min_rate,
            )| {
                let unit = if watts { RateUnit::W } else { RateUnit::A };
                period_list(unit).prop_map(move |periods| {
                    let purpose = [
                        Purpose::ChargePointMaxProfile,
                        Purpose::TxDefaultProfile,
                        Purpose::TxProfile,
                    ][usize::from(purpose)];
                    let kind = [Kind::Absolute, Kind::Recurring, Kind::Relative][usize::from(kind)];
                    let connector = match purpose {
                        Purpose::ChargePointMaxProfile => 0,
                        Purpose::TxDefaultProfile => u32::from(tx_binding % 2),
                        Purpose::TxProfile => 1,
                    };
                    let transaction_id = match (purpose, tx_binding) {
                        (Purpose::TxProfile, 1) => Some(5),
                        (Purpose::TxProfile, 2) => Some(6),
                        _ => None,
                    };
                    let valid_from = from.map(|f| base() + secs(f));
                    let profile = ChargingProfile {
                        id,
                        transaction_id,
                        stack_level,
                        purpose,
                        kind,
                        recurrency: (kind == Kind::Recurring).then_some(if weekly {
                            Recurrency::Weekly
                        } else {
                            Recurrency::Daily
                        }),
                        valid_from,
                        valid_to: valid_from.zip(span).map(|(f, s)| f + secs(s)),
                        schedule: ChargingSchedule {
                            duration,
                            start_schedule: (kind != Kind::Relative).then(|| base() + secs(start)),
                            unit,
                            periods,
                            min_charging_rate: min_rate
                                .map(|r| f64::from(r) * if watts { 100.0 } else { 0.1 }),
                        },
                    };
                    (connector, profile)
                })
            },
        )
}

fn any_set() -> impl Strategy<Value = ProfileSet> {
    prop::collection::vec(prop::bool::ANY, 0..7).prop_flat_map(|slots| {
        let strategies: Vec<_> = (0..slots.len())
            .map(|i| any_profile(i32::try_from(i).unwrap_or(0)))
            .collect();
        strategies.prop_map(|profiles| {
            let mut set = ProfileSet::new();
            for (connector, p) in profiles {
                let _ = set.install(connector, p);
            }
            set
        })
    })
}

fn any_electrical() -> impl Strategy<Value = Electrical> {
    (prop::bool::ANY, prop::bool::ANY, 6u32..64).prop_map(|(three, eu, max)| Electrical {
        phases: if three { 3 } else { 1 },
        voltage: if eu { 230.0 } else { 110.0 },
        max_current: f64::from(max),
        min_current: 6.0,
    })
}

fn any_tx() -> impl Strategy<Value = Option<TxContext>> {
    prop::option::of(
        (-2 * DAY..2 * DAY, prop::option::of(5i32..7)).prop_map(|(s, id)| TxContext {
            id,
            started: base() + secs(s),
        }),
    )
}

fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    (-5 * DAY * 1000..5 * DAY * 1000).prop_map(|ms| base() + TimeDelta::milliseconds(ms))
}

/// Independent statement of "this profile applies at `t`": the limit in A of its running period.
fn applies(
    p: &ChargingProfile,
    t: DateTime<Utc>,
    tx: Option<&TxContext>,
    el: &Electrical,
) -> Option<f64> {
    if p.valid_from.is_some_and(|f| t < f) || p.valid_to.is_some_and(|v| t >= v) {
        return None;
    }
    let (start, length) = match p.kind {
        Kind::Relative => (
            tx.map_or(t, |x| x.started),
            p.schedule.duration.map(i64::from),
        ),
        Kind::Absolute => (
            p.schedule.start_schedule?,
            p.schedule.duration.map(i64::from),
        ),
        Kind::Recurring => {
            let every = match p.recurrency? {
                Recurrency::Daily => DAY,
                Recurrency::Weekly => 7 * DAY,
            };
            let mut s = p.schedule.start_schedule?;
            while s > t {
                s -= secs(every);
            }
            while s + secs(every) <= t {
                s += secs(every);
            }
            (
                s,
                Some(
                    p.schedule
                        .duration
                        .map_or(every, |d| i64::from(d).min(every)),
                ),
            )
        }
    };
    let offset = t - start;
    if offset < TimeDelta::zero() || length.is_some_and(|l| offset >= secs(l)) {
        return None;
    }
    let period = p
        .schedule
        .periods
        .iter()
        .rev()
        .find(|q| secs(i64::from(q.start_period)) <= offset)?;
    let phases = f64::from(period.number_phases.unwrap_or(3).min(el.phases));
    Some(match p.schedule.unit {
        RateUnit::A => period.limit,
        RateUnit::W => period.limit / (el.voltage * phases),
    })
}

/// The limits in A of the prevailing profile of each purpose that takes part (§3.13).
fn prevailing(
    set: &ProfileSet,
    t: DateTime<Utc>,
    tx: Option<&TxContext>,
    el: &Electrical,
) -> Vec<f64> {
    let best = |keep: &dyn Fn(u32, &ChargingProfile) -> bool| {
        set.profiles()
            .filter(|(c, p)| keep(*c, p))
            .filter_map(|(_, p)| applies(p, t, tx, el).map(|a| (p.stack_level, a)))
            .max_by_key(|(level, _)| *level)
            .map(|(_, a)| a)
    };
    let max = best(&|c, p| c == 0 && p.purpose == Purpose::ChargePointMaxProfile);
    let tx_limit = tx.and_then(|x| {
        best(&|c, p| {
            c == 1
                && p.purpose == Purpose::TxProfile
                && (p.transaction_id.is_none() || p.transaction_id == x.id)
        })
    });
    let ev = tx_limit
        .or_else(|| best(&|c, p| c == 1 && p.purpose == Purpose::TxDefaultProfile))
        .or_else(|| best(&|c, p| c == 0 && p.purpose == Purpose::TxDefaultProfile));
    [max, ev].into_iter().flatten().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_limit_never_exceeds_a_profile_that_applies_nor_max_current(
        set in any_set(), now in any_instant(), tx in any_tx(), el in any_electrical(),
    ) {
        let l = limit_at(&set, 1, now, tx.as_ref(), &el);
        let applying = prevailing(&set, now, tx.as_ref(), &el);
        prop_assert_eq!(l.amps.is_some(), !applying.is_empty());
        if let Some(a) = l.amps {
            prop_assert!(a >= 0.0);
            prop_assert!(a <= el.max_current + 1e-9, "{} > max {}", a, el.max_current);
            for cap in applying {
                prop_assert!(a <= cap + 1e-9, "{} > {}", a, cap);
            }
            prop_assert!(((a * 10.0).round() - a * 10.0).abs() < 1e-6, "{} is not a multiple of 0.1", a);
        }
        prop_assert!(l.next_change.is_none_or(|n| n > now));
    }

    #[test]
    fn the_limit_is_constant_until_next_change(
        set in any_set(), now in any_instant(), tx in any_tx(), el in any_electrical(),
        fractions in prop::collection::vec(0.0f64..1.0, 8),
    ) {
        let l = limit_at(&set, 1, now, tx.as_ref(), &el);
        let horizon = l.next_change.unwrap_or(now + secs(8 * DAY));
        let span_ms = (horizon - now).num_milliseconds();
        for f in fractions {
            // Whole milliseconds strictly before the horizon.
            let ms = ((span_ms as f64) * f) as i64;
            let t = now + TimeDelta::milliseconds(ms.min(span_ms - 1).max(0));
            let m = limit_at(&set, 1, t, tx.as_ref(), &el);
            prop_assert_eq!((m.amps, m.source), (l.amps, l.source), "at {} (next change {:?})", t, l.next_change);
        }
    }

    #[test]
    fn composite_schedules_are_well_formed_and_agree_with_limit_at(
        set in any_set(), now in any_instant(), tx in any_tx(), el in any_electrical(),
        duration in 0u32..(3 * 86_400), connector in 0u32..2,
    ) {
        let now = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        let v = composite_schedule(&set, connector, now, duration, Some(RateUnit::A), tx.as_ref(), &el)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(&v["status"], &json!("Accepted"));
        let periods = v["chargingSchedule"]["chargingSchedulePeriod"].as_array().cloned().unwrap_or_default();
        prop_assert!(!periods.is_empty());
        prop_assert_eq!(&periods[0]["startPeriod"], &json!(0));
        // Without a transaction the composite starts Relative schedules at scheduleStart, as
        // if a transaction started then; limit_at agrees when told exactly that (which would
        // also make unbound TxProfiles apply, so those sets are only checked for bounds).
        let has_relative = set.profiles().any(|(_, p)| p.kind == Kind::Relative);
        let has_tx_profile = set.profiles().any(|(_, p)| p.purpose == Purpose::TxProfile);
        let agreeing_tx = match tx {
            Some(_) => Some(tx),
            None if !has_relative => Some(None),
            None if !has_tx_profile => Some(Some(TxContext { id: None, started: now })),
            None => None,
        };
        let mut last: Option<u64> = None;
        for p in &periods {
            let start = p["startPeriod"].as_u64().unwrap_or(u64::MAX);
            prop_assert!(last.is_none_or(|l| start > l), "not ascending: {}", v);
            prop_assert!(start <= u64::from(duration));
            last = Some(start);
            let limit = p["limit"].as_f64().unwrap_or(-1.0);
            prop_assert!(((limit * 10.0).round() - limit * 10.0).abs() < 1e-6, "{} is not a multiple of 0.1", limit);
            prop_assert!(limit <= el.max_current + 1e-9);
            let at = now + secs(i64::try_from(start).unwrap_or(0));
            if let Some(expected_tx) = agreeing_tx {
                let want = limit_at(&set, connector, at, expected_tx.as_ref(), &el).amps.unwrap_or((el.max_current * 10.0).floor() / 10.0);
                prop_assert_eq!(limit, want, "at {}", at);
            }
        }
        // Also fine in W.
        let w = composite_schedule(&set, connector, now, duration, Some(RateUnit::W), tx.as_ref(), &el)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(&w["chargingSchedule"]["chargingRateUnit"], &json!("W"));
    }

    #[test]
    fn hostile_set_charging_profile_payloads_never_panic(v in hostile_payload()) {
        let ctx = SetContext { now: base(), transaction: Some(TxContext { id: Some(5), started: base() }) };
        if let Ok((connector, profile)) = parse_set_charging_profile(&v, &ctx) {
            let mut set = ProfileSet::new();
            prop_assert!(set.install(connector, profile).is_ok());
            let el = Electrical { phases: 3, voltage: 230.0, max_current: 32.0, min_current: 6.0 };
            let _ = limit_at(&set, 1, base(), ctx.transaction.as_ref(), &el);
            prop_assert!(composite_schedule(&set, 0, base(), u32::MAX, None, None, &el).is_ok());
        }
    }
}

/// A SetChargingProfile payload with random fields replaced by random JSON.
fn hostile_payload() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("A".to_owned()),
            Just("W".to_owned()),
            Just("Recurring".to_owned()),
            Just("Daily".to_owned()),
            Just("TxProfile".to_owned()),
            Just("9999-12-31T23:59:59Z".to_owned()),
            Just("0000-01-01T00:00:00Z".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::from),
    ];
    let fields = [
        "connectorId",
        "chargingProfileId",
        "transactionId",
        "stackLevel",
        "chargingProfilePurpose",
        "chargingProfileKind",
        "recurrencyKind",
        "validFrom",
        "validTo",
        "duration",
        "startSchedule",
        "chargingRateUnit",
        "minChargingRate",
        "startPeriod",
        "limit",
        "numberPhases",
    ];
    prop::collection::vec((0..fields.len(), leaf), 0..6).prop_map(move |edits| {
        let mut v = json!({
            "connectorId": 1,
            "csChargingProfiles": {
                "chargingProfileId": 7, "stackLevel": 0, "transactionId": 5,
                "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Recurring",
                "recurrencyKind": "Daily",
                "chargingSchedule": {
                    "startSchedule": "2026-03-05T00:00:00Z", "duration": 86400,
                    "chargingRateUnit": "W", "minChargingRate": 100.0,
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7000.0, "numberPhases": 1},
                                               {"startPeriod": 3600, "limit": 0.0}]
                }
            }
        });
        for (field, value) in edits {
            let name = fields[field];
            let target = match name {
                "connectorId" => &mut v,
                "duration" | "startSchedule" | "chargingRateUnit" | "minChargingRate" =>
                    &mut v["csChargingProfiles"]["chargingSchedule"],
                "startPeriod" | "limit" | "numberPhases" =>
                    &mut v["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0],
                _ => &mut v["csChargingProfiles"],
            };
            target[name] = value;
        }
        v
    })
}
