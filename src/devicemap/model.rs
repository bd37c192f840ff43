//! The validated device map: what the rest of the gateway works with.
//!
//! The loader (`load.rs`) turns a YAML file into these types after checking every rule of
//! `interfaces.md` §3; code outside `devicemap` never sees the raw YAML shapes. Registers are
//! referred to by [`RegisterId`], their index in [`DeviceMap::registers`] (file order).

use std::time::Duration;

/// Index of a register in [`DeviceMap::registers`].
pub type RegisterId = usize;

/// One wallbox model's Modbus interface, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceMap {
    /// The map's name: the built-in name or the file stem.
    pub name: String,
    /// BootNotification `chargePointVendor`.
    pub vendor: String,
    /// BootNotification `chargePointModel`.
    pub model: String,
    /// Number of connectors (OCPP connector ids 1..=connectors).
    pub connectors: u16,
    /// Bus defaults and the device's timing.
    pub modbus: ModbusSettings,
    /// Named points in file order.
    pub registers: Vec<Register>,
    /// BootNotification identity fields.
    pub identity: Identity,
    /// How the IEC 61851 state is derived.
    pub status: StatusSpec,
    /// OCPP measurands and the registers they come from.
    pub measurands: Vec<MeasurandSpec>,
    /// Limit and enable registers.
    pub control: ControlSpec,
    /// Writes made whenever the device (re)appears.
    pub init: Vec<WriteSpec>,
    /// Traffic the wallbox must see to keep remote control.
    pub keepalive: Option<KeepaliveSpec>,
}

impl DeviceMap {
    /// The register with this name.
    #[must_use]
    pub fn register_id(&self, name: &str) -> Option<RegisterId> {
        self.registers.iter().position(|r| r.name == name)
    }

    /// The register behind an id.
    ///
    /// # Panics
    /// Never for ids produced by the loader, which only hands out valid indices.
    #[must_use]
    pub fn register(&self, id: RegisterId) -> &Register {
        &self.registers[id]
    }

    /// The source registers of one OCPP measurand, if the map provides it.
    #[must_use]
    pub fn measurand(&self, measurand: &str) -> Option<&MeasurandSpec> {
        self.measurands.iter().find(|m| m.measurand == measurand)
    }

    /// What the map's energy register counts; [`Counts::Lifetime`] when it has none.
    #[must_use]
    pub fn energy_counts(&self) -> Counts {
        self.measurand(ENERGY_REGISTER)
            .map_or(Counts::Lifetime, |m| m.counts)
    }
}

/// The energy measurand, the one whose register may count per session (`counts: session`).
pub const ENERGY_REGISTER: &str = "Energy.Active.Import.Register";

/// The `modbus:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct ModbusSettings {
    /// Serial defaults for a bus this device sits on; `None` for TCP-only devices.
    pub serial: Option<SerialSettings>,
    /// Default unit (slave) id.
    pub unit: u8,
    /// Pause on the bus before each request to this device.
    pub request_delay: Duration,
    /// Time to wait for a reply.
    pub timeout: Duration,
    /// Extra attempts after a failed request.
    pub retries: u32,
    /// Largest block read (registers, or bits for coils/discrete inputs).
    pub max_registers_per_read: u16,
    /// Undeclared registers a block read may span.
    pub max_gap: u16,
    /// Function code for single-register writes.
    pub write_function: WriteFunction,
}

/// Serial line settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SerialSettings {
    /// Baud rate.
    pub baud: u32,
    /// Parity.
    pub parity: Parity,
    /// 7 or 8.
    pub data_bits: u8,
    /// 1 or 2.
    pub stop_bits: u8,
}

/// Serial parity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// Function code used to write a single register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteFunction {
    /// FC 6, write single register.
    Single,
    /// FC 16, write multiple registers (also for one register).
    Multiple,
}

/// The Modbus table a register lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Input registers (FC 4), read-only.
    Input,
    /// Holding registers (FC 3 / 6 / 16).
    Holding,
    /// Coils (FC 1 / 5 / 15).
    Coil,
    /// Discrete inputs (FC 2), read-only.
    Discrete,
}

impl Table {
    /// Whether the gateway may write this table.
    #[must_use]
    pub fn writable(self) -> bool {
        matches!(self, Table::Holding | Table::Coil)
    }

    /// Whether each address holds one bit rather than a 16-bit word.
    #[must_use]
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }

    /// The name used in device maps.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Input => "input",
            Table::Holding => "holding",
            Table::Coil => "coil",
            Table::Discrete => "discrete",
        }
    }
}

/// A register's value type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// Unsigned 16 bit.
    U16,
    /// Signed 16 bit.
    I16,
    /// Unsigned 32 bit, two registers.
    U32,
    /// Signed 32 bit, two registers.
    I32,
    /// Unsigned 64 bit, four registers.
    U64,
    /// Signed 64 bit, four registers.
    I64,
    /// IEEE 754 single, two registers.
    F32,
    /// IEEE 754 double, four registers.
    F64,
    /// Characters over `length` registers.
    String,
}

impl ValueType {
    /// Registers one value of this type occupies (`None` for strings: they carry a `length`).
    #[must_use]
    pub fn fixed_words(self) -> Option<u16> {
        match self {
            ValueType::U16 | ValueType::I16 => Some(1),
            ValueType::U32 | ValueType::I32 | ValueType::F32 => Some(2),
            ValueType::U64 | ValueType::I64 | ValueType::F64 => Some(4),
            ValueType::String => None,
        }
    }
}

/// Order of the 16-bit words of a multi-register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WordOrder {
    /// High word first (the Modbus norm).
    #[default]
    Big,
    /// Low word first.
    Little,
}

/// How characters are packed into registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum StringEncoding {
    /// Two ASCII characters per register, high byte first.
    #[default]
    Ascii,
    /// Two ASCII characters per register, low byte first.
    AsciiSwapped,
    /// One UTF-16 code unit per register.
    Utf16,
}

/// How often a register is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum PollClass {
    /// Every poll cycle.
    #[default]
    Always,
    /// Every 10th cycle.
    Slow,
    /// Once after the device (re)appears.
    Once,
    /// Never read: write-only registers (a heartbeat, a set-point the device does not let
    /// anyone read back). Reading them may be refused or, on some devices, close the link.
    Never,
}

/// Cycles between two reads of a `slow` register.
pub const SLOW_POLL_EVERY: u64 = 10;

/// One named point.
#[derive(Clone, Debug, PartialEq)]
pub struct Register {
    /// Name from the map.
    pub name: String,
    /// Table.
    pub table: Table,
    /// 0-based wire address.
    pub address: u16,
    /// Value type.
    pub ty: ValueType,
    /// Word order of multi-register values.
    pub word_order: WordOrder,
    /// Registers occupied (derived from the type, or `length` for strings).
    pub words: u16,
    /// String encoding.
    pub encoding: StringEncoding,
    /// Multiplier applied after mask/shift.
    pub scale: f64,
    /// Added after scaling.
    pub offset: f64,
    /// Bit mask applied to the raw integer before `shift`.
    pub mask: Option<u64>,
    /// Right shift applied after `mask`.
    pub shift: u32,
    /// Raw values that mean "no reading".
    pub unavailable: Vec<u64>,
    /// Poll class.
    pub poll: PollClass,
}

impl Register {
    /// A register with every optional field at the format's default (interfaces.md §3):
    /// high word first, ASCII strings, no scale, offset, mask, shift or sentinels, polled every
    /// cycle. It occupies the type's size; a string one register until its `length` is set.
    #[must_use]
    pub fn new(name: impl Into<String>, table: Table, address: u16, ty: ValueType) -> Self {
        Register {
            name: name.into(),
            table,
            address,
            ty,
            word_order: WordOrder::Big,
            words: ty.fixed_words().unwrap_or(1),
            encoding: StringEncoding::Ascii,
            scale: 1.0,
            offset: 0.0,
            mask: None,
            shift: 0,
            unavailable: Vec::new(),
            poll: PollClass::Always,
        }
    }

    /// The last address this register occupies.
    #[must_use]
    pub fn last_address(&self) -> u32 {
        u32::from(self.address) + u32::from(self.words) - 1
    }
}

/// BootNotification identity fields.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Identity {
    /// `firmwareVersion`.
    pub firmware: Option<IdentityValue>,
    /// `chargePointSerialNumber`.
    pub serial: Option<IdentityValue>,
}

/// A literal, or a register read once and formatted.
#[derive(Clone, Debug, PartialEq)]
pub enum IdentityValue {
    /// A fixed string.
    Literal(String),
    /// A register; `format` replaces `{}` with the decoded value.
    Register {
        /// The register.
        register: RegisterId,
        /// Optional format with one `{}`.
        format: Option<String>,
    },
}

/// IEC 61851 states as reported by wallboxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Iec61851State {
    /// No vehicle.
    A,
    /// Vehicle plugged, EVSE not offering current.
    B1,
    /// Vehicle plugged, EVSE offering current, EV not drawing.
    B2,
    /// EV requests charging, EVSE not offering.
    C1,
    /// Charging.
    C2,
    /// Charging with ventilation requested, EVSE not offering.
    D1,
    /// Charging with ventilation.
    D2,
    /// Error (short circuit, no pilot).
    E,
    /// EVSE not available / fault.
    F,
}

impl Iec61851State {
    /// Every state, in order.
    pub const ALL: [Iec61851State; 9] = [
        Self::A,
        Self::B1,
        Self::B2,
        Self::C1,
        Self::C2,
        Self::D1,
        Self::D2,
        Self::E,
        Self::F,
    ];

    /// The state's name as written in maps.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B1 => "B1",
            Self::B2 => "B2",
            Self::C1 => "C1",
            Self::C2 => "C2",
            Self::D1 => "D1",
            Self::D2 => "D2",
            Self::E => "E",
            Self::F => "F",
        }
    }

    /// Parses a state name (`A`, `B1`, …).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether a vehicle is connected.
    #[must_use]
    pub fn plugged(self) -> bool {
        !matches!(self, Self::A | Self::E | Self::F)
    }
}

/// A key of the status map: a raw number or a string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StatusKey {
    /// Raw integer after mask/shift.
    Number(i64),
    /// Trimmed string value.
    Text(String),
}

/// The `status:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusSpec {
    /// Register holding the state.
    pub register: RegisterId,
    /// Raw value -> state; values not listed mean Faulted.
    pub map: Vec<(StatusKey, Iec61851State)>,
    /// A second register saying whether a vehicle is connected (cable state), for wallboxes
    /// whose state register alone does not tell (KEBA, Vestel, Webasto).
    pub vehicle: Option<VehicleSpec>,
}

/// `status.vehicle`: a cable-state register refining the state from `status.register`.
///
/// The combination rule: a fault (E, F) always stands; otherwise a value not in `connected`
/// means no vehicle (A), and a connected vehicle turns A into B1 (plugged, nothing offered
/// that the state register reports).
#[derive(Clone, Debug, PartialEq)]
pub struct VehicleSpec {
    /// The cable-state register (integer).
    pub register: RegisterId,
    /// Raw values (after mask/shift) meaning a vehicle is connected.
    pub connected: Vec<i64>,
}

impl VehicleSpec {
    /// Combines the state register's state with the cable-state register's raw value.
    #[must_use]
    pub fn combine(&self, state: Iec61851State, cable: i64) -> Iec61851State {
        use Iec61851State as S;
        match state {
            S::E | S::F => state,
            _ if !self.connected.contains(&cable) => S::A,
            S::A => S::B1,
            other => other,
        }
    }
}

impl StatusSpec {
    /// The state for a raw key, if mapped.
    #[must_use]
    pub fn lookup(&self, key: &StatusKey) -> Option<Iec61851State> {
        self.map.iter().find(|(k, _)| k == key).map(|(_, s)| *s)
    }
}

/// One OCPP measurand and its source registers.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasurandSpec {
    /// OCPP measurand name, e.g. `Energy.Active.Import.Register`.
    pub measurand: String,
    /// `(phase, register)`; phase is `None` for a total / single value.
    pub sources: Vec<(Option<String>, RegisterId)>,
    /// What an energy register counts (`{ register: NAME, counts: session }`).
    pub counts: Counts,
}

/// What an energy register counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Counts {
    /// A meter that only ever goes up: what OCPP's `Energy.Active.Import.Register` is.
    #[default]
    Lifetime,
    /// The energy of the running session, starting again from 0 at the next one (ABB Terra
    /// AC). The gateway adds each finished session to a total it keeps, so the central system
    /// still sees a register that never goes back.
    Session,
}

/// The `control:` section.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ControlSpec {
    /// The current-limit register.
    pub current_limit: Option<CurrentLimitSpec>,
    /// A power-limit register (W), for wallboxes controlled by power instead of current.
    pub power_limit: Option<PowerLimitSpec>,
    /// A flag that switches charging on/off.
    pub enable: Option<EnableSpec>,
    /// Rewrite the limit this often.
    pub refresh: Option<Duration>,
    /// Register written with the charger's failsafe current at connect.
    pub failsafe_current: Option<RegisterId>,
}

/// Current limit written in amperes (after the register's scale).
#[derive(Clone, Debug, PartialEq)]
pub struct CurrentLimitSpec {
    /// Register.
    pub register: RegisterId,
    /// Smallest limit the wallbox accepts; anything lower writes `off_value`.
    pub min: f64,
    /// Largest limit the wallbox accepts.
    pub max: f64,
    /// Value written to stop charging (in register units after scale).
    pub off_value: f64,
}

/// Power limit written in watts (after the register's scale). The gateway computes the watts
/// from its current limit as amperes x the charger's `phases` x `voltage`.
#[derive(Clone, Debug, PartialEq)]
pub struct PowerLimitSpec {
    /// Register.
    pub register: RegisterId,
    /// Smallest power the wallbox accepts; anything lower writes `off_value`.
    pub min_w: f64,
    /// Largest power the wallbox accepts.
    pub max_w: f64,
    /// Value written to stop charging (in register units after scale).
    pub off_value: f64,
}

impl PowerLimitSpec {
    /// The value to write for a current limit (`None` = off), with `phases` x `voltage`
    /// converting amperes to watts and `max_current` capping the amperes first.
    #[must_use]
    pub fn watts(&self, amps: Option<f64>, max_current: f64, phases: u8, voltage: f64) -> f64 {
        let per_amp = f64::from(phases.max(1)) * voltage;
        match amps {
            Some(a) if a.is_finite() && per_amp > 0.0 => {
                let w = (a.min(max_current) * per_amp).min(self.max_w).round();
                if w >= self.min_w && w > 0.0 {
                    w
                } else {
                    self.off_value
                }
            }
            _ => self.off_value,
        }
    }
}

/// An on/off flag register.
#[derive(Clone, Debug, PartialEq)]
pub struct EnableSpec {
    /// Register.
    pub register: RegisterId,
    /// Value that enables charging.
    pub on_value: f64,
    /// Value that disables charging.
    pub off_value: f64,
}

/// A fixed write.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteSpec {
    /// Register.
    pub register: RegisterId,
    /// Value in register units after scale.
    pub value: f64,
}

/// The `keepalive:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct KeepaliveSpec {
    /// How often.
    pub interval: KeepaliveInterval,
    /// What to do.
    pub action: KeepaliveAction,
}

/// Keep-alive period.
#[derive(Clone, Debug, PartialEq)]
pub enum KeepaliveInterval {
    /// Fixed period.
    Every(Duration),
    /// Read from a register (e.g. a watchdog timeout) and divided.
    FromRegister {
        /// Register holding the timeout.
        register: RegisterId,
        /// Unit of that register's value.
        unit: TimeUnit,
        /// Divide the timeout by this (send well before it expires).
        divide: u32,
    },
}

impl KeepaliveInterval {
    /// The keep-alive period. For [`KeepaliveInterval::FromRegister`], `register_value` is the
    /// decoded value of that register (in `unit`), divided by `divide`; `None` when it has not
    /// been read, or reads 0 or less (a watchdog timeout of 0 means the watchdog is off, e.g.
    /// Heidelberg HR 257), so no keep-alive traffic is needed.
    #[must_use]
    pub fn period(&self, register_value: Option<f64>) -> Option<Duration> {
        match self {
            KeepaliveInterval::Every(d) => Some(*d),
            KeepaliveInterval::FromRegister { unit, divide, .. } => {
                let v = register_value.filter(|v| v.is_finite() && *v > 0.0)?;
                let secs = match unit {
                    TimeUnit::Ms => v / 1000.0,
                    TimeUnit::S => v,
                } / f64::from((*divide).max(1));
                Duration::try_from_secs_f64(secs).ok()
            }
        }
    }
}

/// Unit of a time value in a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
}

/// Keep-alive traffic.
#[derive(Clone, Debug, PartialEq)]
pub enum KeepaliveAction {
    /// Read this register.
    Read(RegisterId),
    /// Write this value.
    Write(WriteSpec),
    /// Write the value last read from `from` into `register` (KEBA: the failsafe timeout read
    /// from 1602 is rewritten to 5018 as the heartbeat). Nothing is written while `from` is
    /// unread or 0 or less.
    Copy {
        /// The register written.
        register: RegisterId,
        /// The register whose value is written.
        from: RegisterId,
    },
}
