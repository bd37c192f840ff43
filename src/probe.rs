//! `chargebridge probe`: commissioning help. Reads every register of a device map once from a
//! live wallbox (never writes), shows raw words and decoded values, the IEC 61851 state and
//! the OCPP status it maps to, and points out what usually means the map is wrong.
//!
//! The reading is I/O ([`probe`]); everything it concludes is pure ([`findings`],
//! [`ProbeReport`]'s `Display`), so the heuristics are tested without a device.

use std::fmt::{self, Write as _};

use crate::charger::reading::raw_status;
use crate::charger::status::{StatusInputs, StatusReport, connector_status};
use crate::devicemap::plan::{self, ReadBlock};
use crate::devicemap::{
    DeviceMap, Iec61851State, PollClass, Register, RegisterId, RegisterImage, Value, ValueType,
    WordOrder, codec,
};
use crate::modbus::error::exception_name;
use crate::modbus::{BusError, BusHandle, DeviceTiming};

/// What reading one register gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The device answered with these words.
    Words(Vec<u16>),
    /// The device answered this register (read alone) with a Modbus exception.
    Exception(u8),
    /// No usable answer: timeout, transport error.
    NoAnswer(String),
    /// `poll: never`: write-only, not read.
    NotRead,
}

/// Something in a register's raw words that suggests a mistake in the map.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// A 32/64-bit value whose words look swapped: read in the other word order it is
    /// `swapped`, a plausible number, where the declared order gives an implausible one.
    LooksSwapped {
        /// The value read with the other word order (after scale and offset).
        swapped: f64,
        /// The word order that would give it.
        order: WordOrder,
    },
    /// Every bit set (0xFFFF, 0xFFFFFFFF...): most devices mean "not available" by it.
    AllOnes {
        /// The raw value.
        raw: u64,
    },
    /// A float that is not a number or infinite (Alfen reports missing values as NaN).
    NotANumber,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::LooksSwapped { swapped, order } => write!(
                f,
                "the words look swapped: with `word_order: {}` it reads {}; compare with the wallbox's display",
                match order {
                    WordOrder::Big => "big",
                    WordOrder::Little => "little",
                },
                Value::Number(*swapped)
            ),
            Finding::AllOnes { raw } => write!(
                f,
                "reads {raw:#X}, which usually means \"not available\"; if so, add `unavailable: [{raw:#X}]`"
            ),
            Finding::NotANumber => f.write_str("reads NaN/infinity: the device has no value here"),
        }
    }
}

/// One register's result.
#[derive(Clone, Debug, PartialEq)]
pub struct RegisterResult {
    /// The register.
    pub id: RegisterId,
    /// What the device answered.
    pub outcome: Outcome,
    /// The decoded value (`None`: not read, or "unavailable").
    pub value: Option<Value>,
    /// Likely mistakes.
    pub findings: Vec<Finding>,
}

/// Everything a probe found.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    /// The map probed.
    pub map: DeviceMap,
    /// The unit id asked.
    pub unit: u8,
    /// One result per register, in map order.
    pub registers: Vec<RegisterResult>,
    /// The IEC 61851 state (`Err(raw)`: a raw value the status map does not list).
    pub state: Option<Result<Iec61851State, String>>,
    /// The status register's raw value as text.
    pub raw_status: Option<String>,
    /// The cable-state register's raw value, for maps with `status.vehicle`.
    pub cable: Option<i64>,
    /// The OCPP status the gateway would report now, before any transaction.
    pub status: StatusReport,
    /// Whether the device answered anything at all (words or exceptions).
    pub answered: bool,
}

impl ProbeReport {
    /// The exit code of `chargebridge probe`: 0 when the device answered, 2 when not.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        if self.answered { 0 } else { 2 }
    }

    /// The result for a register by name.
    #[must_use]
    pub fn register(&self, name: &str) -> Option<&RegisterResult> {
        let id = self.map.register_id(name)?;
        self.registers.iter().find(|r| r.id == id)
    }
}

/// Reads every register of `map` (except `poll: never` ones) once from `unit`.
///
/// Block reads the device refuses with an exception are split down to single registers, so
/// the report names exactly which registers the device does not serve. Nothing is written.
pub async fn probe(
    map: &DeviceMap,
    bus: &BusHandle,
    unit: u8,
    timing: &DeviceTiming,
) -> ProbeReport {
    let blocks = plan::plan(map, &[PollClass::Always, PollClass::Slow, PollClass::Once]);
    let mut image = RegisterImage::default();
    let mut failures: Vec<(RegisterId, Outcome)> = Vec::new();
    let mut pending: Vec<ReadBlock> = blocks.into_iter().rev().collect();
    while let Some(block) = pending.pop() {
        match bus
            .read(unit, timing, block.table, block.start, block.count)
            .await
        {
            Ok(words) => image.insert_block(block.table, block.start, &words),
            Err(BusError::Exception(code)) => {
                let parts = plan::split(&block, map);
                if parts.len() > 1 {
                    pending.extend(parts.into_iter().rev());
                } else {
                    failures.extend(inside(map, &block).map(|id| (id, Outcome::Exception(code))));
                }
            }
            Err(e) => {
                let text = e.to_string();
                failures
                    .extend(inside(map, &block).map(|id| (id, Outcome::NoAnswer(text.clone()))));
            }
        }
    }
    report(map, unit, &image, &failures)
}

/// The map's registers a block reads.
fn inside<'a>(map: &'a DeviceMap, block: &'a ReadBlock) -> impl Iterator<Item = RegisterId> + 'a {
    (0..map.registers.len()).filter(|id| {
        let r = map.register(*id);
        r.poll != PollClass::Never && block.covers(r)
    })
}

/// Builds the report from what was read (pure).
#[must_use]
pub fn report(
    map: &DeviceMap,
    unit: u8,
    image: &RegisterImage,
    failures: &[(RegisterId, Outcome)],
) -> ProbeReport {
    let registers: Vec<RegisterResult> = map
        .registers
        .iter()
        .enumerate()
        .map(|(id, reg)| {
            if reg.poll == PollClass::Never {
                return RegisterResult {
                    id,
                    outcome: Outcome::NotRead,
                    value: None,
                    findings: Vec::new(),
                };
            }
            if let Some((_, o)) = failures.iter().find(|(f, _)| *f == id) {
                return RegisterResult {
                    id,
                    outcome: o.clone(),
                    value: None,
                    findings: Vec::new(),
                };
            }
            match image.words(reg) {
                Some(words) => RegisterResult {
                    id,
                    value: codec::decode(reg, &words).ok().flatten(),
                    findings: findings(reg, &words),
                    outcome: Outcome::Words(words),
                },
                None => RegisterResult {
                    id,
                    outcome: Outcome::NoAnswer("not read".into()),
                    value: None,
                    findings: Vec::new(),
                },
            }
        })
        .collect();
    let answered = registers
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Words(_) | Outcome::Exception(_)));
    let raw_status = raw_status(map, image);
    let state = image.iec_state(map);
    let status = connector_status(&StatusInputs {
        state: state.as_ref(),
        raw_status: raw_status.as_deref(),
        ..StatusInputs::default()
    });
    ProbeReport {
        map: map.clone(),
        unit,
        registers,
        state,
        cable: image.cable(map),
        raw_status,
        status,
        answered,
    }
}

/// Likely mistakes visible in one register's raw words (pure).
#[must_use]
pub fn findings(reg: &Register, words: &[u16]) -> Vec<Finding> {
    let mut out = Vec::new();
    if reg.ty == ValueType::String || words.len() != usize::from(reg.words) {
        return out;
    }
    let raw = combine(words, reg.word_order);
    let all_ones = words.iter().all(|w| *w == 0xFFFF);
    if all_ones && !reg.unavailable.contains(&raw) && !is_float(reg.ty) {
        out.push(Finding::AllOnes { raw });
    }
    if words.len() < 2 || all_ones || reg.unavailable.contains(&raw) {
        return out;
    }
    let other = match reg.word_order {
        WordOrder::Big => WordOrder::Little,
        WordOrder::Little => WordOrder::Big,
    };
    let mut swapped_reg = reg.clone();
    swapped_reg.word_order = other;
    let swapped = codec::decode(&swapped_reg, words)
        .ok()
        .flatten()
        .and_then(|v| v.as_f64());
    if is_float(reg.ty) {
        let value = codec::decode(reg, words)
            .ok()
            .flatten()
            .and_then(|v| v.as_f64());
        if value.is_none() {
            out.push(Finding::NotANumber);
        }
        let plausible = |v: f64| v == 0.0 || (1e-3..1e9).contains(&v.abs());
        if let Some(s) = swapped
            && plausible(s)
            && !value.is_some_and(plausible)
        {
            out.push(Finding::LooksSwapped {
                swapped: s,
                order: other,
            });
        }
        return out;
    }
    // Integers: the word that should be the least significant is 0 while a more significant
    // one is not: a multiple of 65536 is rarely a real reading, the swapped one usually is.
    let (least, rest) = match reg.word_order {
        WordOrder::Big => (words[words.len() - 1], &words[..words.len() - 1]),
        WordOrder::Little => (words[0], &words[1..]),
    };
    let swapped_raw = combine(words, other);
    let small = swapped_raw < 0x1_0000 || swapped_raw <= raw >> 16;
    if least == 0
        && rest.iter().any(|w| *w != 0 && *w != 0xFFFF)
        && small
        && let Some(s) = swapped
    {
        out.push(Finding::LooksSwapped {
            swapped: s,
            order: other,
        });
    }
    out
}

/// A decoded value as the report shows it. A scaled integer register is rounded to its
/// resolution: 254 x 0.1 shows `25.4`, not the binary noise `25.400000000000002` a user
/// would have to puzzle over. Floats (f32/f64) have no fixed resolution and show as decoded.
fn shown(reg: &Register, value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_finite() && !is_float(reg.ty) => {
            let places = decimals(reg.scale).max(decimals(reg.offset));
            let text = format!("{n:.places$}");
            if text.contains('.') {
                text.trim_end_matches('0').trim_end_matches('.').to_owned()
            } else {
                text
            }
        }
        other => other.to_string(),
    }
}

/// The decimal places `x` needs (0.1 -> 1, 0.001 -> 3, 1000 -> 0), at most 9.
fn decimals(x: f64) -> usize {
    (0..9)
        .find(|&places| {
            let m = x * 10f64.powi(places);
            (m - m.round()).abs() < 1e-6
        })
        .map_or(9, |places| usize::try_from(places).unwrap_or(9))
}

fn is_float(ty: ValueType) -> bool {
    matches!(ty, ValueType::F32 | ValueType::F64)
}

fn combine(words: &[u16], order: WordOrder) -> u64 {
    let fold = |acc: u64, w: &u16| (acc << 16) | u64::from(*w);
    match order {
        WordOrder::Big => words.iter().fold(0, fold),
        WordOrder::Little => words.iter().rev().fold(0, fold),
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = &self.map;
        writeln!(
            f,
            "probe of {} {} (map `{}`), unit {}: read-only, nothing was written",
            map.vendor, map.model, map.name, self.unit
        )?;
        writeln!(
            f,
            "{:<24} {:<9} {:>6}  {:<28} decoded",
            "register", "table", "addr", "raw words"
        )?;
        let mut notes: Vec<String> = Vec::new();
        for r in &self.registers {
            let reg = map.register(r.id);
            let (raw, decoded) = match &r.outcome {
                Outcome::Words(w) => {
                    let hex: Vec<String> = w.iter().take(6).map(|x| format!("{x:04X}")).collect();
                    let more = if w.len() > 6 { " .." } else { "" };
                    let decoded = match &r.value {
                        Some(Value::Text(t)) => format!("\"{t}\""),
                        Some(v) => shown(reg, v),
                        None => "(unavailable)".to_owned(),
                    };
                    (format!("{}{more}", hex.join(" ")), decoded)
                }
                Outcome::Exception(code) => {
                    notes.push(format!(
                        "{}: the device refuses it (exception {code:#04x}, {}): check the address (0- or 1-based?), the table ({}) and the firmware",
                        reg.name,
                        exception_name(*code),
                        reg.table.as_str()
                    ));
                    (format!("exception {code:#04x}"), "-".to_owned())
                }
                Outcome::NoAnswer(_) => ("no answer".to_owned(), "-".to_owned()),
                Outcome::NotRead => ("(write-only, not read)".to_owned(), "-".to_owned()),
            };
            writeln!(
                f,
                "{:<24} {:<9} {:>6}  {:<28} {}",
                reg.name,
                reg.table.as_str(),
                reg.address,
                raw,
                decoded
            )?;
            for finding in &r.findings {
                notes.push(format!("{}: {finding}", reg.name));
            }
        }
        writeln!(f)?;
        let state = match &self.state {
            Some(Ok(s)) => format!(
                "{} (raw {})",
                s.as_str(),
                self.raw_status.as_deref().unwrap_or("?")
            ),
            Some(Err(raw)) => format!("unknown: raw value {raw} is not in status.map"),
            None => "not read".to_owned(),
        };
        writeln!(f, "IEC 61851 state: {state}")?;
        let mut status = match self.state {
            None => {
                "OCPP status (no transaction): unknown until the state register is read".to_owned()
            }
            Some(_) => format!(
                "OCPP status (no transaction): {}",
                self.status.status.as_str()
            ),
        };
        if let Some(code) = &self.status.vendor_error_code {
            let _ = write!(status, " (vendorErrorCode {code})");
        }
        writeln!(f, "{status}")?;
        if !self.answered {
            writeln!(
                f,
                "\nThe device did not answer. Check the unit id (--unit), baud rate, parity and stop bits, \
                 the wiring (A/B swapped?), bus termination, and that Modbus is enabled on the wallbox."
            )?;
        } else if self
            .registers
            .iter()
            .any(|r| matches!(r.outcome, Outcome::NoAnswer(_)))
        {
            notes.push(
                "some reads got no answer: the device may be slow (raise modbus.timeout / request_delay) \
                 or drop long reads (lower max_registers_per_read)"
                    .to_owned(),
            );
        }
        if !notes.is_empty() {
            writeln!(f, "\nCheck:")?;
            for n in notes {
                writeln!(f, "  - {n}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::devicemap::load_str;

    fn reg(yaml_reg: &str) -> Register {
        let text = format!(
            "vendor: T\nmodel: T\nregisters:\n  r: {yaml_reg}\n  state: {{ input: 0 }}\nstatus: {{ register: state, map: {{ 1: A }} }}\n"
        );
        let map = load_str("t", "t.yaml", &text).unwrap();
        map.registers[0].clone()
    }

    #[test]
    fn scaled_values_show_at_the_register_resolution() {
        let tenths = reg("{ input: 10, type: i16, scale: 0.1 }");
        assert_eq!(shown(&tenths, &Value::Number(254.0 * 0.1)), "25.4");
        assert_eq!(shown(&tenths, &Value::Number(-0.5)), "-0.5");
        assert_eq!(shown(&tenths, &Value::Number(16.0)), "16");
        let milli = reg("{ input: 10, type: u32, scale: 0.001 }");
        assert_eq!(shown(&milli, &Value::Number(16_040.0 * 0.001)), "16.04");
        let plain = reg("{ input: 10, type: u32 }");
        assert_eq!(shown(&plain, &Value::Number(4_242_424.0)), "4242424");
        let float = reg("{ input: 10, type: f32 }");
        assert_eq!(shown(&float, &Value::Number(229.75)), "229.75");
        assert_eq!(shown(&plain, &Value::Text("x".into())), "x");
    }

    #[test]
    fn a_u32_with_a_zero_low_word_looks_swapped() {
        // 1234 Wh written low word first, read high word first: 0x04D2_0000.
        let r = reg("{ input: 10, type: u32 }");
        assert_eq!(
            findings(&r, &[0x04D2, 0x0000]),
            vec![Finding::LooksSwapped {
                swapped: 1234.0,
                order: WordOrder::Little
            }]
        );
        assert!(findings(&r, &[0x0000, 0x04D2]).is_empty());
        assert!(findings(&r, &[0x0001, 0x86A0]).is_empty(), "100000 is fine");
        let little = reg("{ input: 10, type: i32, word_order: little }");
        assert_eq!(
            findings(&little, &[0x0000, 0x00E6]),
            vec![Finding::LooksSwapped {
                swapped: 230.0,
                order: WordOrder::Big
            }]
        );
    }

    #[test]
    fn all_ones_is_pointed_out_unless_declared_unavailable() {
        let r = reg("{ input: 10, type: u32 }");
        assert_eq!(
            findings(&r, &[0xFFFF, 0xFFFF]),
            vec![Finding::AllOnes { raw: 0xFFFF_FFFF }]
        );
        let declared = reg("{ input: 10, type: u32, unavailable: [0xFFFFFFFF] }");
        assert!(findings(&declared, &[0xFFFF, 0xFFFF]).is_empty());
        let single = reg("{ input: 10 }");
        assert_eq!(
            findings(&single, &[0xFFFF]),
            vec![Finding::AllOnes { raw: 0xFFFF }]
        );
    }

    #[test]
    fn a_float_in_the_wrong_word_order_is_pointed_out() {
        // 230.0 f32 = 0x4366_0000; low word first on the wire: [0x0000, 0x4366].
        let r = reg("{ input: 10, type: f32 }");
        let f = findings(&r, &[0x0000, 0x4366]);
        assert!(
            matches!(f.as_slice(), [Finding::LooksSwapped { swapped, order: WordOrder::Little }] if (*swapped - 230.0).abs() < 1e-9),
            "{f:?}"
        );
        assert!(findings(&r, &[0x4366, 0x0000]).is_empty());
        assert_eq!(
            findings(&r, &[0x7FC0, 0x0000]).first(),
            Some(&Finding::NotANumber)
        );
    }
}
