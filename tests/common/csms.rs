//! Waiting on and reading what the loopback central system (`chargebridge::sim::csms`) saw:
//! the CALLs a test expects from a charger, their payloads, and a readable timeline for the
//! failure message when one does not come.

use std::fmt::Write as _;
use std::time::Duration;

use chargebridge::sim::csms::{CsmsEvent, CsmsHandle, TimedEvent};
use serde_json::Value;

/// Whether `event` is a CALL of `action` from `charger` (any charger when `None`) whose
/// payload satisfies `pred`.
pub fn is_call(
    event: &CsmsEvent,
    charger: Option<&str>,
    action: &str,
    pred: impl Fn(&Value) -> bool,
) -> bool {
    match event {
        CsmsEvent::Call {
            charger: c,
            action: a,
            payload,
        } => charger.is_none_or(|id| id == c) && a == action && pred(payload),
        _ => false,
    }
}

/// Waits on the CALLs a central system receives, each for at most `timeout`.
#[derive(Clone, Copy, Debug)]
pub struct Calls<'a> {
    csms: &'a CsmsHandle,
    timeout: Duration,
}

impl<'a> Calls<'a> {
    /// Waits on `csms`, each wait bounded by `timeout`.
    pub fn new(csms: &'a CsmsHandle, timeout: Duration) -> Self {
        Self { csms, timeout }
    }

    /// The payload of the first CALL of `action` from `charger` (any when `None`) from event
    /// index `since` on (already recorded or still to come) satisfying `pred`. Panics after
    /// the timeout naming what was expected (`what`) and, from `seen`, what the central
    /// system saw instead.
    pub async fn expect(
        &self,
        since: usize,
        charger: Option<&str>,
        action: &str,
        pred: impl Fn(&Value) -> bool,
        what: &str,
        seen: impl FnOnce() -> String,
    ) -> Value {
        let hit = self
            .csms
            .wait_for_since(since, |e| is_call(e, charger, action, &pred), self.timeout)
            .await;
        match hit {
            Some(CsmsEvent::Call { payload, .. }) => payload,
            _ => {
                let from = charger.map(|id| format!("{id}: ")).unwrap_or_default();
                let timeout = self.timeout;
                panic!("{from}no {action} ({what}) within {timeout:?}; {}", seen())
            }
        }
    }
}

/// The CALLs among `events` as (charger, action, payload), in order.
pub fn calls_of<'e>(
    events: impl IntoIterator<Item = &'e CsmsEvent>,
) -> impl Iterator<Item = (&'e str, &'e str, &'e Value)> {
    events.into_iter().filter_map(|e| match e {
        CsmsEvent::Call {
            charger,
            action,
            payload,
        } => Some((charger.as_str(), action.as_str(), payload)),
        _ => None,
    })
}

/// The payloads of the `action` CALLs among `events` from `charger` (any when `None`), in order.
pub fn payloads<'e>(
    events: impl IntoIterator<Item = &'e CsmsEvent>,
    charger: Option<&str>,
    action: &str,
) -> Vec<Value> {
    calls_of(events)
        .filter(|(c, a, _)| charger.is_none_or(|id| id == *c) && *a == action)
        .map(|(_, _, p)| p.clone())
        .collect()
}

/// The events about `charger` (all when `None`), one a line with their time, for failure
/// messages.
pub fn timeline_text(events: &[TimedEvent], charger: Option<&str>) -> String {
    let mut out = String::new();
    for t in events {
        if charger.is_none_or(|id| t.event.charger() == id) {
            let _ = writeln!(out, "  {} {:?}", t.at.format("%H:%M:%S%.3f"), t.event);
        }
    }
    out
}
