//! The simulated electric vehicle and the IEC 61851 state it produces with the EVSE (pure).

use crate::devicemap::Iec61851State;

/// The vehicle at the end of the simulated cable.
#[derive(Clone, Debug, PartialEq)]
pub struct Ev {
    /// Whether the cable is plugged into the vehicle.
    pub plugged: bool,
    /// Largest current the on-board charger draws per phase, in amperes.
    pub max_current_a: f64,
    /// `true` when the battery is full: the EV stays in state B2 although current is offered.
    pub full: bool,
}

impl Default for Ev {
    fn default() -> Self {
        Self {
            plugged: false,
            max_current_a: 16.0,
            full: false,
        }
    }
}

/// What the EVSE side decides, as input to [`iec_state`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Offer {
    /// Current offered on the control pilot, amperes per phase (0 when not allowed).
    pub offered_a: f64,
    /// Smallest current that counts as an offer (IEC 61851-1 Annex A: 6 A is the lowest
    /// PWM current; the device map's `control.current_limit.min`).
    pub min_a: f64,
    /// A scripted fault overriding everything else (normally E or F).
    pub fault: Option<Iec61851State>,
}

/// The IEC 61851 state the pilot shows, and the current the vehicle draws per phase.
#[must_use]
pub fn iec_state(ev: &Ev, offer: Offer) -> (Iec61851State, f64) {
    if let Some(fault) = offer.fault {
        return (fault, 0.0);
    }
    if !ev.plugged {
        return (Iec61851State::A, 0.0);
    }
    // IEC 61851-1 Annex A: a duty cycle below the 6 A equivalent means "no charging allowed",
    // so an offer below the map's minimum is no offer at all (state x1).
    if offer.offered_a <= 0.0 || offer.offered_a < offer.min_a {
        return (Iec61851State::B1, 0.0);
    }
    if ev.full {
        return (Iec61851State::B2, 0.0);
    }
    (
        Iec61851State::C2,
        offer.offered_a.min(ev.max_current_a).max(0.0),
    )
}

/// States to try, in order, when a device map's status table has no key for `state`:
/// the nearest state a real wallbox of that kind would report instead.
#[must_use]
pub fn fallbacks(state: Iec61851State) -> &'static [Iec61851State] {
    use Iec61851State::{A, B1, B2, C1, C2, D1, D2, E, F};
    match state {
        A => &[A],
        B1 => &[B1, B2, C1],
        B2 => &[B2, B1, C1],
        C1 => &[C1, B1, B2],
        C2 => &[C2, D2],
        D1 => &[D1, C1, B1],
        D2 => &[D2, C2],
        E => &[E, F],
        F => &[F, E],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Iec61851State::{A, B1, B2, C2, F};

    fn offer(a: f64) -> Offer {
        Offer {
            offered_a: a,
            min_a: 6.0,
            fault: None,
        }
    }

    #[test]
    fn unplugged_is_a_whatever_is_offered() {
        assert_eq!(iec_state(&Ev::default(), offer(16.0)), (A, 0.0));
    }

    #[test]
    fn plugged_without_a_usable_offer_is_b1() {
        let ev = Ev {
            plugged: true,
            ..Ev::default()
        };
        assert_eq!(iec_state(&ev, offer(0.0)), (B1, 0.0));
        assert_eq!(iec_state(&ev, offer(5.9)), (B1, 0.0));
    }

    #[test]
    fn offer_above_min_charges_at_the_lower_of_offer_and_ev_max() {
        let mut ev = Ev {
            plugged: true,
            max_current_a: 10.0,
            full: false,
        };
        assert_eq!(iec_state(&ev, offer(16.0)), (C2, 10.0));
        assert_eq!(iec_state(&ev, offer(6.0)), (C2, 6.0));
        ev.full = true;
        assert_eq!(iec_state(&ev, offer(16.0)), (B2, 0.0));
    }

    #[test]
    fn a_fault_wins() {
        let ev = Ev {
            plugged: true,
            ..Ev::default()
        };
        let o = Offer {
            fault: Some(F),
            ..offer(16.0)
        };
        assert_eq!(iec_state(&ev, o), (F, 0.0));
    }
}
