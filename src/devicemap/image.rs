//! The words last read from a device, keyed by table and address.

use std::collections::HashMap;

use super::codec::{self, Value};
use super::model::{DeviceMap, Iec61851State, Register, RegisterId, StatusKey, Table};

/// Register words read from one device. Block reads fill it; decoding reads from it.
#[derive(Clone, Debug, Default)]
pub struct RegisterImage {
    words: HashMap<(Table, u16), u16>,
}

impl RegisterImage {
    /// Stores the words of a block read starting at `start`.
    pub fn insert_block(&mut self, table: Table, start: u16, words: &[u16]) {
        for (addr, w) in (start..=u16::MAX).zip(words) {
            self.words.insert((table, addr), *w);
        }
    }

    /// Forgets every word of a register (e.g. after its read failed).
    pub fn forget(&mut self, reg: &Register) {
        for addr in reg.address..=u16::try_from(reg.last_address()).unwrap_or(u16::MAX) {
            self.words.remove(&(reg.table, addr));
        }
    }

    /// The words of one register, if all of them have been read.
    #[must_use]
    pub fn words(&self, reg: &Register) -> Option<Vec<u16>> {
        (0..reg.words)
            .map(|i| {
                let addr = reg.address.checked_add(i)?;
                self.words.get(&(reg.table, addr)).copied()
            })
            .collect()
    }

    /// The decoded value of a register; `None` when unread, unavailable or undecodable.
    #[must_use]
    pub fn value(&self, map: &DeviceMap, id: RegisterId) -> Option<Value> {
        let reg = map.register(id);
        codec::decode(reg, &self.words(reg)?).ok().flatten()
    }

    /// The decoded number of a register.
    #[must_use]
    pub fn number(&self, map: &DeviceMap, id: RegisterId) -> Option<f64> {
        self.value(map, id)?.as_f64()
    }

    /// The IEC 61851 state: `None` when the status register is unread, `Some(Err(raw))` for a
    /// value the status map does not list (the raw value becomes the vendorErrorCode).
    ///
    /// With `status.vehicle`, the cable-state register refines the state (see
    /// [`VehicleSpec::combine`](super::model::VehicleSpec::combine)); while it is unread the
    /// state register alone decides.
    #[must_use]
    pub fn iec_state(&self, map: &DeviceMap) -> Option<Result<Iec61851State, String>> {
        let reg = map.register(map.status.register);
        let key = codec::status_key(reg, &self.words(reg)?).ok()??;
        let state = map.status.lookup(&key).ok_or_else(|| match key {
            StatusKey::Number(n) => n.to_string(),
            StatusKey::Text(t) => t,
        });
        Some(
            state.map(|st| match (&map.status.vehicle, self.cable(map)) {
                (Some(v), Some(cable)) => v.combine(st, cable),
                _ => st,
            }),
        )
    }

    /// The raw value of the `status.vehicle` register, if the map has one and it was read.
    #[must_use]
    pub fn cable(&self, map: &DeviceMap) -> Option<i64> {
        let v = map.status.vehicle.as_ref()?;
        let reg = map.register(v.register);
        match codec::status_key(reg, &self.words(reg)?).ok()?? {
            StatusKey::Number(n) => Some(n),
            StatusKey::Text(_) => None,
        }
    }
}
