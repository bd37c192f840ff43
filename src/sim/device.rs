//! One simulated wallbox, driven by any device map: the register words, the EV, the watchdog.
//!
//! Pure apart from the clock values passed in: nothing here does I/O or reads the time itself.
//! Time advances only in [`SimDevice::tick`] (called by every other operation), which
//! integrates the energy exactly: power is constant between events, and the only event that
//! happens by itself (the watchdog expiring) is found and integrated up to precisely.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::ev::{self, Ev, Offer};
use crate::devicemap::codec::{self, CodecError, Value};
use crate::devicemap::{
    Counts, DeviceMap, Iec61851State, KeepaliveInterval, RegisterId, StatusKey, Table, TimeUnit,
    WordOrder,
};

/// Largest quantity one read may ask for (Modbus Application Protocol v1.1b3 §6.1-6.4).
const MAX_READ_WORDS: u16 = 125;
/// Largest quantity of bits one read may ask for (§6.1, §6.2).
const MAX_READ_BITS: u16 = 2000;

/// How a simulated wallbox starts.
#[derive(Clone, Debug, PartialEq)]
pub struct SimOptions {
    /// Initial values by register name, in engineering units (e.g. `layout_version` =
    /// `Number(264.0)` for 0x0108). Every other register starts at 0 / empty.
    pub initial: Vec<(String, Value)>,
    /// Phases the EV charges on; `None`: the number of `Current.Import` phases in the map, else 3.
    pub phases: Option<u8>,
    /// Phase voltage in volts.
    pub voltage_v: f64,
    /// The vehicle.
    pub ev: Ev,
    /// Current offered when the map has no limit register (only an enable flag); `None`: the
    /// map's `current_limit.max`, else 16 A.
    pub max_current_a: Option<f64>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            initial: Vec::new(),
            phases: None,
            voltage_v: 230.0,
            ev: Ev::default(),
            max_current_a: None,
        }
    }
}

/// Why a simulated wallbox could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// An initial value names a register the map does not have.
    #[error("no register named `{0}` in the device map: initial values must use register names")]
    UnknownRegister(String),
    /// An initial value does not fit its register.
    #[error("initial value for register `{register}`: {source}")]
    Initial {
        /// Register name.
        register: String,
        /// What the codec said.
        #[source]
        source: CodecError,
    },
    /// Phases outside 1..=3.
    #[error("phases must be 1, 2 or 3, not {0}")]
    Phases(u8),
    /// A voltage or current option that is negative or not a number.
    #[error("{0} must be a number of at least 0")]
    Negative(&'static str),
    /// Text given for a numeric register.
    #[error(
        "register `{register}` holds a number: `{text}` is not one (write 230, -4.5 or 0x0108)"
    )]
    NotANumber {
        /// Register name.
        register: String,
        /// What was given.
        text: String,
    },
}

/// Parses a value as written on a command line for the register `name`: the text itself for
/// string registers; `0x0108`, `230` or `-4.5` (engineering units) for numeric ones.
///
/// # Errors
/// [`SimError::UnknownRegister`], or [`SimError::NotANumber`] for text given to a number.
pub fn parse_register_value(map: &DeviceMap, name: &str, text: &str) -> Result<Value, SimError> {
    let id = map
        .register_id(name)
        .ok_or_else(|| SimError::UnknownRegister(name.to_owned()))?;
    if map.register(id).ty == crate::devicemap::ValueType::String {
        return Ok(Value::Text(text.to_owned()));
    }
    let t = text.trim();
    let not_a_number = || SimError::NotANumber {
        register: name.to_owned(),
        text: text.to_owned(),
    };
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        let n = u64::from_str_radix(hex, 16).map_err(|_| not_a_number())?;
        #[allow(clippy::cast_precision_loss)] // register values fit f64's 53 bits in practice
        return Ok(Value::Number(n as f64));
    }
    match t.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(Value::Number(n)),
        _ => Err(not_a_number()),
    }
}

/// A Modbus exception the simulator answers with (Modbus Application Protocol v1.1b3 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exception {
    /// 01: function code not supported.
    IllegalFunction,
    /// 02: address (range) not served.
    IllegalDataAddress,
    /// 03: malformed quantity or value.
    IllegalDataValue,
    /// 0B: a TCP request for a unit id nobody serves (§7, gateway target failed to respond).
    GatewayTargetFailed,
}

impl Exception {
    /// The exception code on the wire.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::IllegalFunction => 0x01,
            Self::IllegalDataAddress => 0x02,
            Self::IllegalDataValue => 0x03,
            Self::GatewayTargetFailed => 0x0B,
        }
    }
}

/// The last write a master made.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WriteRecord {
    /// Function code (5, 6, 15 or 16).
    pub function: u8,
    /// `holding` or `coil`.
    pub table: &'static str,
    /// First address written.
    pub address: u16,
    /// The words (0/1 for coils).
    pub words: Vec<u16>,
    /// Names of the registers the write touched.
    pub registers: Vec<String>,
}

/// A consistent view of one simulated wallbox.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SimSnapshot {
    /// IEC 61851 state the simulator is in (what it wrote to the status register, modulo
    /// the fallbacks for states the map cannot express).
    #[serde(serialize_with = "state_name")]
    pub state: Iec61851State,
    /// Raw words of the status register.
    pub status_raw: Vec<u16>,
    /// Cable plugged into the EV.
    pub plugged: bool,
    /// EV battery full.
    pub ev_full: bool,
    /// EV on-board charger maximum, amperes per phase.
    pub ev_max_current_a: f64,
    /// Scripted fault, if any.
    #[serde(serialize_with = "opt_state_name")]
    pub fault: Option<Iec61851State>,
    /// Current offered to the EV, amperes per phase.
    pub offered_a: f64,
    /// Current drawn, amperes per phase.
    pub current_a: f64,
    /// Phases charging.
    pub phases: u8,
    /// Phase voltage.
    pub voltage_v: f64,
    /// Total active power drawn, watts.
    pub power_w: f64,
    /// Energy meter, watt-hours (exact; the register holds it rounded to its resolution).
    pub energy_wh: f64,
    /// The limit register's decoded value, amperes (a power limit divided by phases x
    /// voltage).
    pub limit_a: Option<f64>,
    /// The limit register's raw words (empty when the map has none).
    pub limit_raw: Vec<u16>,
    /// The watchdog expired: the failsafe current applies instead of the limit until the
    /// master writes the limit (or enable) register again.
    pub failsafe_active: bool,
    /// The device does not answer (switched off, standby, broken cable).
    pub silent: bool,
    /// Modbus requests addressed to this device so far.
    pub requests: u64,
    /// The last write a master made.
    pub last_write: Option<WriteRecord>,
}

fn state_name<S: serde::Serializer>(s: &Iec61851State, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

#[allow(clippy::ref_option)] // serde's serialize_with hands us `&Option<_>`
fn opt_state_name<S: serde::Serializer>(
    s: &Option<Iec61851State>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match s {
        Some(st) => ser.serialize_some(st.as_str()),
        None => ser.serialize_none(),
    }
}

/// One simulated wallbox.
#[derive(Debug)]
pub struct SimDevice {
    map: Arc<DeviceMap>,
    /// Words of every declared address; an address not in here is undeclared.
    words: HashMap<(Table, u16), u16>,
    ev: Ev,
    fault: Option<Iec61851State>,
    phases: u8,
    voltage_v: f64,
    max_current_a: f64,
    /// Exact energy; the register gets it rounded.
    energy_wh: f64,
    energy_register: Option<RegisterId>,
    /// The register counts the running session only (ABB): it starts from 0 at each plug-in.
    session_energy: bool,
    state: Iec61851State,
    offered_a: f64,
    current_a: f64,
    failsafe_active: bool,
    started: Option<Instant>,
    last_tick: Option<Instant>,
    last_request: Option<Instant>,
    requests: u64,
    last_write: Option<WriteRecord>,
    silent: bool,
    /// Registers whose encoding failed once, so the warning is not repeated every tick.
    warned: HashSet<RegisterId>,
}

impl SimDevice {
    /// Builds a wallbox for `map`, registers at 0 / empty except the `initial` values.
    ///
    /// # Errors
    /// [`SimError`] for an unknown register name, a value that does not fit, bad phases.
    pub fn new(map: Arc<DeviceMap>, options: SimOptions) -> Result<Self, SimError> {
        let mut words = HashMap::new();
        for reg in &map.registers {
            for i in 0..reg.words {
                if let Some(addr) = reg.address.checked_add(i) {
                    words.insert((reg.table, addr), 0);
                }
            }
        }
        let phases = match options.phases {
            Some(p @ 1..=3) => p,
            Some(p) => return Err(SimError::Phases(p)),
            None => phases_of(&map),
        };
        let usable = |v: f64| v.is_finite() && v >= 0.0;
        if !usable(options.voltage_v) {
            return Err(SimError::Negative("the voltage"));
        }
        if !usable(options.ev.max_current_a) {
            return Err(SimError::Negative("the EV's maximum current"));
        }
        if !options.max_current_a.is_none_or(usable) {
            return Err(SimError::Negative("the maximum current"));
        }
        let max_current_a = options.max_current_a.unwrap_or_else(|| {
            map.control
                .current_limit
                .as_ref()
                .map_or(16.0, |limit| limit.max)
        });
        let energy_register = map
            .measurand("Energy.Active.Import.Register")
            .and_then(|m| m.sources.iter().find(|(p, _)| p.is_none()).map(|s| s.1));
        let session_energy = map.energy_counts() == Counts::Session;
        let mut dev = Self {
            map,
            words,
            ev: options.ev,
            fault: None,
            phases,
            voltage_v: options.voltage_v,
            max_current_a,
            energy_wh: 0.0,
            energy_register,
            session_energy,
            state: Iec61851State::A,
            offered_a: 0.0,
            current_a: 0.0,
            failsafe_active: false,
            started: None,
            last_tick: None,
            last_request: None,
            requests: 0,
            last_write: None,
            silent: false,
            warned: HashSet::new(),
        };
        for (name, value) in &options.initial {
            let id = dev
                .map
                .register_id(name)
                .ok_or_else(|| SimError::UnknownRegister(name.clone()))?;
            let encoded =
                codec::encode(dev.map.register(id), value).map_err(|source| SimError::Initial {
                    register: name.clone(),
                    source,
                })?;
            dev.store(id, &encoded);
        }
        if let Some(id) = dev.energy_register {
            dev.energy_wh = dev.number(id).unwrap_or(0.0).max(0.0);
        }
        Ok(dev)
    }

    /// The device map this wallbox speaks.
    #[must_use]
    pub fn map(&self) -> &DeviceMap {
        &self.map
    }

    /// Advances the simulation to `now`: integrates energy, applies the watchdog, writes the
    /// status and measurand registers. Earlier instants than the last tick are ignored.
    pub fn tick(&mut self, now: Instant) {
        let Some(last) = self.last_tick else {
            self.started = Some(now);
            self.last_tick = Some(now);
            self.recompute(now);
            return;
        };
        if now <= last {
            self.recompute(last);
            return;
        }
        // The watchdog may have expired between two ticks: integrate the old power up to the
        // moment it did, then the failsafe power for the rest.
        if !self.failsafe_active
            && let Some(expiry) = self.watchdog_expiry()
            && expiry > last
            && expiry <= now
        {
            self.integrate(last, expiry);
            self.last_tick = Some(expiry);
            self.recompute(expiry);
        }
        let from = self.last_tick.unwrap_or(last);
        self.integrate(from, now);
        self.last_tick = Some(now);
        self.recompute(now);
    }

    /// Records a Modbus request addressed to this device (any function, answered or not):
    /// the traffic a watchdog looks for.
    pub fn touch(&mut self, now: Instant) {
        self.tick(now);
        self.last_request = Some(now.max(self.last_tick.unwrap_or(now)));
        self.requests = self.requests.saturating_add(1);
        self.recompute(self.last_tick.unwrap_or(now));
    }

    /// Reads `count` words (or bits, one word of 0/1 each) from `table` at `start`.
    ///
    /// Undeclared addresses inside the range read 0, as most wallboxes do, unless the map's
    /// `max_gap` is 0 (the device rejects such reads); a range without any declared address
    /// is rejected.
    ///
    /// # Errors
    /// [`Exception::IllegalDataValue`] for a quantity of 0 or above the protocol maximum,
    /// [`Exception::IllegalDataAddress`] for addresses the device does not serve.
    pub fn read(
        &mut self,
        table: Table,
        start: u16,
        count: u16,
        now: Instant,
    ) -> Result<Vec<u16>, Exception> {
        let max = if table.is_bits() {
            MAX_READ_BITS
        } else {
            MAX_READ_WORDS
        };
        if count == 0 || count > max {
            return Err(Exception::IllegalDataValue);
        }
        if u32::from(start) + u32::from(count) > 0x1_0000 {
            return Err(Exception::IllegalDataAddress);
        }
        self.tick(now);
        let mut declared = 0usize;
        let out: Vec<u16> = (0..count)
            .map(|i| {
                let addr = start.wrapping_add(i);
                self.words.get(&(table, addr)).copied().map_or(0, |w| {
                    declared += 1;
                    w
                })
            })
            .collect();
        let gaps = out.len() - declared;
        if declared == 0 || (gaps > 0 && self.map.modbus.max_gap == 0) {
            return Err(Exception::IllegalDataAddress);
        }
        Ok(out)
    }

    /// Writes words (or 0/1 bits) a master sent with `function` into declared holding
    /// registers or coils.
    ///
    /// # Errors
    /// [`Exception::IllegalFunction`] for read-only tables, [`Exception::IllegalDataAddress`]
    /// when any address written is undeclared.
    pub fn write(
        &mut self,
        table: Table,
        start: u16,
        values: &[u16],
        function: u8,
        now: Instant,
    ) -> Result<(), Exception> {
        if !table.writable() {
            return Err(Exception::IllegalFunction);
        }
        let count = u16::try_from(values.len()).map_err(|_| Exception::IllegalDataValue)?;
        if count == 0 {
            return Err(Exception::IllegalDataValue);
        }
        if u32::from(start) + u32::from(count) > 0x1_0000 {
            return Err(Exception::IllegalDataAddress);
        }
        let all_declared =
            (0..count).all(|i| self.words.contains_key(&(table, start.wrapping_add(i))));
        if !all_declared {
            return Err(Exception::IllegalDataAddress);
        }
        self.tick(now);
        for (i, v) in (0..count).zip(values) {
            self.words.insert((table, start.wrapping_add(i)), *v);
        }
        let end = u32::from(start) + u32::from(count) - 1;
        let touched: Vec<RegisterId> = (0..self.map.registers.len())
            .filter(|id| {
                let r = self.map.register(*id);
                r.table == table
                    && u32::from(r.address) <= end
                    && r.last_address() >= u32::from(start)
            })
            .collect();
        // A master that sets its limit again after a watchdog timeout takes back control.
        let control = &self.map.control;
        if touched.iter().any(|id| {
            control
                .current_limit
                .as_ref()
                .is_some_and(|l| l.register == *id)
                || control
                    .power_limit
                    .as_ref()
                    .is_some_and(|p| p.register == *id)
                || control.enable.as_ref().is_some_and(|e| e.register == *id)
        }) {
            self.failsafe_active = false;
        }
        let registers = touched
            .iter()
            .map(|id| self.map.register(*id).name.clone())
            .collect();
        self.last_write = Some(WriteRecord {
            function,
            table: table.as_str(),
            address: start,
            words: values.to_vec(),
            registers,
        });
        self.recompute(self.last_tick.unwrap_or(now));
        Ok(())
    }

    /// Plugs the EV in.
    pub fn plug(&mut self, now: Instant) {
        self.change(now, |d| {
            if d.session_energy && !d.ev.plugged {
                d.energy_wh = 0.0;
            }
            d.ev.plugged = true;
        });
    }

    /// Unplugs the EV.
    pub fn unplug(&mut self, now: Instant) {
        self.change(now, |d| d.ev.plugged = false);
    }

    /// Sets or clears a fault state (normally E or F) that overrides the pilot state.
    pub fn set_fault(&mut self, fault: Option<Iec61851State>, now: Instant) {
        self.change(now, |d| d.fault = fault);
    }

    /// Sets the EV's maximum current per phase (negative values count as 0).
    pub fn set_ev_max_current(&mut self, amperes: f64, now: Instant) {
        let a = if amperes.is_finite() {
            amperes.max(0.0)
        } else {
            0.0
        };
        self.change(now, |d| d.ev.max_current_a = a);
    }

    /// A full EV stays in B2 when current is offered.
    pub fn set_ev_full(&mut self, full: bool, now: Instant) {
        self.change(now, |d| d.ev.full = full);
    }

    /// A silent device answers no Modbus request (and sees none: its watchdog runs on).
    pub fn set_silent(&mut self, silent: bool) {
        self.silent = silent;
    }

    /// Whether the device is silent.
    #[must_use]
    pub fn is_silent(&self) -> bool {
        self.silent
    }

    /// Sets a register by name to a value in engineering units (e.g. a temperature).
    ///
    /// # Errors
    /// [`SimError`] for an unknown name or a value that does not fit.
    pub fn set_register(
        &mut self,
        name: &str,
        value: &Value,
        now: Instant,
    ) -> Result<(), SimError> {
        let id = self
            .map
            .register_id(name)
            .ok_or_else(|| SimError::UnknownRegister(name.to_owned()))?;
        let encoded =
            codec::encode(self.map.register(id), value).map_err(|source| SimError::Initial {
                register: name.to_owned(),
                source,
            })?;
        self.tick(now);
        self.store(id, &encoded);
        if Some(id) == self.energy_register {
            self.energy_wh = self.number(id).unwrap_or(self.energy_wh).max(0.0);
        }
        self.recompute(self.last_tick.unwrap_or(now));
        Ok(())
    }

    /// The decoded value of a register by name (`None` when unknown or unavailable).
    #[must_use]
    pub fn register_value(&self, name: &str) -> Option<Value> {
        let id = self.map.register_id(name)?;
        let reg = self.map.register(id);
        codec::decode(reg, &self.register_words(id)).ok().flatten()
    }

    /// The state after advancing to `now`.
    pub fn snapshot(&mut self, now: Instant) -> SimSnapshot {
        self.tick(now);
        let control = &self.map.control;
        let limit = control
            .current_limit
            .as_ref()
            .map(|l| l.register)
            .or_else(|| control.power_limit.as_ref().map(|p| p.register));
        let per_amp = if control.current_limit.is_none() && control.power_limit.is_some() {
            self.watts_per_amp()
        } else {
            1.0
        };
        SimSnapshot {
            state: self.state,
            status_raw: self.register_words(self.map.status.register),
            plugged: self.ev.plugged,
            ev_full: self.ev.full,
            ev_max_current_a: self.ev.max_current_a,
            fault: self.fault,
            offered_a: self.offered_a,
            current_a: self.current_a,
            phases: self.phases,
            voltage_v: self.voltage_v,
            power_w: self.power_w(),
            energy_wh: self.energy_wh,
            limit_a: limit.and_then(|id| self.number(id)).map(|v| v / per_amp),
            limit_raw: limit.map(|id| self.register_words(id)).unwrap_or_default(),
            failsafe_active: self.failsafe_active,
            silent: self.silent,
            requests: self.requests,
            last_write: self.last_write.clone(),
        }
    }

    fn change(&mut self, now: Instant, f: impl FnOnce(&mut Self)) {
        self.tick(now);
        f(self);
        self.recompute(self.last_tick.unwrap_or(now));
    }

    fn power_w(&self) -> f64 {
        self.current_a * self.voltage_v * f64::from(self.phases)
    }

    fn integrate(&mut self, from: Instant, to: Instant) {
        let hours = to.saturating_duration_since(from).as_secs_f64() / 3600.0;
        self.energy_wh += self.power_w() * hours;
    }

    fn register_words(&self, id: RegisterId) -> Vec<u16> {
        let reg = self.map.register(id);
        (0..reg.words)
            .map(|i| {
                reg.address
                    .checked_add(i)
                    .and_then(|a| self.words.get(&(reg.table, a)).copied())
                    .unwrap_or(0)
            })
            .collect()
    }

    fn number(&self, id: RegisterId) -> Option<f64> {
        let reg = self.map.register(id);
        codec::decode(reg, &self.register_words(id))
            .ok()
            .flatten()
            .and_then(|v| v.as_f64())
    }

    fn store(&mut self, id: RegisterId, words: &[u16]) {
        let reg = self.map.register(id);
        let (table, address) = (reg.table, reg.address);
        for (i, w) in (0..reg.words).zip(words) {
            if let Some(a) = address.checked_add(i) {
                self.words.insert((table, a), *w);
            }
        }
    }

    /// The watchdog timeout, if the map has a keepalive and a failsafe register: the
    /// `every_from` register's value in its unit (0 = off, as on the Heidelberg HR 257),
    /// or three keepalive periods.
    fn watchdog_timeout(&self) -> Option<Duration> {
        let keepalive = self.map.keepalive.as_ref()?;
        self.map.control.failsafe_current?;
        match &keepalive.interval {
            KeepaliveInterval::Every(every) => every.checked_mul(3),
            KeepaliveInterval::FromRegister { register, unit, .. } => {
                let value = self.number(*register)?;
                let secs = match unit {
                    TimeUnit::Ms => value / 1000.0,
                    TimeUnit::S => value,
                };
                if secs > 0.0 {
                    Duration::try_from_secs_f64(secs).ok()
                } else {
                    None
                }
            }
        }
    }

    /// When the watchdog fires: a timeout after the last request, or after the first tick
    /// while no master has spoken yet.
    fn watchdog_expiry(&self) -> Option<Instant> {
        let since = self.last_request.or(self.started)?;
        since.checked_add(self.watchdog_timeout()?)
    }

    fn offered_a(&self) -> f64 {
        let control = &self.map.control;
        if let Some(enable) = &control.enable {
            let on = self
                .number(enable.register)
                .is_some_and(|v| (v - enable.on_value).abs() < 1e-9);
            if !on {
                return 0.0;
            }
        }
        let failsafe = control
            .failsafe_current
            .filter(|_| self.failsafe_active)
            .map(|id| self.number(id).unwrap_or(0.0));
        let per_amp = self.watts_per_amp();
        let offered = match (&control.current_limit, &control.power_limit, failsafe) {
            (_, _, Some(f)) => f,
            (Some(limit), _, None) => self.number(limit.register).unwrap_or(0.0),
            (None, Some(p), None) => self.number(p.register).unwrap_or(0.0) / per_amp,
            (None, None, None) => self.max_current_a,
        };
        let cap = match (&control.current_limit, &control.power_limit) {
            (Some(l), _) => l.max,
            (None, Some(p)) => p.max_w / per_amp,
            (None, None) => self.max_current_a,
        };
        offered.min(cap).max(0.0)
    }

    /// Watts per ampere offered: phases x phase voltage (never 0, so divisions stay finite).
    fn watts_per_amp(&self) -> f64 {
        (f64::from(self.phases) * self.voltage_v).max(1e-9)
    }

    /// The smallest current that counts as an offer: the map's `current_limit.min`, or
    /// `power_limit.min_w` in amperes, else the IEC 61851-1 minimum of 6 A.
    fn min_offer_a(&self) -> f64 {
        let control = &self.map.control;
        match (&control.current_limit, &control.power_limit) {
            (Some(l), _) => l.min,
            (None, Some(p)) => p.min_w / self.watts_per_amp(),
            (None, None) => 6.0,
        }
    }

    fn recompute(&mut self, now: Instant) {
        if self.watchdog_expiry().is_some_and(|e| e <= now) {
            self.failsafe_active = true;
        }
        self.offered_a = self.offered_a();
        let min_a = self.min_offer_a();
        let (state, current) = ev::iec_state(
            &self.ev,
            Offer {
                offered_a: self.offered_a,
                min_a,
                fault: self.fault,
            },
        );
        self.current_a = current;
        self.write_status(state);
        self.write_measurands();
    }

    fn write_status(&mut self, state: Iec61851State) {
        let map = Arc::clone(&self.map);
        // With a cable-state register the state register need not express A: the cable
        // register says "no vehicle" and the state register shows any non-fault value.
        let candidates: &[Iec61851State] =
            if map.status.vehicle.is_some() && state == Iec61851State::A {
                &[
                    Iec61851State::A,
                    Iec61851State::B1,
                    Iec61851State::B2,
                    Iec61851State::C1,
                ]
            } else {
                ev::fallbacks(state)
            };
        let found = candidates.iter().find_map(|st| {
            map.status
                .map
                .iter()
                .find(|(_, s)| s == st)
                .map(|(k, s)| (k, *s))
        });
        let Some((key, shown)) = found else {
            // The map cannot express this state at all: keep the register as it is.
            self.state = state;
            return;
        };
        self.state = shown;
        self.store_key(map.status.register, key);
        if let Some(v) = &map.status.vehicle {
            let plugged = self.ev.plugged;
            let cable = if plugged {
                v.connected.first().copied()
            } else {
                (0..).find(|n| !v.connected.contains(n))
            };
            if let Some(cable) = cable {
                self.store_key(v.register, &StatusKey::Number(cable));
                self.state = v.combine(shown, cable);
            }
        }
    }

    /// Stores a status-map key into an integer or string register, keeping the bits of the
    /// register outside its mask (the state may share its register with other bits).
    fn store_key(&mut self, id: RegisterId, key: &StatusKey) {
        let map = Arc::clone(&self.map);
        let reg = map.register(id);
        match codec::encode_status_key(reg, key) {
            Ok(mut words) => {
                if let Some(mask) = reg.mask {
                    let old = self.register_words(id);
                    let masks = split_mask(mask, reg.words, reg.word_order);
                    for ((w, o), m) in words.iter_mut().zip(&old).zip(&masks) {
                        *w = (*w & m) | (o & !m);
                    }
                }
                self.store(id, &words);
            }
            Err(e) => self.warn_once(id, &e),
        }
    }

    fn write_measurands(&mut self) {
        let map = Arc::clone(&self.map);
        let phases = f64::from(self.phases);
        let power = self.power_w();
        for m in &map.measurands {
            for (phase, id) in &m.sources {
                let k = phase.as_deref().and_then(phase_number);
                let active = k.is_none_or(|k| k <= self.phases);
                let value = match m.measurand.as_str() {
                    "Current.Import" if active => self.current_a,
                    "Current.Import" => 0.0,
                    "Current.Offered" => self.offered_a,
                    "Voltage" if phase.as_deref().is_some_and(is_line_to_line) => {
                        self.voltage_v * 3f64.sqrt()
                    }
                    "Voltage" => self.voltage_v,
                    "Power.Active.Import" if k.is_none() => power,
                    "Power.Active.Import" if active => self.current_a * self.voltage_v,
                    "Power.Active.Import" => 0.0,
                    "Power.Offered" => self.offered_a * self.voltage_v * phases,
                    "Energy.Active.Import.Register" if k.is_none() => self.energy_wh,
                    "Energy.Active.Import.Register" if active => self.energy_wh / phases,
                    "Energy.Active.Import.Register" => 0.0,
                    _ => continue,
                };
                match codec::encode(map.register(*id), &Value::Number(value)) {
                    Ok(words) => self.store(*id, &words),
                    Err(e) => self.warn_once(*id, &e),
                }
            }
        }
    }

    fn warn_once(&mut self, id: RegisterId, error: &CodecError) {
        if self.warned.insert(id) {
            tracing::warn!(register = %self.map.register(id).name, %error, "simulator cannot write register");
        }
    }
}

/// Phases from the map: how many of L1..L3 the `Current.Import` measurand lists, else 3.
fn phases_of(map: &DeviceMap) -> u8 {
    let listed = map
        .measurand("Current.Import")
        .map(|m| {
            m.sources
                .iter()
                .filter_map(|(p, _)| p.as_deref().and_then(phase_number))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    if listed == 0 { 3 } else { listed }
}

/// `L1`, `L2-N`, `L3-L1` -> 1, 2, 3; `N` and others -> `None`.
fn phase_number(phase: &str) -> Option<u8> {
    match phase.get(..2)? {
        "L1" => Some(1),
        "L2" => Some(2),
        "L3" => Some(3),
        _ => None,
    }
}

/// `L1-L2` style phases measure between two lines (OCPP 1.6 §7.31 Phase).
fn is_line_to_line(phase: &str) -> bool {
    phase
        .split_once('-')
        .is_some_and(|(_, b)| b.starts_with('L'))
}

/// The per-word masks of a multi-register mask, in the register's word order.
fn split_mask(mask: u64, words: u16, order: WordOrder) -> Vec<u16> {
    let mut out: Vec<u16> = (0..words)
        .rev()
        .map(|i| {
            let shift = 16 * u32::from(i);
            u16::try_from(mask.checked_shr(shift).unwrap_or(0) & 0xFFFF).unwrap_or(0)
        })
        .collect();
    if order == WordOrder::Little {
        out.reverse();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::float_cmp)]
    use super::*;
    use crate::devicemap::*;

    include!("../../tests/common/map.rs");

    fn device(map: DeviceMap) -> (SimDevice, Instant) {
        let opts = SimOptions {
            initial: vec![("layout_version".into(), Value::Number(264.0))],
            ..SimOptions::default()
        };
        device_with(map, opts)
    }

    fn device_with(map: DeviceMap, opts: SimOptions) -> (SimDevice, Instant) {
        let mut d = SimDevice::new(Arc::new(map), opts).unwrap();
        let t0 = Instant::now();
        d.tick(t0);
        (d, t0)
    }

    fn word(d: &mut SimDevice, table: Table, addr: u16, now: Instant) -> u16 {
        d.read(table, addr, 1, now).unwrap()[0]
    }

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    #[test]
    fn registers_start_at_zero_except_the_initial_values() {
        let (mut d, t0) = device(test_map());
        assert_eq!(d.read(Table::Input, 4, 2, t0).unwrap(), vec![0x0108, 2]);
        assert_eq!(d.read(Table::Holding, 257, 6, t0).unwrap(), vec![0; 6]);
        let unknown = SimOptions {
            initial: vec![("serial".into(), Value::Number(1.0))],
            ..SimOptions::default()
        };
        assert!(matches!(
            SimDevice::new(Arc::new(test_map()), unknown),
            Err(SimError::UnknownRegister(_))
        ));
    }

    #[test]
    fn plug_offer_and_unplug_walk_through_a_b1_c2_a() {
        let (mut d, t0) = device(test_map());
        assert_eq!(word(&mut d, Table::Input, 5, t0), 2);
        d.plug(t0);
        assert_eq!(
            word(&mut d, Table::Input, 5, t0),
            4,
            "plugged, no limit: B1"
        );
        d.write(Table::Holding, 261, &[160], 16, t0).unwrap();
        assert_eq!(word(&mut d, Table::Input, 5, t0), 7, "16 A offered: C2");
        assert_eq!(
            d.read(Table::Input, 6, 7, t0).unwrap(),
            vec![160, 160, 160, 0, 230, 230, 230]
        );
        assert_eq!(word(&mut d, Table::Input, 14, t0), 11040);
        let s = d.snapshot(t0);
        assert_eq!(
            (s.state, s.offered_a, s.current_a, s.power_w),
            (Iec61851State::C2, 16.0, 16.0, 11040.0)
        );
        assert_eq!(s.limit_raw, vec![160]);
        assert_eq!(s.last_write.unwrap().registers, vec!["limit".to_owned()]);
        d.unplug(t0);
        assert_eq!(word(&mut d, Table::Input, 5, t0), 2);
        assert_eq!(word(&mut d, Table::Input, 14, t0), 0);
    }

    #[test]
    fn limits_below_min_do_not_charge_and_above_max_are_capped() {
        let (mut d, t0) = device(test_map());
        d.plug(t0);
        d.write(Table::Holding, 261, &[50], 6, t0).unwrap();
        assert_eq!(d.snapshot(t0).state, Iec61851State::B1);
        d.write(Table::Holding, 261, &[320], 6, t0).unwrap();
        assert_eq!(d.snapshot(t0).current_a, 16.0);
    }

    #[test]
    fn a_session_energy_register_starts_from_zero_at_the_next_plug_in() {
        let mut map = test_map();
        for m in &mut map.measurands {
            if m.measurand == "Energy.Active.Import.Register" {
                m.counts = Counts::Session;
            }
        }
        let (mut d, t0) = device(map);
        d.plug(t0);
        d.write(Table::Holding, 261, &[160], 16, t0).unwrap();
        let hour = secs(t0, 3600.0);
        assert_eq!(d.read(Table::Input, 17, 2, hour).unwrap(), vec![0, 11040]);
        d.unplug(hour);
        assert_eq!(
            d.read(Table::Input, 17, 2, hour).unwrap(),
            vec![0, 11040],
            "the finished session's energy stays readable until the next one"
        );
        d.plug(secs(t0, 4000.0));
        assert_eq!(
            d.read(Table::Input, 17, 2, secs(t0, 4000.0)).unwrap(),
            vec![0, 0]
        );
    }

    #[test]
    fn energy_is_the_exact_integral_of_power() {
        let (mut d, t0) = device(test_map());
        d.plug(t0);
        d.write(Table::Holding, 261, &[160], 16, t0).unwrap();
        // Half an hour at 11040 W, then half an hour at 10 A x 230 V x 3.
        d.set_ev_max_current(10.0, secs(t0, 1800.0));
        let s = d.snapshot(secs(t0, 3600.0));
        assert!(
            (s.energy_wh - (5520.0 + 3450.0)).abs() < 1e-6,
            "{}",
            s.energy_wh
        );
        assert_eq!(
            d.read(Table::Input, 17, 2, secs(t0, 3600.0)).unwrap(),
            vec![0, 8970]
        );
        // Monotonic across reads, and counting on from an initial meter value.
        let opts = SimOptions {
            initial: vec![("energy".into(), Value::Number(100_000.0))],
            ..SimOptions::default()
        };
        let mut d = SimDevice::new(Arc::new(test_map()), opts).unwrap();
        d.tick(t0);
        d.plug(t0);
        d.write(Table::Holding, 261, &[100], 16, t0).unwrap();
        let e = d.snapshot(secs(t0, 36.0)).energy_wh;
        assert!((e - (100_000.0 + 6900.0 * 0.01)).abs() < 1e-6, "{e}");
    }

    #[test]
    fn ev_limits_full_battery_and_faults() {
        let (mut d, t0) = device(test_map());
        d.plug(t0);
        d.write(Table::Holding, 261, &[160], 16, t0).unwrap();
        d.set_ev_max_current(10.0, t0);
        assert_eq!(word(&mut d, Table::Input, 6, t0), 100);
        d.set_ev_full(true, t0);
        assert_eq!(word(&mut d, Table::Input, 5, t0), 5, "full: B2");
        d.set_fault(Some(Iec61851State::F), t0);
        assert_eq!(word(&mut d, Table::Input, 5, t0), 10);
        d.set_fault(Some(Iec61851State::E), t0);
        assert_eq!(word(&mut d, Table::Input, 5, t0), 9);
        d.set_fault(None, t0);
        assert_eq!(word(&mut d, Table::Input, 5, t0), 5);
    }

    #[test]
    fn watchdog_silence_falls_back_to_the_failsafe_current() {
        let (mut d, t0) = device(test_map());
        d.plug(t0);
        d.write(Table::Holding, 257, &[10_000], 16, t0).unwrap(); // 10 s
        d.write(Table::Holding, 262, &[60], 16, t0).unwrap(); // 6 A
        d.write(Table::Holding, 261, &[160], 16, t0).unwrap();
        d.touch(secs(t0, 5.0));
        assert!(!d.snapshot(secs(t0, 14.9)).failsafe_active);
        let s = d.snapshot(secs(t0, 15.0 + 3600.0));
        assert!(s.failsafe_active);
        assert_eq!(
            (s.offered_a, s.current_a, s.state),
            (6.0, 6.0, Iec61851State::C2)
        );
        // 15 s at 16 A, then one hour at 6 A: the expiry is integrated to the instant.
        let expected = 11040.0 * 15.0 / 3600.0 + 4140.0;
        assert!((s.energy_wh - expected).abs() < 1e-6, "{}", s.energy_wh);
        assert_eq!(
            s.limit_raw,
            vec![160],
            "the limit register itself is untouched"
        );
        // Traffic alone does not end it: the master must write its limit again.
        d.touch(secs(t0, 3700.0));
        assert_eq!(d.snapshot(secs(t0, 3700.0)).current_a, 6.0);
        d.write(Table::Holding, 261, &[160], 16, secs(t0, 3700.0))
            .unwrap();
        assert_eq!(d.snapshot(secs(t0, 3700.0)).current_a, 16.0);
        // Watchdog 0 means off.
        d.write(Table::Holding, 257, &[0], 16, secs(t0, 3700.0))
            .unwrap();
        assert!(!d.snapshot(secs(t0, 99_999.0)).failsafe_active);
    }

    #[test]
    fn fixed_keepalive_means_a_watchdog_of_three_periods() {
        let mut map = test_map();
        let state = map.register_id("state").unwrap();
        map.keepalive = Some(KeepaliveSpec {
            interval: KeepaliveInterval::Every(Duration::from_secs(5)),
            action: KeepaliveAction::Read(state),
        });
        let (mut d, t0) = device(map);
        assert!(!d.snapshot(secs(t0, 14.0)).failsafe_active);
        assert!(d.snapshot(secs(t0, 15.0)).failsafe_active);
    }

    #[test]
    fn undeclared_addresses_read_zero_inside_a_block_but_are_never_written() {
        let (mut d, t0) = device(test_map());
        // 13 and 15-16 are gaps between declared registers.
        assert_eq!(d.read(Table::Input, 12, 7, t0).unwrap().len(), 7);
        assert_eq!(
            d.read(Table::Input, 13, 1, t0),
            Err(Exception::IllegalDataAddress)
        );
        assert_eq!(
            d.read(Table::Input, 1000, 3, t0),
            Err(Exception::IllegalDataAddress)
        );
        assert_eq!(
            d.read(Table::Input, 4, 0, t0),
            Err(Exception::IllegalDataValue)
        );
        assert_eq!(
            d.read(Table::Input, 4, 126, t0),
            Err(Exception::IllegalDataValue)
        );
        assert_eq!(
            d.read(Table::Input, 65535, 2, t0),
            Err(Exception::IllegalDataAddress)
        );
        assert_eq!(
            d.write(Table::Holding, 259, &[1], 6, t0),
            Err(Exception::IllegalDataAddress)
        );
        assert_eq!(
            d.write(Table::Holding, 262, &[1, 2], 16, t0),
            Err(Exception::IllegalDataAddress),
            "262 is declared but 263 is not"
        );
        assert_eq!(
            d.write(Table::Input, 5, &[1], 6, t0),
            Err(Exception::IllegalFunction)
        );
        let mut strict = test_map();
        strict.modbus.max_gap = 0;
        let (mut d, t0) = device(strict);
        assert_eq!(
            d.read(Table::Input, 12, 7, t0),
            Err(Exception::IllegalDataAddress)
        );
        assert!(d.read(Table::Input, 4, 9, t0).is_ok());
    }

    #[test]
    fn a_state_the_map_lacks_falls_back_to_the_nearest() {
        let mut map = test_map();
        map.status.map.retain(|(_, s)| *s != Iec61851State::B1);
        let (mut d, t0) = device(map);
        d.plug(t0);
        let s = d.snapshot(t0);
        assert_eq!((s.state, s.status_raw), (Iec61851State::B2, vec![5]));
    }

    #[test]
    fn single_phase_evs_draw_on_l1_only() {
        let opts = SimOptions {
            phases: Some(1),
            ..SimOptions::default()
        };
        let mut d = SimDevice::new(Arc::new(test_map()), opts).unwrap();
        let t0 = Instant::now();
        d.plug(t0);
        d.write(Table::Holding, 261, &[160], 16, t0).unwrap();
        assert_eq!(d.read(Table::Input, 6, 3, t0).unwrap(), vec![160, 0, 0]);
        assert_eq!(d.snapshot(t0).power_w, 3680.0);
    }

    #[test]
    fn impossible_options_are_refused() {
        let build = |opts: SimOptions| SimDevice::new(Arc::new(test_map()), opts);
        let phases = build(SimOptions {
            phases: Some(4),
            ..SimOptions::default()
        });
        assert!(matches!(phases, Err(SimError::Phases(4))));
        let voltage = build(SimOptions {
            voltage_v: f64::NAN,
            ..SimOptions::default()
        });
        assert!(matches!(voltage, Err(SimError::Negative(_))));
        let ev = build(SimOptions {
            ev: Ev {
                max_current_a: -1.0,
                ..Ev::default()
            },
            ..SimOptions::default()
        });
        assert!(matches!(ev, Err(SimError::Negative(_))));
    }

    #[test]
    fn an_enable_coil_gates_the_offer() {
        let mut map = test_map();
        map.registers
            .push(reg("enable", Table::Coil, 400, ValueType::U16, 1.0));
        let enable = map.register_id("enable").unwrap();
        map.control.enable = Some(EnableSpec {
            register: enable,
            on_value: 1.0,
            off_value: 0.0,
        });
        let (mut d, t0) = device(map);
        d.plug(t0);
        d.write(Table::Holding, 261, &[160], 16, t0).unwrap();
        assert_eq!(d.snapshot(t0).state, Iec61851State::B1);
        d.write(Table::Coil, 400, &[1], 5, t0).unwrap();
        assert_eq!(d.snapshot(t0).state, Iec61851State::C2);
    }

    #[test]
    fn a_power_limit_offers_watts_over_phases_and_voltage() {
        let mut map = test_map();
        map.registers
            .push(reg("watts", Table::Holding, 600, ValueType::U32, 1.0));
        let watts = map.register_id("watts").unwrap();
        map.control.current_limit = None;
        map.control.power_limit = Some(PowerLimitSpec {
            register: watts,
            min_w: 1380.0,
            max_w: 11000.0,
            off_value: 0.0,
        });
        let (mut d, t0) = device(map);
        d.plug(t0);
        // 3 phases at 230 V: 6900 W is 10 A per phase.
        d.write(Table::Holding, 600, &[0, 6900], 16, t0).unwrap();
        let snap = d.snapshot(t0);
        assert_eq!(snap.state, Iec61851State::C2);
        assert!((snap.offered_a - 10.0).abs() < 1e-9, "{snap:?}");
        assert!((snap.limit_a.unwrap() - 10.0).abs() < 1e-9);
        // Above max_w the wallbox caps; below min_w it offers nothing.
        d.write(Table::Holding, 600, &[0, 20000], 16, t0).unwrap();
        assert!((d.snapshot(t0).offered_a - 11000.0 / 690.0).abs() < 1e-9);
        d.write(Table::Holding, 600, &[0, 1000], 16, t0).unwrap();
        assert_eq!(d.snapshot(t0).state, Iec61851State::B1);
    }

    #[test]
    fn a_cable_state_register_follows_the_plug() {
        let mut map = test_map();
        map.registers
            .push(reg("cable", Table::Input, 30, ValueType::U16, 1.0));
        let cable = map.register_id("cable").unwrap();
        // A state register without an "A" value: the cable register says "no vehicle".
        map.status.map.retain(|(_, st)| *st != Iec61851State::A);
        map.status.vehicle = Some(VehicleSpec {
            register: cable,
            connected: vec![5, 7],
        });
        let (mut d, t0) = device(map);
        let snap = d.snapshot(t0);
        assert_eq!(snap.state, Iec61851State::A);
        assert_eq!(word(&mut d, Table::Input, 30, t0), 0);
        assert_eq!(
            word(&mut d, Table::Input, 5, t0),
            4,
            "a non-fault value (B1)"
        );
        d.plug(t0);
        assert_eq!(word(&mut d, Table::Input, 30, t0), 5);
        assert_eq!(d.snapshot(t0).state, Iec61851State::B1);
    }

    #[test]
    fn masked_status_keeps_the_other_bits() {
        let mut map = test_map();
        let state = map.register_id("state").unwrap();
        map.registers[state].mask = Some(0xFF00);
        map.registers[state].shift = 8;
        let mut d = SimDevice::new(Arc::new(map), SimOptions::default()).unwrap();
        let t0 = Instant::now();
        d.words.insert((Table::Input, 5), 0x00AB);
        d.plug(t0);
        assert_eq!(word(&mut d, Table::Input, 5, t0), 0x04AB);
    }

    /// An Alfen-like map: state as a 5-register ASCII string, floats everywhere, Wh as f64.
    fn float_map() -> DeviceMap {
        use Table::Holding;
        use ValueType::{F32, F64};
        let mut state = reg("mode3", Holding, 1201, ValueType::String, 1.0);
        state.words = 5;
        let registers = vec![
            reg("voltage_l1", Holding, 306, F32, 1.0),
            reg("current_l1", Holding, 320, F32, 1.0),
            reg("current_l2", Holding, 322, F32, 1.0),
            reg("power", Holding, 344, F32, 1.0),
            reg("energy", Holding, 374, F64, 1.0),
            state,
            reg("limit", Holding, 1210, F32, 1.0),
        ];
        let mut map = test_map();
        map.status = StatusSpec {
            register: 5,
            map: ["A", "B1", "B2", "C1", "C2", "E", "F"]
                .into_iter()
                .map(|s| (StatusKey::Text(s.into()), Iec61851State::parse(s).unwrap()))
                .collect(),
            vehicle: None,
        };
        map.measurands = vec![
            MeasurandSpec {
                measurand: "Energy.Active.Import.Register".into(),
                sources: vec![(None, 4)],
                counts: Counts::Lifetime,
            },
            MeasurandSpec {
                measurand: "Power.Active.Import".into(),
                sources: vec![(None, 3)],
                counts: Counts::Lifetime,
            },
            MeasurandSpec {
                measurand: "Current.Import".into(),
                sources: vec![(Some("L1".into()), 1), (Some("L2".into()), 2)],
                counts: Counts::Lifetime,
            },
            MeasurandSpec {
                measurand: "Voltage".into(),
                sources: vec![(Some("L1-L2".into()), 0)],
                counts: Counts::Lifetime,
            },
        ];
        map.control = ControlSpec {
            power_limit: None,
            current_limit: Some(CurrentLimitSpec {
                register: 6,
                min: 6.0,
                max: 32.0,
                off_value: 0.0,
            }),
            ..ControlSpec::default()
        };
        map.keepalive = None;
        map.init = vec![];
        map.identity = Identity::default();
        map.registers = registers;
        map
    }

    #[test]
    fn string_states_and_float_registers_come_from_the_map_alone() {
        let (mut d, t0) = device_with(float_map(), SimOptions::default());
        assert_eq!(d.snapshot(t0).phases, 2, "Current.Import lists L1 and L2");
        d.plug(t0);
        assert_eq!(d.register_value("mode3"), Some(Value::Text("B1".into())));
        let limit = codec::encode(d.map().register(6), &Value::Number(20.0)).unwrap();
        d.write(Table::Holding, 1210, &limit, 16, t0).unwrap();
        assert_eq!(d.register_value("mode3"), Some(Value::Text("C2".into())));
        assert_eq!(d.register_value("current_l2"), Some(Value::Number(16.0)));
        let l1_l2 = d.register_value("voltage_l1").unwrap().as_f64().unwrap();
        assert!((l1_l2 - 398.37).abs() < 0.01, "{l1_l2}");
        let later = secs(t0, 7200.0);
        d.tick(later);
        assert_eq!(
            d.register_value("energy"),
            Some(Value::Number(16.0 * 230.0 * 2.0 * 2.0))
        );
        assert_eq!(
            parse_register_value(d.map(), "mode3", "12").unwrap(),
            Value::Text("12".into())
        );
    }

    #[test]
    fn command_line_values_follow_the_register_type() {
        let map = test_map();
        assert_eq!(
            parse_register_value(&map, "layout_version", "0x0108").unwrap(),
            Value::Number(264.0)
        );
        assert_eq!(
            parse_register_value(&map, "temperature", "-4.5").unwrap(),
            Value::Number(-4.5)
        );
        assert!(matches!(
            parse_register_value(&map, "temperature", "warm"),
            Err(SimError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_register_value(&map, "nope", "1"),
            Err(SimError::UnknownRegister(_))
        ));
    }
}
