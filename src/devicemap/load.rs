//! Loading and validating device maps (interfaces.md §3).
//!
//! The YAML is parsed into a located tree (`tree.rs`), then every section is checked and
//! converted into the types of [`super::model`]: `registers:` in `load/registers.rs`, what is
//! read (identity, status, measurands) in `load/reading.rs`, what is written (control, init,
//! keepalive) in `load/writing.rs`. All problems are collected, sorted by place
//! and returned together, each as `file:line:column: what is wrong; what to write instead`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::codec::{self, Value};
use super::fields::{Ctx, Fields, suggest};
use super::model::{
    ControlSpec, DeviceMap, Identity, ModbusSettings, Parity, PollClass, Register, RegisterId,
    SerialSettings, Table, ValueType, WriteFunction,
};
use super::tree::{self, Kind, Node, Pos};
use crate::diag::{Diagnostic, Diagnostics};

mod reading;
mod registers;
mod writing;

/// The OCPP 1.6 `Measurand` enumeration (OCPP 1.6 §7.31).
pub const MEASURANDS: &[&str] = &[
    "Current.Export",
    "Current.Import",
    "Current.Offered",
    "Energy.Active.Export.Register",
    "Energy.Active.Import.Register",
    "Energy.Reactive.Export.Register",
    "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval",
    "Energy.Active.Import.Interval",
    "Energy.Reactive.Export.Interval",
    "Energy.Reactive.Import.Interval",
    "Frequency",
    "Power.Active.Export",
    "Power.Active.Import",
    "Power.Factor",
    "Power.Offered",
    "Power.Reactive.Export",
    "Power.Reactive.Import",
    "RPM",
    "SoC",
    "Temperature",
    "Voltage",
];

/// The OCPP 1.6 `Phase` enumeration (OCPP 1.6 §7.34).
pub const PHASES: &[&str] = &[
    "L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1",
];

/// Default values of the `modbus:` section (interfaces.md §3).
pub mod defaults {
    use std::time::Duration;

    /// Unit (slave) id.
    pub const UNIT: u8 = 1;
    /// Pause before each request.
    pub const REQUEST_DELAY: Duration = Duration::ZERO;
    /// Reply timeout.
    pub const TIMEOUT: Duration = Duration::from_secs(1);
    /// Extra attempts.
    pub const RETRIES: u32 = 2;
    /// Largest block read: 125 registers is the Modbus limit for FC 3/4 (Modbus spec §6.3).
    pub const MAX_REGISTERS_PER_READ: u16 = 125;
    /// Undeclared registers a block may span.
    pub const MAX_GAP: u16 = 8;
    /// Lowest current a wallbox may be offered: IEC 61851-1 PWM starts at 6 A.
    pub const MIN_CURRENT: f64 = 6.0;
    /// Lowest power for a power-limited wallbox: 6 A on one 230 V phase.
    pub const MIN_POWER_W: f64 = 1380.0;
}

/// OCPP 1.6 BootNotification field lengths (CiString20/25/50, OCPP 1.6 §6.2).
const VENDOR_MAX: usize = 20;
const MODEL_MAX: usize = 20;
const FIRMWARE_MAX: usize = 50;
const SERIAL_MAX: usize = 25;

const TOP_FIELDS: &[&str] = &[
    "vendor",
    "model",
    "connectors",
    "modbus",
    "registers",
    "identity",
    "status",
    "measurands",
    "control",
    "init",
    "keepalive",
];
const MODBUS_FIELDS: &[&str] = &[
    "serial",
    "unit",
    "request_delay",
    "timeout",
    "retries",
    "max_registers_per_read",
    "max_gap",
    "write_function",
];
const SERIAL_FIELDS: &[&str] = &["baud", "parity", "data_bits", "stop_bits"];
const TABLES: [(&str, Table); 4] = [
    ("input", Table::Input),
    ("holding", Table::Holding),
    ("coil", Table::Coil),
    ("discrete", Table::Discrete),
];
const REGISTER_FIELDS: &[&str] = &[
    "input",
    "holding",
    "coil",
    "discrete",
    "type",
    "word_order",
    "length",
    "encoding",
    "scale",
    "offset",
    "mask",
    "shift",
    "unavailable",
    "poll",
];
const TYPES: [(&str, ValueType); 9] = [
    ("u16", ValueType::U16),
    ("i16", ValueType::I16),
    ("u32", ValueType::U32),
    ("i32", ValueType::I32),
    ("u64", ValueType::U64),
    ("i64", ValueType::I64),
    ("f32", ValueType::F32),
    ("f64", ValueType::F64),
    ("string", ValueType::String),
];

/// Loads a device map from YAML text.
///
/// `name` becomes [`DeviceMap::name`]; `file_label` is how diagnostics name the file.
///
/// # Errors
/// Every problem found, located by line and column.
pub fn load_str(name: &str, file_label: &str, yaml: &str) -> Result<DeviceMap, Diagnostics> {
    let root = tree::parse(file_label, yaml).map_err(|d| Diagnostics(vec![d]))?;
    let mut loader = Loader {
        ctx: Ctx::new(file_label),
        regs: Vec::new(),
        by_name: HashMap::new(),
    };
    let map = loader.document(name, &root);
    let mut diags = loader.ctx.diags;
    match map {
        Some(map) if diags.is_empty() => Ok(map),
        _ => {
            if diags.is_empty() {
                // Defensive: a missing piece is always reported where it is detected.
                diags.push(Diagnostic::at(file_label, 0, 0, "invalid device map"));
            }
            diags.sort_by_key(|d| (d.line, d.column));
            Err(Diagnostics(diags))
        }
    }
}

/// Loads a device map from a file; the map is named after the file stem.
///
/// # Errors
/// The file cannot be read, or every problem found in it.
pub fn load_file(path: &Path) -> Result<DeviceMap, Diagnostics> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::at(
            &label,
            0,
            0,
            format!("cannot read device map: {e}"),
        )])
    })?;
    let name = path
        .file_stem()
        .map_or_else(|| label.clone(), |s| s.to_string_lossy().into_owned());
    load_str(&name, &label, &text)
}

/// One declared register and what the checks of other sections need to know about it.
#[derive(Debug)]
struct RegEntry {
    reg: Register,
    /// Where the register's name is written.
    pos: Pos,
    /// Whether its table was given exactly once (else table-based checks are skipped).
    table_known: bool,
    /// Whether its address is valid too (else it is left out of the overlap check).
    placed: bool,
}

#[derive(Debug)]
struct Loader<'a> {
    ctx: Ctx<'a>,
    regs: Vec<RegEntry>,
    by_name: HashMap<String, RegisterId>,
}

impl Loader<'_> {
    fn document(&mut self, name: &str, root: &Node) -> Option<DeviceMap> {
        if root.kind == Kind::Null {
            self.ctx.err(
                root.pos,
                "the device map is empty; start with `vendor:`, `model:` and `registers:`",
            );
            return None;
        }
        let top = self.ctx.fields(root, "device map", TOP_FIELDS)?;
        let vendor = self.required_text(&top, "vendor", VENDOR_MAX, "chargePointVendor");
        let model = self.required_text(&top, "model", MODEL_MAX, "chargePointModel");
        let connectors = match top.get("connectors") {
            Some(n) => self
                .ctx
                .int(n, "connectors", 1, i128::from(u16::MAX))
                .and_then(|c| u16::try_from(c).ok()),
            None => Some(1),
        };
        let modbus = match top.get("modbus") {
            Some(n) => self.modbus(n),
            None => Some(default_modbus()),
        };
        let max_read = modbus
            .as_ref()
            .map_or(defaults::MAX_REGISTERS_PER_READ, |m| {
                m.max_registers_per_read
            });
        match top.get("registers") {
            Some(n) => self.registers(n, max_read),
            None => self.ctx.err(
                top.pos,
                "missing `registers:`: declare the wallbox's registers, e.g. `state: { input: 5 }`",
            ),
        }
        let identity = top
            .get("identity")
            .map_or_else(|| Some(Identity::default()), |n| self.identity(n));
        let status = match top.get("status") {
            Some(n) => self.status(n),
            None => {
                self.ctx.err(
                    top.pos,
                    "missing `status:`: every map needs `status: { register: NAME, map: { RAW: STATE } }` \
                     so the gateway can derive the connector status",
                );
                None
            }
        };
        let measurands = top
            .get("measurands")
            .map_or_else(|| Some(Vec::new()), |n| self.measurands(n));
        let control = top
            .get("control")
            .map_or_else(|| Some(ControlSpec::default()), |n| self.control(n));
        let init = top
            .get("init")
            .map_or_else(|| Some(Vec::new()), |n| self.init(n));
        let keepalive = match top.get("keepalive") {
            Some(n) => self.keepalive(n).map(Some),
            None => Some(None),
        };
        Some(DeviceMap {
            name: name.to_owned(),
            vendor: vendor?,
            model: model?,
            connectors: connectors?,
            modbus: modbus?,
            registers: self.regs.iter().map(|e| e.reg.clone()).collect(),
            identity: identity?,
            status: status?,
            measurands: measurands?,
            control: control?,
            init: init?,
            keepalive: keepalive?,
        })
    }

    fn required_text(
        &mut self,
        top: &Fields<'_>,
        field: &str,
        max: usize,
        ocpp: &str,
    ) -> Option<String> {
        let Some(node) = top.get(field) else {
            self.ctx.err(
                top.pos,
                format!("missing `{field}:` (sent to the central system as {ocpp})"),
            );
            return None;
        };
        let text = self.ctx.string(node, field)?.trim();
        if text.is_empty() {
            self.ctx
                .err(node.pos, format!("{field}: must not be empty"));
            return None;
        }
        if text.chars().any(char::is_control) {
            self.ctx.err(
                node.pos,
                format!("{field}: contains control characters; use plain text"),
            );
            return None;
        }
        if text.chars().count() > max {
            self.ctx.err(
                node.pos,
                format!(
                    "{field}: `{text}` is longer than {max} characters, the limit of OCPP {ocpp}; shorten it"
                ),
            );
            return None;
        }
        Some(text.to_owned())
    }

    // ---- modbus ----

    fn modbus(&mut self, node: &Node) -> Option<ModbusSettings> {
        let f = self.ctx.fields(node, "modbus", MODBUS_FIELDS)?;
        let mut ok = true;
        let mut out = default_modbus();
        if let Some(n) = f.get("serial") {
            match self.serial(n) {
                Some(s) => out.serial = s,
                None => ok = false,
            }
        }
        if let Some(n) = f.get("unit") {
            // Unit 0 is the broadcast address: devices never answer it (Modbus spec §4.1).
            match self.ctx.int(n, "modbus.unit", 1, 255) {
                Some(u) => out.unit = u8::try_from(u).unwrap_or(defaults::UNIT),
                None => ok = false,
            }
        }
        if let Some(n) = f.get("request_delay") {
            match self.ctx.duration(n, "modbus.request_delay") {
                Some(d) => out.request_delay = d,
                None => ok = false,
            }
        }
        if let Some(n) = f.get("timeout") {
            match self.positive_duration(n, "modbus.timeout") {
                Some(d) => out.timeout = d,
                None => ok = false,
            }
        }
        if let Some(n) = f.get("retries") {
            match self.ctx.int(n, "modbus.retries", 0, 100) {
                Some(r) => out.retries = u32::try_from(r).unwrap_or(defaults::RETRIES),
                None => ok = false,
            }
        }
        if let Some(n) = f.get("max_registers_per_read") {
            match self.ctx.int(n, "modbus.max_registers_per_read", 1, 125) {
                Some(r) => {
                    out.max_registers_per_read =
                        u16::try_from(r).unwrap_or(defaults::MAX_REGISTERS_PER_READ);
                }
                None => ok = false,
            }
        }
        if let Some(n) = f.get("max_gap") {
            match self.ctx.int(n, "modbus.max_gap", 0, 125) {
                Some(g) => out.max_gap = u16::try_from(g).unwrap_or(defaults::MAX_GAP),
                None => ok = false,
            }
        }
        if let Some(n) = f.get("write_function") {
            match self.ctx.choice(n, "modbus.write_function", &["6", "16"]) {
                Some("6") => out.write_function = WriteFunction::Single,
                Some(_) => out.write_function = WriteFunction::Multiple,
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `Some(None)` for an explicit `serial: ~`; `None` when invalid.
    fn serial(&mut self, node: &Node) -> Option<Option<SerialSettings>> {
        if node.kind == Kind::Null {
            return Some(None);
        }
        let f = self.ctx.fields(node, "modbus.serial", SERIAL_FIELDS)?;
        let baud = match f.get("baud") {
            Some(n) => self
                .ctx
                .int(n, "modbus.serial.baud", 300, 4_000_000)
                .and_then(|b| u32::try_from(b).ok()),
            None => {
                self.ctx
                    .err(f.pos, "modbus.serial: missing `baud` (e.g. `baud: 19200`)");
                None
            }
        };
        let parity = match f.get("parity") {
            Some(n) => match self
                .ctx
                .choice(n, "modbus.serial.parity", &["none", "even", "odd"])
            {
                Some("even") => Some(Parity::Even),
                Some("odd") => Some(Parity::Odd),
                Some(_) => Some(Parity::None),
                None => None,
            },
            None => Some(Parity::None),
        };
        let data_bits = match f.get("data_bits") {
            Some(n) => self
                .ctx
                .choice(n, "modbus.serial.data_bits", &["7", "8"])
                .map(|s| if s == "7" { 7 } else { 8 }),
            None => Some(8),
        };
        let stop_bits = match f.get("stop_bits") {
            Some(n) => self
                .ctx
                .choice(n, "modbus.serial.stop_bits", &["1", "2"])
                .map(|s| if s == "2" { 2 } else { 1 }),
            None => Some(1),
        };
        Some(Some(SerialSettings {
            baud: baud?,
            parity: parity?,
            data_bits: data_bits?,
            stop_bits: stop_bits?,
        }))
    }

    fn positive_duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let d = self.ctx.duration(node, path)?;
        if d.is_zero() {
            self.ctx
                .err(node.pos, format!("{path}: must be longer than 0, e.g. 1s"));
            return None;
        }
        Some(d)
    }

    // ---- references to registers ----

    fn reg_ref(&mut self, node: &Node, path: &str) -> Option<RegisterId> {
        let name = self.ctx.string(node, path)?;
        if let Some(id) = self.by_name.get(name) {
            return Some(*id);
        }
        let hint = suggest(name, self.regs.iter().map(|e| e.reg.name.as_str()))
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        let declared: Vec<&str> = self.regs.iter().map(|e| e.reg.name.as_str()).collect();
        let list = if declared.is_empty() {
            "none".to_owned()
        } else if declared.len() > 12 {
            format!("{}, ...", declared[..12].join(", "))
        } else {
            declared.join(", ")
        };
        self.ctx.err(
            node.pos,
            format!("{path}: unknown register `{name}`; {hint}declared registers: {list}"),
        );
        None
    }

    fn numeric_ref(&mut self, node: &Node, path: &str) -> Option<RegisterId> {
        let id = self.reg_ref(node, path)?;
        let e = &self.regs[id];
        if e.reg.ty == ValueType::String {
            let msg = format!(
                "{path}: register `{}` (line {}) is a string; a number is needed here",
                e.reg.name, e.pos.line
            );
            self.ctx.err(node.pos, msg);
            return None;
        }
        Some(id)
    }

    /// Reports a reference to a `poll: never` register where the gateway has to read it.
    fn check_readable(&mut self, id: RegisterId, node: &Node, path: &str) -> bool {
        let e = &self.regs[id];
        if e.reg.poll != PollClass::Never {
            return true;
        }
        let msg = format!(
            "{path}: register `{}` (line {}) is `poll: never` (write-only), but the gateway reads it here; \
             give it `poll: always`, `slow` or `once`, or use another register",
            e.reg.name, e.pos.line
        );
        self.ctx.err(node.pos, msg);
        false
    }

    /// A register the gateway reads: declared and not `poll: never`.
    fn readable_ref(&mut self, node: &Node, path: &str) -> Option<RegisterId> {
        let id = self.reg_ref(node, path)?;
        self.check_readable(id, node, path).then_some(id)
    }

    /// A numeric register the gateway reads.
    fn readable_numeric_ref(&mut self, node: &Node, path: &str) -> Option<RegisterId> {
        let id = self.numeric_ref(node, path)?;
        self.check_readable(id, node, path).then_some(id)
    }

    fn writable_ref(&mut self, node: &Node, path: &str) -> Option<RegisterId> {
        let id = self.numeric_ref(node, path)?;
        let e = &self.regs[id];
        if e.table_known && !e.reg.table.writable() {
            let msg = format!(
                "{path}: register `{}` (line {}) is a read-only {} register; the gateway writes here, \
                 so declare it as `holding` (or `coil`)",
                e.reg.name,
                e.pos.line,
                e.reg.table.as_str()
            );
            self.ctx.err(node.pos, msg);
            return None;
        }
        Some(id)
    }

    /// Checks that `value` (engineering units) can be written to the register.
    fn check_encodes(&mut self, id: RegisterId, value: f64, pos: Pos, path: &str) -> bool {
        match codec::encode(&self.regs[id].reg, &Value::Number(value)) {
            Ok(_) => true,
            Err(e) => {
                self.ctx.err(pos, format!("{path}: {e}"));
                false
            }
        }
    }
}

fn default_modbus() -> ModbusSettings {
    ModbusSettings {
        serial: None,
        unit: defaults::UNIT,
        request_delay: defaults::REQUEST_DELAY,
        timeout: defaults::TIMEOUT,
        retries: defaults::RETRIES,
        max_registers_per_read: defaults::MAX_REGISTERS_PER_READ,
        max_gap: defaults::MAX_GAP,
        write_function: WriteFunction::Multiple,
    }
}

/// The name of a value type as written in maps.
#[must_use]
pub fn type_name(ty: ValueType) -> &'static str {
    TYPES
        .iter()
        .find(|(_, t)| *t == ty)
        .map_or("u16", |(s, _)| *s)
}
