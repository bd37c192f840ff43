//! Loading and validating device maps (interfaces.md §3).
//!
//! The YAML is parsed into a located tree ([`super::tree`]), then every section is checked and
//! converted into the types of [`super::model`]. All problems are collected, sorted by place
//! and returned together, each as `file:line:column: what is wrong; what to write instead`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::codec::{self, Value};
use super::fields::{Ctx, Fields, suggest};
use super::model::{
    ControlSpec, CurrentLimitSpec, DeviceMap, EnableSpec, Identity, IdentityValue, Iec61851State,
    KeepaliveAction, KeepaliveInterval, KeepaliveSpec, MeasurandSpec, ModbusSettings, Parity,
    PollClass, Register, RegisterId, SerialSettings, StatusKey, StatusSpec, StringEncoding, Table,
    TimeUnit, ValueType, WordOrder, WriteFunction, WriteSpec,
};
use super::tree::{self, Kind, Node, Pos, is_yaml11_bool};
use crate::diag::{Diagnostic, Diagnostics};

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

    // ---- registers ----

    fn registers(&mut self, node: &Node, max_read: u16) {
        let Some(entries) = self.ctx.map(
            node,
            "registers",
            "register name -> { input: ADDRESS, ... }",
        ) else {
            return;
        };
        if entries.is_empty() {
            self.ctx.err(
                node.pos,
                "registers: declare at least one register, e.g. `state: { input: 5 }`",
            );
        }
        for (key, value) in entries {
            let Some(name) = self.ctx.key(key, "registers") else {
                continue;
            };
            if name.is_empty() || name.chars().any(char::is_whitespace) {
                self.ctx.err(
                    key.pos,
                    format!("registers: name `{name}` must be one word without spaces, e.g. `current_l1`"),
                );
            }
            let entry = self.register(name, key.pos, value, max_read);
            self.by_name.insert(name.to_owned(), self.regs.len());
            self.regs.push(entry);
        }
        self.check_overlaps();
    }

    #[allow(clippy::too_many_lines)]
    fn register(&mut self, name: &str, pos: Pos, node: &Node, max_read: u16) -> RegEntry {
        let path = format!("registers.{name}");
        let mut reg = Register {
            name: name.to_owned(),
            table: Table::Input,
            address: 0,
            ty: ValueType::U16,
            word_order: WordOrder::Big,
            words: 1,
            encoding: StringEncoding::Ascii,
            scale: 1.0,
            offset: 0.0,
            mask: None,
            shift: 0,
            unavailable: Vec::new(),
            poll: PollClass::Always,
        };
        let Some(f) = self.ctx.fields(node, &path, REGISTER_FIELDS) else {
            return RegEntry {
                reg,
                pos,
                table_known: false,
            };
        };

        // Exactly one of input/holding/coil/discrete carries the address.
        let given: Vec<(&str, Table)> = f
            .names()
            .filter_map(|n| TABLES.iter().find(|(t, _)| *t == n).copied())
            .collect();
        let mut table_known = false;
        let mut address_pos = f.pos;
        match given.as_slice() {
            [] => self.ctx.err(
                f.pos,
                format!(
                    "{path}: needs an address in exactly one table: input, holding, coil or discrete \
                     (e.g. `input: 5`, 0-based wire address)"
                ),
            ),
            [(t, table)] => {
                reg.table = *table;
                table_known = true;
                if let Some(n) = f.get(t) {
                    address_pos = n.pos;
                    if let Some(a) = self.ctx.int(n, &format!("{path}.{t}"), 0, 65535) {
                        reg.address = u16::try_from(a).unwrap_or(0);
                    }
                }
            }
            [(first, _), rest @ ..] => {
                for (t, _) in rest {
                    let at = f.key_pos(t).unwrap_or(f.pos);
                    self.ctx.err(
                        at,
                        format!(
                            "{path}: both `{first}` and `{t}` given; a register lives in exactly one table, keep one"
                        ),
                    );
                }
            }
        }

        if let Some(n) = f.get("type") {
            let names: Vec<&'static str> = TYPES.iter().map(|(s, _)| *s).collect();
            if let Some(t) = self.ctx.choice(n, &format!("{path}.type"), &names) {
                reg.ty = TYPES
                    .iter()
                    .find(|(s, _)| *s == t)
                    .map_or(ValueType::U16, |(_, ty)| *ty);
            }
        }
        let ty_name = type_name(reg.ty);
        if table_known && reg.table.is_bits() && reg.ty != ValueType::U16 {
            let at = f.get("type").map_or(f.pos, |n| n.pos);
            self.ctx.err(
                at,
                format!(
                    "{path}: a {} holds one bit, so its type must be u16 (the default); remove `type: {ty_name}`",
                    reg.table.as_str()
                ),
            );
        }
        let is_string = reg.ty == ValueType::String;
        let is_float = matches!(reg.ty, ValueType::F32 | ValueType::F64);

        match (f.get("length"), reg.ty.fixed_words()) {
            (Some(n), None) => {
                if let Some(l) = self.ctx.int(n, &format!("{path}.length"), 1, 65535) {
                    reg.words = u16::try_from(l).unwrap_or(1);
                }
            }
            (None, None) => self.ctx.err(
                f.pos,
                format!(
                    "{path}: type string needs `length`: the number of registers (2 ASCII characters or 1 UTF-16 character each)"
                ),
            ),
            (Some(n), Some(w)) => {
                reg.words = w;
                self.ctx.err(
                    f.key_pos("length").unwrap_or(n.pos),
                    format!(
                        "{path}: `length` applies only to type string; {ty_name} always occupies {w} register(s), remove `length`"
                    ),
                );
            }
            (None, Some(w)) => reg.words = w,
        }

        if let Some(n) = f.get("encoding") {
            if is_string {
                match self.ctx.choice(
                    n,
                    &format!("{path}.encoding"),
                    &["ascii", "ascii-swapped", "utf16"],
                ) {
                    Some("ascii-swapped") => reg.encoding = StringEncoding::AsciiSwapped,
                    Some("utf16") => reg.encoding = StringEncoding::Utf16,
                    _ => {}
                }
            } else {
                self.ctx.err(
                    f.key_pos("encoding").unwrap_or(n.pos),
                    format!("{path}: `encoding` applies only to type string; remove it"),
                );
            }
        }
        if let Some(n) = f.get("word_order")
            && let Some(o) = self
                .ctx
                .choice(n, &format!("{path}.word_order"), &["big", "little"])
            && o == "little"
        {
            reg.word_order = WordOrder::Little;
        }

        let bits = 16 * u32::from(reg.words);
        let width_max: u64 = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        if let Some(n) = f.get("scale")
            && let Some(s) = self.ctx.number(n, &format!("{path}.scale"))
        {
            if s == 0.0 {
                self.ctx.err(
                    n.pos,
                    format!(
                        "{path}.scale: must not be 0 (every value would read 0); use e.g. 0.1 or 1"
                    ),
                );
            } else {
                reg.scale = s;
            }
        }
        if let Some(n) = f.get("offset")
            && let Some(o) = self.ctx.number(n, &format!("{path}.offset"))
        {
            reg.offset = o;
        }
        for field in ["mask", "shift"] {
            let Some(n) = f.get(field) else { continue };
            if is_string || is_float {
                self.ctx.err(
                    f.key_pos(field).unwrap_or(n.pos),
                    format!(
                        "{path}: `{field}` applies only to integer types, not {ty_name}; remove it"
                    ),
                );
                continue;
            }
            let fpath = format!("{path}.{field}");
            if field == "mask" {
                if let Some(m) = self.ctx.int(n, &fpath, 1, i128::from(u64::MAX)) {
                    let m = u64::try_from(m).unwrap_or(u64::MAX);
                    if m > width_max {
                        self.ctx.err(
                            n.pos,
                            format!("{fpath}: {m:#X} has bits beyond the register's {bits} bits; use at most {width_max:#X}"),
                        );
                    } else {
                        reg.mask = Some(m);
                    }
                }
            } else if let Some(s) = self.ctx.int(n, &fpath, 0, i128::from(bits) - 1) {
                reg.shift = u32::try_from(s).unwrap_or(0);
            }
        }
        if let Some(n) = f.get("unavailable") {
            if is_string {
                self.ctx.err(
                    f.key_pos("unavailable").unwrap_or(n.pos),
                    format!(
                        "{path}: `unavailable` applies only to numbers, not strings; remove it"
                    ),
                );
            } else {
                reg.unavailable = self.sentinels(n, &format!("{path}.unavailable"), reg.ty, bits);
            }
        }
        if let Some(n) = f.get("poll") {
            match self
                .ctx
                .choice(n, &format!("{path}.poll"), &["always", "slow", "once"])
            {
                Some("slow") => reg.poll = PollClass::Slow,
                Some("once") => reg.poll = PollClass::Once,
                _ => {}
            }
        }

        if reg.last_address() > 65535 {
            self.ctx.err(
                address_pos,
                format!(
                    "{path}: {} register(s) from address {} end at {}, past the last address 65535; check the address",
                    reg.words,
                    reg.address,
                    reg.last_address()
                ),
            );
        }
        if reg.words > max_read {
            self.ctx.err(
                f.pos,
                format!(
                    "{path}: occupies {} registers but modbus.max_registers_per_read is {max_read}; \
                     a register must fit in one read, shorten it or raise the limit",
                    reg.words
                ),
            );
        }
        RegEntry {
            reg,
            pos,
            table_known,
        }
    }

    /// Raw "no reading" values: unsigned raw words, or negative numbers for signed types.
    fn sentinels(&mut self, node: &Node, path: &str, ty: ValueType, bits: u32) -> Vec<u64> {
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        let signed = matches!(ty, ValueType::I16 | ValueType::I32 | ValueType::I64);
        let umax: i128 = if bits >= 64 {
            i128::from(u64::MAX)
        } else {
            (1i128 << bits) - 1
        };
        let smin: i128 = if signed {
            -(1i128 << (bits.min(64) - 1))
        } else {
            0
        };
        let mut out = Vec::new();
        for item in items {
            if let Some(v) = self.ctx.int(item, path, smin, umax) {
                // Negative sentinels of signed types are compared as their raw bits.
                let raw = if v < 0 { v + (umax + 1) } else { v };
                if let Ok(raw) = u64::try_from(raw) {
                    out.push(raw);
                }
            }
        }
        out
    }

    fn check_overlaps(&mut self) {
        let mut order: Vec<usize> = (0..self.regs.len())
            .filter(|i| self.regs[*i].table_known)
            .collect();
        order.sort_by_key(|i| (self.regs[*i].reg.table, self.regs[*i].reg.address, *i));
        let mut reach: Option<(Table, u32, usize)> = None;
        let mut problems = Vec::new();
        for i in order {
            let r = &self.regs[i].reg;
            if let Some((table, end, owner)) = reach
                && table == r.table
                && u32::from(r.address) <= end
            {
                // Report at whichever of the two comes later in the file.
                let (later, earlier) = if self.regs[owner].pos.line > self.regs[i].pos.line {
                    (owner, i)
                } else {
                    (i, owner)
                };
                problems.push((later, earlier));
            }
            let end = r.last_address();
            match reach {
                Some((table, e, _)) if table == r.table && e >= end => {}
                _ => reach = Some((r.table, end, i)),
            }
        }
        for (later, earlier) in problems {
            let (a, b) = (&self.regs[later], &self.regs[earlier]);
            let msg = format!(
                "registers.{}: {} {}..{} overlaps `{}` ({} {}..{}, line {}); fix the address or length of one of them",
                a.reg.name,
                a.reg.table.as_str(),
                a.reg.address,
                a.reg.last_address(),
                b.reg.name,
                b.reg.table.as_str(),
                b.reg.address,
                b.reg.last_address(),
                b.pos.line
            );
            let at = a.pos;
            self.ctx.err(at, msg);
        }
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

    // ---- identity ----

    fn identity(&mut self, node: &Node) -> Option<Identity> {
        let f = self.ctx.fields(node, "identity", &["firmware", "serial"])?;
        // Each field is checked even when the other one is wrong.
        let firmware = f
            .get("firmware")
            .map(|n| self.identity_value(n, "identity.firmware", FIRMWARE_MAX));
        let serial = f
            .get("serial")
            .map(|n| self.identity_value(n, "identity.serial", SERIAL_MAX));
        let firmware = firmware.map_or(Some(None), |v| v.map(Some))?;
        let serial = serial.map_or(Some(None), |v| v.map(Some))?;
        Some(Identity { firmware, serial })
    }

    fn identity_value(&mut self, node: &Node, path: &str, max: usize) -> Option<IdentityValue> {
        match &node.kind {
            Kind::Str(s) => {
                if s.chars().any(char::is_control) {
                    self.ctx.err(
                        node.pos,
                        format!("{path}: contains control characters; use plain text"),
                    );
                    return None;
                }
                if s.chars().count() > max {
                    self.ctx.err(
                        node.pos,
                        format!("{path}: longer than {max} characters, the OCPP limit; shorten it"),
                    );
                    return None;
                }
                Some(IdentityValue::Literal(s.clone()))
            }
            Kind::Map(_) => {
                let f = self.ctx.fields(node, path, &["register", "format"])?;
                let register = match f.get("register") {
                    Some(n) => self.reg_ref(n, &format!("{path}.register")),
                    None => {
                        self.ctx.err(
                            f.pos,
                            format!("{path}: missing `register` (e.g. `{{ register: firmware_version }}`)"),
                        );
                        None
                    }
                };
                let format = match f.get("format") {
                    Some(n) => {
                        let s = self.ctx.string(n, &format!("{path}.format"))?;
                        if !s.contains("{}") {
                            self.ctx.err(
                                n.pos,
                                format!("{path}.format: `{s}` has no `{{}}` for the register's value, e.g. \"v{{}}\""),
                            );
                            return None;
                        }
                        Some(s.to_owned())
                    }
                    None => None,
                };
                Some(IdentityValue::Register {
                    register: register?,
                    format,
                })
            }
            other => {
                self.ctx.err(
                    node.pos,
                    format!(
                        "{path}: expected text in quotes or {{ register: NAME }}, found {}",
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    // ---- status ----

    fn status(&mut self, node: &Node) -> Option<StatusSpec> {
        let f = self.ctx.fields(node, "status", &["register", "map"])?;
        let register = match f.get("register") {
            Some(n) => self.reg_ref(n, "status.register"),
            None => {
                self.ctx
                    .err(f.pos, "status: missing `register` (e.g. `register: state`)");
                None
            }
        };
        // What kind of keys the map must have; `None` when the register is unknown or unusable.
        let key_kind = register.and_then(|id| {
            let e = &self.regs[id];
            match e.reg.ty {
                ValueType::String => Some(true),
                ValueType::F32 | ValueType::F64 => {
                    let msg = format!(
                        "status.register: `{}` is a {} register; the state must come from an integer or string register",
                        e.reg.name,
                        type_name(e.reg.ty)
                    );
                    let at = f.get("register").map_or(f.pos, |n| n.pos);
                    self.ctx.err(at, msg);
                    None
                }
                _ => Some(false),
            }
        });
        let map = match f.get("map") {
            Some(n) => self.status_map(n, register, key_kind),
            None => {
                self.ctx.err(
                    f.pos,
                    "status: missing `map` of raw value -> IEC 61851 state, e.g. `map: { 2: A, 4: B1, 7: C2 }`",
                );
                None
            }
        };
        Some(StatusSpec {
            register: register?,
            map: map?,
        })
    }

    fn status_map(
        &mut self,
        node: &Node,
        register: Option<RegisterId>,
        string_keys: Option<bool>,
    ) -> Option<Vec<(StatusKey, Iec61851State)>> {
        let entries = self
            .ctx
            .map(node, "status.map", "raw value -> IEC 61851 state")?;
        if entries.is_empty() {
            self.ctx.err(
                node.pos,
                "status.map: list at least one raw value, e.g. `{ 2: A, 7: C2 }`",
            );
        }
        let reg_name = register.map_or_else(String::new, |id| self.regs[id].reg.name.clone());
        let states: Vec<&'static str> = Iec61851State::ALL.iter().map(|s| s.as_str()).collect();
        let mut out: Vec<(StatusKey, Iec61851State)> = Vec::new();
        let mut ok = true;
        for (k, v) in entries {
            let key = self.status_key(k, &reg_name, string_keys);
            let state = match &v.kind {
                Kind::Str(s) => match Iec61851State::parse(s) {
                    Some(st) => Some(st),
                    None => {
                        let hint = suggest(s, states.iter().copied())
                            .map(|x| format!("did you mean `{x}`? "))
                            .unwrap_or_default();
                        self.ctx.err(
                            v.pos,
                            format!(
                                "status.map: `{s}` is not an IEC 61851 state; {hint}use one of {}",
                                states.join(", ")
                            ),
                        );
                        None
                    }
                },
                other => {
                    self.ctx.err(
                        v.pos,
                        format!(
                            "status.map: expected an IEC 61851 state ({}), found {}",
                            states.join(", "),
                            other.describe()
                        ),
                    );
                    None
                }
            };
            match (key, state) {
                (Some(key), Some(state)) => {
                    if out.iter().any(|(k2, _)| *k2 == key) {
                        self.ctx.err(
                            k.pos,
                            format!(
                                "status.map: raw value `{}` is listed twice; keep one",
                                k.key_text()
                            ),
                        );
                        ok = false;
                    } else {
                        out.push((key, state));
                    }
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn status_key(&mut self, k: &Node, reg: &str, string_keys: Option<bool>) -> Option<StatusKey> {
        match (&k.kind, string_keys) {
            (Kind::Bool(b), _) => {
                self.ctx.err(
                    k.pos,
                    format!(
                        "status.map: the key `{b}` is a boolean; status values are raw numbers, \
                         or text in quotes for string registers"
                    ),
                );
                None
            }
            (Kind::Str(s), Some(false)) if is_yaml11_bool(s) => {
                self.ctx.err(
                    k.pos,
                    format!(
                        "status.map: the key `{s}` is a boolean to YAML 1.1 tools and text here, \
                         but register `{reg}` is numeric; use the raw numbers it reports"
                    ),
                );
                None
            }
            (Kind::Int(i), Some(true)) => {
                self.ctx.err(
                    k.pos,
                    format!(
                        "status.map: key {i} is a number but register `{reg}` is a string; quote it: \"{i}\""
                    ),
                );
                None
            }
            (Kind::Int(i), _) => match i64::try_from(*i) {
                Ok(n) if n >= 0 => Some(StatusKey::Number(n)),
                _ => {
                    self.ctx.err(
                        k.pos,
                        format!(
                            "status.map: key {i} can never match: status values are raw unsigned integers \
                             (after mask/shift), e.g. 65535 for 0xFFFF"
                        ),
                    );
                    None
                }
            },
            (Kind::Str(s), Some(false)) => {
                let hint = if s.trim().parse::<i64>().is_ok() {
                    format!("write it without quotes: {}", s.trim())
                } else {
                    "use the raw numbers the register reports".to_owned()
                };
                self.ctx.err(
                    k.pos,
                    format!(
                        "status.map: key \"{s}\" is text but register `{reg}` is numeric; {hint}"
                    ),
                );
                None
            }
            (Kind::Str(s), _) => Some(StatusKey::Text(s.clone())),
            (other, _) => {
                self.ctx.err(
                    k.pos,
                    format!(
                        "status.map: key `{}` is {}; use raw integers or, for string registers, text",
                        k.key_text(),
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    // ---- measurands ----

    fn measurands(&mut self, node: &Node) -> Option<Vec<MeasurandSpec>> {
        let entries = self.ctx.map(
            node,
            "measurands",
            "OCPP measurand -> register, or -> { PHASE: register }",
        )?;
        let mut out = Vec::new();
        let mut ok = true;
        for (k, v) in entries {
            let Some(name) = self.ctx.key(k, "measurands") else {
                ok = false;
                continue;
            };
            if !MEASURANDS.contains(&name) {
                let hint = suggest(name, MEASURANDS.iter().copied())
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                self.ctx.err(
                    k.pos,
                    format!(
                        "measurands: `{name}` is not an OCPP 1.6 measurand; {hint}use one of {}",
                        MEASURANDS.join(", ")
                    ),
                );
                ok = false;
            }
            let path = format!("measurands.{name}");
            let sources = match &v.kind {
                Kind::Map(phases) => {
                    if phases.is_empty() {
                        self.ctx.err(
                            v.pos,
                            format!("{path}: list at least one phase, e.g. `{{ L1: current_l1 }}`"),
                        );
                    }
                    let mut sources = Vec::new();
                    for (pk, pv) in phases {
                        let phase = self.ctx.key(pk, &path);
                        if let Some(p) = phase
                            && !PHASES.contains(&p)
                        {
                            let hint = suggest(p, PHASES.iter().copied())
                                .map(|s| format!("did you mean `{s}`? "))
                                .unwrap_or_default();
                            self.ctx.err(
                                pk.pos,
                                format!(
                                    "{path}: `{p}` is not an OCPP 1.6 phase; {hint}use one of {}",
                                    PHASES.join(", ")
                                ),
                            );
                            ok = false;
                        }
                        let reg = self.numeric_ref(pv, &format!("{path}.{}", pk.key_text()));
                        match (phase, reg) {
                            (Some(p), Some(r)) => sources.push((Some(p.to_owned()), r)),
                            _ => ok = false,
                        }
                    }
                    sources
                }
                _ => match self.numeric_ref(v, &path) {
                    Some(r) => vec![(None, r)],
                    None => {
                        ok = false;
                        Vec::new()
                    }
                },
            };
            out.push(MeasurandSpec {
                measurand: name.to_owned(),
                sources,
            });
        }
        ok.then_some(out)
    }

    // ---- control ----

    fn control(&mut self, node: &Node) -> Option<ControlSpec> {
        let f = self.ctx.fields(
            node,
            "control",
            &["current_limit", "enable", "refresh", "failsafe_current"],
        )?;
        let mut ok = true;
        let mut out = ControlSpec::default();
        if let Some(n) = f.get("current_limit") {
            out.current_limit = self.current_limit(n);
            ok &= out.current_limit.is_some();
        }
        if let Some(n) = f.get("enable") {
            out.enable = self.enable(n);
            ok &= out.enable.is_some();
        }
        if let Some(n) = f.get("refresh") {
            out.refresh = self.positive_duration(n, "control.refresh");
            ok &= out.refresh.is_some();
        }
        if let Some(n) = f.get("failsafe_current") {
            out.failsafe_current = self
                .ctx
                .fields(n, "control.failsafe_current", &["register"])
                .and_then(|ff| match ff.get("register") {
                    Some(r) => self.writable_ref(r, "control.failsafe_current.register"),
                    None => {
                        self.ctx
                            .err(ff.pos, "control.failsafe_current: missing `register`");
                        None
                    }
                });
            ok &= out.failsafe_current.is_some();
        }
        ok.then_some(out)
    }

    fn current_limit(&mut self, node: &Node) -> Option<CurrentLimitSpec> {
        let path = "control.current_limit";
        let f = self
            .ctx
            .fields(node, path, &["register", "min", "max", "off_value"])?;
        let register = match f.get("register") {
            Some(n) => self.writable_ref(n, &format!("{path}.register")),
            None => {
                self.ctx.err(
                    f.pos,
                    format!("{path}: missing `register` (e.g. `register: limit`)"),
                );
                None
            }
        };
        let min = match f.get("min") {
            Some(n) => self.amperes(n, &format!("{path}.min")),
            None => Some(defaults::MIN_CURRENT),
        };
        let max = match f.get("max") {
            Some(n) => self.amperes(n, &format!("{path}.max")),
            None => {
                self.ctx.err(
                    f.pos,
                    format!("{path}: missing `max`: the largest current (A) the wallbox accepts, e.g. `max: 16`"),
                );
                None
            }
        };
        let off_value = match f.get("off_value") {
            Some(n) => self.ctx.number(n, &format!("{path}.off_value")),
            None => Some(0.0),
        };
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            let at = f.get("min").map_or(f.pos, |n| n.pos);
            self.ctx.err(
                at,
                format!("{path}: min {lo} A is greater than max {hi} A; swap them"),
            );
            return None;
        }
        let (register, min, max, off_value) = (register?, min?, max?, off_value?);
        let mut fits = self.check_encodes(
            register,
            max,
            f.get("max").map_or(f.pos, |n| n.pos),
            &format!("{path}.max"),
        );
        fits &= self.check_encodes(
            register,
            min,
            f.get("min").map_or(f.pos, |n| n.pos),
            &format!("{path}.min"),
        );
        fits &= self.check_encodes(
            register,
            off_value,
            f.get("off_value").map_or(f.pos, |n| n.pos),
            &format!("{path}.off_value"),
        );
        fits.then_some(CurrentLimitSpec {
            register,
            min,
            max,
            off_value,
        })
    }

    fn amperes(&mut self, node: &Node, path: &str) -> Option<f64> {
        let v = self.ctx.number(node, path)?;
        if v < 0.0 {
            self.ctx
                .err(node.pos, format!("{path}: a current cannot be negative"));
            return None;
        }
        Some(v)
    }

    fn enable(&mut self, node: &Node) -> Option<EnableSpec> {
        let path = "control.enable";
        let f = self
            .ctx
            .fields(node, path, &["register", "on_value", "off_value"])?;
        let register = match f.get("register") {
            Some(n) => self.writable_ref(n, &format!("{path}.register")),
            None => {
                self.ctx.err(f.pos, format!("{path}: missing `register`"));
                None
            }
        };
        let on_value = match f.get("on_value") {
            Some(n) => self.ctx.number(n, &format!("{path}.on_value")),
            None => Some(1.0),
        };
        let off_value = match f.get("off_value") {
            Some(n) => self.ctx.number(n, &format!("{path}.off_value")),
            None => Some(0.0),
        };
        let (register, on_value, off_value) = (register?, on_value?, off_value?);
        if (on_value - off_value).abs() < f64::EPSILON {
            self.ctx.err(
                f.pos,
                format!("{path}: on_value and off_value are both {on_value}; they must differ"),
            );
            return None;
        }
        let mut fits = self.check_encodes(
            register,
            on_value,
            f.get("on_value").map_or(f.pos, |n| n.pos),
            &format!("{path}.on_value"),
        );
        fits &= self.check_encodes(
            register,
            off_value,
            f.get("off_value").map_or(f.pos, |n| n.pos),
            &format!("{path}.off_value"),
        );
        fits.then_some(EnableSpec {
            register,
            on_value,
            off_value,
        })
    }

    // ---- init and keepalive ----

    fn init(&mut self, node: &Node) -> Option<Vec<WriteSpec>> {
        let Kind::Seq(items) = &node.kind else {
            self.ctx.err(
                node.pos,
                format!(
                    "init: expected a list of writes, e.g. `- {{ register: standby, value: 4 }}`, found {}",
                    node.kind.describe()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.write_spec(item, &format!("init[{i}]")) {
                Some(w) => out.push(w),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn write_spec(&mut self, node: &Node, path: &str) -> Option<WriteSpec> {
        let f = self.ctx.fields(node, path, &["register", "value"])?;
        let register = match f.get("register") {
            Some(n) => self.writable_ref(n, &format!("{path}.register")),
            None => {
                self.ctx.err(f.pos, format!("{path}: missing `register`"));
                None
            }
        };
        let value = match f.get("value") {
            Some(n) => self.ctx.number(n, &format!("{path}.value")),
            None => {
                self.ctx.err(
                    f.pos,
                    format!("{path}: missing `value` (in the register's units, after scale)"),
                );
                None
            }
        };
        let (register, value) = (register?, value?);
        let at = f.get("value").map_or(f.pos, |n| n.pos);
        self.check_encodes(register, value, at, &format!("{path}.value"))
            .then_some(WriteSpec { register, value })
    }

    fn keepalive(&mut self, node: &Node) -> Option<KeepaliveSpec> {
        let f = self
            .ctx
            .fields(node, "keepalive", &["every", "every_from", "read", "write"])?;
        let interval = match (f.get("every"), f.get("every_from")) {
            (Some(_), Some(_)) => {
                let at = f.key_pos("every_from").unwrap_or(f.pos);
                self.ctx.err(
                    at,
                    "keepalive: give either `every` or `every_from`, not both",
                );
                None
            }
            (Some(n), None) => self
                .positive_duration(n, "keepalive.every")
                .map(KeepaliveInterval::Every),
            (None, Some(n)) => self.every_from(n),
            (None, None) => {
                self.ctx.err(
                    f.pos,
                    "keepalive: missing `every: 15s` or `every_from: { register: NAME, unit: ms, divide: 4 }`",
                );
                None
            }
        };
        let action = match (f.get("read"), f.get("write")) {
            (Some(_), Some(_)) => {
                let at = f.key_pos("write").unwrap_or(f.pos);
                self.ctx
                    .err(at, "keepalive: give either `read` or `write`, not both");
                None
            }
            (Some(n), None) => self.reg_ref(n, "keepalive.read").map(KeepaliveAction::Read),
            (None, Some(n)) => self
                .write_spec(n, "keepalive.write")
                .map(KeepaliveAction::Write),
            (None, None) => {
                self.ctx.err(
                    f.pos,
                    "keepalive: missing `read: NAME` or `write: { register: NAME, value: N }`",
                );
                None
            }
        };
        Some(KeepaliveSpec {
            interval: interval?,
            action: action?,
        })
    }

    fn every_from(&mut self, node: &Node) -> Option<KeepaliveInterval> {
        let path = "keepalive.every_from";
        let f = self
            .ctx
            .fields(node, path, &["register", "unit", "divide"])?;
        let register = match f.get("register") {
            Some(n) => self.numeric_ref(n, &format!("{path}.register")),
            None => {
                self.ctx.err(f.pos, format!("{path}: missing `register`"));
                None
            }
        };
        let unit = match f.get("unit") {
            Some(n) => match self.ctx.choice(n, &format!("{path}.unit"), &["ms", "s"]) {
                Some("ms") => Some(TimeUnit::Ms),
                Some(_) => Some(TimeUnit::S),
                None => None,
            },
            None => {
                self.ctx.err(
                    f.pos,
                    format!("{path}: missing `unit` of the register's value: ms or s"),
                );
                None
            }
        };
        let divide = match f.get("divide") {
            Some(n) => self
                .ctx
                .int(n, &format!("{path}.divide"), 1, 1000)
                .and_then(|d| u32::try_from(d).ok()),
            None => Some(1),
        };
        Some(KeepaliveInterval::FromRegister {
            register: register?,
            unit: unit?,
            divide: divide?,
        })
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
