//! Scenarios with a per-session energy register (`counts: session`, ABB Terra AC): the
//! central system must see one meter that never goes back.

use super::*;

/// A booted charger, its energy register at 0; `counts: session` when `per_session`.
fn idle_charger(per_session: bool) -> (Charger, Csms) {
    let mut c = charger(AuthMode::Free);
    if per_session {
        c.count_session_energy();
    }
    let mut csms = reconnected(&mut c, t0());
    c.on_sample(t0(), reading(S::A, 0.0, 0.0));
    csms.pump(&mut c, t0());
    (c, csms)
}

fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

/// One charging session: plug in with the register at `from`, charge until it reads `to`,
/// unplug. The wallbox draws 11 kW, so the register's rise is plausible.
fn session(c: &mut Charger, csms: &mut Csms, start: i64, from: f64, to: f64) -> i64 {
    c.on_sample(at(start), reading(S::B1, from, 0.0));
    c.on_sample(at(start + 1), reading(S::C2, from, 11_000.0));
    csms.pump(c, at(start + 1));
    let minutes = ((to - from) / 11_000.0 * 60.0).ceil() as i64 + 1;
    let end = start + 1 + minutes;
    c.on_sample(at(end), reading(S::C2, to, 11_000.0));
    c.on_sample(at(end + 1), reading(S::A, to, 0.0));
    csms.pump(c, at(end + 1));
    end + 1
}

#[test]
fn later_sessions_start_where_the_last_one_ended() {
    let (mut c, mut csms) = idle_charger(true);
    let end = session(&mut c, &mut csms, 1, 0.0, 7_500.0);
    // The wallbox starts its next session from 0.
    session(&mut c, &mut csms, end + 10, 0.0, 2_000.0);

    let starts = csms.find("StartTransaction");
    let stops = csms.find("StopTransaction");
    assert_eq!(starts.len(), 2);
    assert_eq!(stops.len(), 2);
    assert_eq!(starts[0]["meterStart"], 0);
    assert_eq!(stops[0]["meterStop"], 7_500);
    assert_eq!(starts[1]["meterStart"], 7_500, "not 0 again");
    assert_eq!(
        stops[1]["meterStop"], 9_500,
        "the second session's 2,000 Wh on top, none of it held back"
    );
}

#[test]
fn without_counts_session_a_reset_register_is_held_as_a_glitch() {
    // The same wallbox behaviour with a map that does not say `counts: session`.
    let (mut c, mut csms) = idle_charger(false);
    let end = session(&mut c, &mut csms, 1, 0.0, 7_500.0);
    session(&mut c, &mut csms, end + 10, 0.0, 2_000.0);
    let stops = csms.find("StopTransaction");
    assert_eq!(
        stops[1]["meterStop"], 7_500,
        "the drop to 0 is ignored and the lower values after it too"
    );
}

#[test]
fn the_total_survives_a_restart() {
    let mut store = crate::store::Store::in_memory().unwrap();
    store.load("CB-1").unwrap();
    let (mut c, mut csms) = idle_charger(true);
    let end = session(&mut c, &mut csms, 1, 0.0, 7_500.0);
    // The next session begins; the reset is stored at once.
    c.on_sample(at(end + 10), reading(S::B1, 0.0, 0.0));
    csms.pump(&mut c, at(end + 10));
    c.on_sample(at(end + 11), reading(S::C2, 300.0, 11_000.0));
    persist(&mut c, &mut store);

    // Power loss. A new process finds the total and the open transaction.
    let saved = store.load("CB-1").unwrap();
    let (base, raw) = saved.session_energy.expect("the total was stored");
    assert_eq!(base, 7_500.0, "the first session's energy");
    assert!(
        raw <= 300.0,
        "the register's value of this session, not {raw}"
    );
    let mut c2 = charger(AuthMode::Free);
    c2.count_session_energy();
    c2.restore(saved, at(end + 20));
    let mut csms2 = reconnected(&mut c2, at(end + 20));
    // Still the same session on the wallbox: 1,500 Wh so far.
    c2.on_sample(at(end + 21), reading(S::C2, 1_500.0, 11_000.0));
    c2.on_sample(at(end + 22), reading(S::A, 1_500.0, 0.0));
    csms2.pump(&mut c2, at(end + 22));
    let stop = csms2.find("StopTransaction");
    assert_eq!(stop.len(), 1);
    assert_eq!(
        stop[0]["meterStop"], 9_000,
        "7,500 before + 1,500 of this session"
    );
    assert_eq!(
        csms.find("StartTransaction")[1]["meterStart"],
        7_500,
        "the transaction it stops started at the total"
    );
}
