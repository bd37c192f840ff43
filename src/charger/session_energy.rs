//! A lifetime energy register made from one that counts per session (pure).
//!
//! OCPP's `Energy.Active.Import.Register` is a meter that never goes back: meterStart and
//! meterStop of every transaction are read from it, and central systems bill the difference.
//! Some wallboxes (ABB Terra AC) only have the energy of the running session, which starts
//! again from 0 at the next one. Sent as it is, every transaction would start near 0 and the
//! gateway's plausibility check would hold the value of the previous session until the new
//! one overtook it, so the start of each later session would be lost. Instead the gateway
//! keeps a total: when the register goes back, the session it counted has ended and its last
//! value is added to the base.

/// The running total of a per-session energy register.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SessionEnergy {
    /// Wh of all sessions before the one the register counts now.
    pub base: f64,
    /// The register's last value (Wh), once one was read.
    pub raw: Option<f64>,
}

impl SessionEnergy {
    /// A total restored from the store.
    #[must_use]
    pub fn restored(base: f64, raw: f64) -> Self {
        SessionEnergy {
            base,
            raw: Some(raw),
        }
    }

    /// Takes the register's value (Wh) and returns the lifetime value to report, and whether
    /// a new session began (the total should be stored at once).
    ///
    /// A value below the last one means the wallbox started a new session. What the old
    /// session counted after the last value read is lost; at a 1 s poll that is what the car
    /// drew in the last second, if it charged at all in it.
    pub fn lifetime(&mut self, session: f64) -> (f64, bool) {
        let restarted = match self.raw {
            Some(last) if session < last => {
                self.base += last;
                true
            }
            _ => false,
        };
        self.raw = Some(session);
        (self.base + session, restarted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_add_up_to_a_register_that_never_goes_back() {
        let mut e = SessionEnergy::default();
        assert_eq!(e.lifetime(0.0), (0.0, false));
        assert_eq!(e.lifetime(7_500.0), (7_500.0, false));
        // The next session starts from 0 again.
        assert_eq!(e.lifetime(0.0), (7_500.0, true));
        assert_eq!(e.lifetime(120.0), (7_620.0, false));
        assert_eq!(e.lifetime(3_000.0), (10_500.0, false));
        // A session first seen already under way (polled late) still adds up.
        assert_eq!(e.lifetime(40.0), (10_540.0, true));
        assert_eq!(e.base, 10_500.0);
    }

    #[test]
    fn a_restored_total_continues_where_it_was_stored() {
        let mut e = SessionEnergy::restored(10_000.0, 2_000.0);
        // Same session, more energy while the gateway was down.
        assert_eq!(e.lifetime(2_500.0), (12_500.0, false));
        // A new session had begun while it was down.
        let mut e = SessionEnergy::restored(10_000.0, 2_000.0);
        assert_eq!(e.lifetime(300.0), (12_300.0, true));
    }
}
