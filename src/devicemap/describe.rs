//! A readable summary of a device map, for `chargebridge maps --show`.

use std::fmt::Write as _;
use std::time::Duration;

use super::load::type_name;
use super::model::{
    DeviceMap, IdentityValue, KeepaliveAction, KeepaliveInterval, Parity, PollClass, Register,
    StatusKey, StringEncoding, TimeUnit, WordOrder, WriteFunction,
};
use super::plan::plan;

/// Summarises a map: identity, bus defaults and timing, registers, status map, measurands,
/// control, init and keep-alive, and the block reads of each poll cycle.
#[must_use]
pub fn describe(map: &DeviceMap) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = write_all(&mut s, map);
    s
}

fn write_all(s: &mut String, map: &DeviceMap) -> std::fmt::Result {
    writeln!(s, "{} {} (map `{}`)", map.vendor, map.model, map.name)?;
    writeln!(s, "connectors: {}", map.connectors)?;
    for (field, value) in [
        ("firmware", &map.identity.firmware),
        ("serial", &map.identity.serial),
    ] {
        if let Some(v) = value {
            writeln!(s, "identity {field}: {}", identity(map, v))?;
        }
    }

    let m = &map.modbus;
    writeln!(s, "\nModbus")?;
    match &m.serial {
        Some(ser) => writeln!(
            s,
            "  serial:       {} baud {}{}{}",
            ser.baud,
            ser.data_bits,
            match ser.parity {
                Parity::None => "N",
                Parity::Even => "E",
                Parity::Odd => "O",
            },
            ser.stop_bits
        )?,
        None => writeln!(s, "  serial:       - (no serial defaults; Modbus TCP)")?,
    }
    writeln!(s, "  unit:         {}", m.unit)?;
    if m.request_delay.is_zero() {
        writeln!(s, "  delay:        none between requests")?;
    } else {
        writeln!(
            s,
            "  delay:        {} before each request",
            dur(m.request_delay)
        )?;
    }
    writeln!(
        s,
        "  timeout:      {}, {} retries",
        dur(m.timeout),
        m.retries
    )?;
    writeln!(
        s,
        "  block reads:  at most {} registers, at most {} undeclared in between",
        m.max_registers_per_read, m.max_gap
    )?;
    writeln!(
        s,
        "  writes:       FC {} for single registers",
        match m.write_function {
            WriteFunction::Single => 6,
            WriteFunction::Multiple => 16,
        }
    )?;

    writeln!(s, "\nRegisters (0-based wire addresses)")?;
    let width = map
        .registers
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        s,
        "  {:<width$}  {:<8} {:>11}  {:<7} {:<8} {:<6} details",
        "name", "table", "address", "type", "scale", "poll"
    )?;
    for r in &map.registers {
        let line = format!(
            "  {:<width$}  {:<8} {:>11}  {:<7} {:<8} {:<6} {}",
            r.name,
            r.table.as_str(),
            addresses(r),
            type_name(r.ty),
            num(r.scale),
            poll(r.poll),
            details(r)
        );
        writeln!(s, "{}", line.trim_end())?;
    }

    let status_reg = map.register(map.status.register);
    writeln!(s, "\nStatus from `{}` (IEC 61851)", status_reg.name)?;
    let pairs: Vec<String> = map
        .status
        .map
        .iter()
        .map(|(k, st)| match k {
            StatusKey::Number(n) => format!("{n} -> {}", st.as_str()),
            StatusKey::Text(t) => format!("\"{t}\" -> {}", st.as_str()),
        })
        .collect();
    writeln!(s, "  {}", pairs.join(", "))?;
    writeln!(
        s,
        "  anything else -> Faulted (raw value as vendorErrorCode)"
    )?;
    if let Some(v) = &map.status.vehicle {
        let values: Vec<String> = v.connected.iter().map(ToString::to_string).collect();
        writeln!(
            s,
            "  vehicle connected when `{}` reads {}; otherwise A (faults E/F stand; A with a vehicle -> B1)",
            map.register(v.register).name,
            values.join(", ")
        )?;
    }

    writeln!(s, "\nMeasurands")?;
    if map.measurands.is_empty() {
        writeln!(s, "  none")?;
    }
    for m in &map.measurands {
        let sources: Vec<String> = m
            .sources
            .iter()
            .map(|(phase, id)| match phase {
                Some(p) => format!("{p}: {}", map.register(*id).name),
                None => map.register(*id).name.clone(),
            })
            .collect();
        let counts = match m.counts {
            super::Counts::Session => " (counts per session; the gateway adds sessions up)",
            super::Counts::Lifetime => "",
        };
        writeln!(s, "  {:<30} {}{counts}", m.measurand, sources.join(", "))?;
    }

    writeln!(s, "\nControl")?;
    let c = &map.control;
    let mut any = false;
    if let Some(l) = &c.current_limit {
        any = true;
        writeln!(
            s,
            "  current limit: `{}`, {} A .. {} A; below {} A writes {}",
            map.register(l.register).name,
            num(l.min),
            num(l.max),
            num(l.min),
            num(l.off_value)
        )?;
    }
    if let Some(p) = &c.power_limit {
        any = true;
        writeln!(
            s,
            "  power limit: `{}`, {} W .. {} W (amperes x phases x voltage); below {} W writes {}",
            map.register(p.register).name,
            num(p.min_w),
            num(p.max_w),
            num(p.min_w),
            num(p.off_value)
        )?;
    }
    if let Some(e) = &c.enable {
        any = true;
        writeln!(
            s,
            "  enable: `{}` on {} / off {}",
            map.register(e.register).name,
            num(e.on_value),
            num(e.off_value)
        )?;
    }
    if let Some(r) = c.refresh {
        any = true;
        writeln!(s, "  limit rewritten every {}", dur(r))?;
    }
    if let Some(f) = c.failsafe_current {
        any = true;
        writeln!(
            s,
            "  failsafe current: `{}` (the charger's failsafe_current, written at connect)",
            map.register(f).name
        )?;
    }
    if !any {
        writeln!(s, "  none (monitoring only)")?;
    }
    for w in &map.init {
        writeln!(
            s,
            "  at connect: write {} to `{}`",
            num(w.value),
            map.register(w.register).name
        )?;
    }
    if let Some(k) = &map.keepalive {
        let every = match &k.interval {
            KeepaliveInterval::Every(d) => dur(*d),
            KeepaliveInterval::FromRegister {
                register,
                unit,
                divide,
            } => format!(
                "`{}` ({}) / {divide}",
                map.register(*register).name,
                match unit {
                    TimeUnit::Ms => "ms",
                    TimeUnit::S => "s",
                }
            ),
        };
        let what = match &k.action {
            KeepaliveAction::Read(id) => format!("read `{}`", map.register(*id).name),
            KeepaliveAction::Write(w) => format!(
                "write {} to `{}`",
                num(w.value),
                map.register(w.register).name
            ),
            KeepaliveAction::Copy { register, from } => format!(
                "write the value of `{}` to `{}`",
                map.register(*from).name,
                map.register(*register).name
            ),
        };
        writeln!(s, "  keep-alive: {what} every {every}")?;
    }

    writeln!(s, "\nBlock reads")?;
    for (label, classes) in [
        ("every cycle", &[PollClass::Always][..]),
        (
            "every 10th cycle",
            &[PollClass::Always, PollClass::Slow][..],
        ),
        (
            "after connect",
            &[PollClass::Always, PollClass::Slow, PollClass::Once][..],
        ),
    ] {
        let blocks = plan(map, classes);
        let list: Vec<String> = blocks
            .iter()
            .map(|b| {
                if b.count == 1 {
                    format!("{} {}", b.table.as_str(), b.start)
                } else {
                    format!("{} {}..{}", b.table.as_str(), b.start, b.last_address())
                }
            })
            .collect();
        writeln!(
            s,
            "  {label}: {} request(s){}{}",
            blocks.len(),
            if list.is_empty() { "" } else { ": " },
            list.join(", ")
        )?;
    }
    Ok(())
}

fn identity(map: &DeviceMap, v: &IdentityValue) -> String {
    match v {
        IdentityValue::Literal(t) => format!("\"{t}\""),
        IdentityValue::Register { register, format } => {
            let name = &map.register(*register).name;
            match format {
                Some(f) => format!("\"{f}\" with `{name}`"),
                None => format!("from `{name}`"),
            }
        }
    }
}

fn addresses(r: &Register) -> String {
    if r.words == 1 {
        r.address.to_string()
    } else {
        format!("{}..{}", r.address, r.last_address())
    }
}

fn details(r: &Register) -> String {
    let mut parts = Vec::new();
    if r.ty == super::model::ValueType::String {
        parts.push(format!(
            "{} regs {}",
            r.words,
            match r.encoding {
                StringEncoding::Ascii => "ascii",
                StringEncoding::AsciiSwapped => "ascii-swapped",
                StringEncoding::Utf16 => "utf16",
            }
        ));
    }
    if r.words > 1 && r.ty != super::model::ValueType::String && r.word_order == WordOrder::Little {
        parts.push("low word first".to_owned());
    }
    if r.offset != 0.0 {
        parts.push(format!("offset {}", num(r.offset)));
    }
    if let Some(m) = r.mask {
        parts.push(format!("mask {m:#06X}"));
    }
    if r.shift != 0 {
        parts.push(format!("shift {}", r.shift));
    }
    if !r.unavailable.is_empty() {
        let v: Vec<String> = r.unavailable.iter().map(|u| format!("{u:#X}")).collect();
        parts.push(format!("unavailable {}", v.join(",")));
    }
    parts.join("; ")
}

fn poll(p: PollClass) -> &'static str {
    match p {
        PollClass::Always => "always",
        PollClass::Slow => "slow",
        PollClass::Once => "once",
        PollClass::Never => "never (write-only)",
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn dur(d: Duration) -> String {
    crate::duration::HumanDuration(d).to_string()
}
