//! [`SimHandle`]: a simulated wallbox shared by its servers, scripts, control socket and tests.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use super::device::{SimDevice, SimError, SimSnapshot};
use crate::devicemap::{Iec61851State, Value};

/// A clonable handle to one simulated wallbox. Every method takes the current time from
/// tokio's clock, so tests may pause and advance it.
#[derive(Clone, Debug)]
pub struct SimHandle {
    // A std mutex: every critical section is a few arithmetic steps and never awaits.
    inner: Arc<Mutex<SimDevice>>,
}

impl SimHandle {
    /// Wraps a device.
    #[must_use]
    pub fn new(device: SimDevice) -> Self {
        Self {
            inner: Arc::new(Mutex::new(device)),
        }
    }

    /// Runs `f` on the device. A panic elsewhere cannot leave the device half-updated in a
    /// way that matters to a simulator, so a poisoned lock is simply taken over.
    pub fn with<R>(&self, f: impl FnOnce(&mut SimDevice) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Plugs the EV in.
    pub fn plug(&self) {
        self.with(|d| d.plug(Instant::now()));
    }

    /// Unplugs the EV.
    pub fn unplug(&self) {
        self.with(|d| d.unplug(Instant::now()));
    }

    /// Sets (`Some(E)`, `Some(F)`, …) or clears (`None`) a fault.
    pub fn set_fault(&self, fault: Option<Iec61851State>) {
        self.with(|d| d.set_fault(fault, Instant::now()));
    }

    /// Sets the EV's maximum current per phase in amperes.
    pub fn set_ev_max_current(&self, amperes: f64) {
        self.with(|d| d.set_ev_max_current(amperes, Instant::now()));
    }

    /// A full EV stays in B2 when offered current.
    pub fn set_ev_full(&self, full: bool) {
        self.with(|d| d.set_ev_full(full, Instant::now()));
    }

    /// A silent device answers no Modbus request.
    pub fn set_silent(&self, silent: bool) {
        self.with(|d| d.set_silent(silent));
    }

    /// Sets a register by name (engineering units).
    ///
    /// # Errors
    /// [`SimError`] for an unknown register or a value that does not fit.
    pub fn set_register(&self, name: &str, value: &Value) -> Result<(), SimError> {
        self.with(|d| d.set_register(name, value, Instant::now()))
    }

    /// Sets a register by name from text as typed on a command line
    /// (see [`parse_register_value`](super::device::parse_register_value)).
    ///
    /// # Errors
    /// [`SimError`] for an unknown register or a value that does not fit.
    pub fn set_register_text(&self, name: &str, text: &str) -> Result<(), SimError> {
        self.with(|d| {
            let value = super::device::parse_register_value(d.map(), name, text)?;
            d.set_register(name, &value, Instant::now())
        })
    }

    /// A register's decoded value by name.
    #[must_use]
    pub fn register_value(&self, name: &str) -> Option<Value> {
        self.with(|d| {
            d.tick(Instant::now());
            d.register_value(name)
        })
    }

    /// The wallbox's state now.
    #[must_use]
    pub fn snapshot(&self) -> SimSnapshot {
        self.with(|d| d.snapshot(Instant::now()))
    }
}
