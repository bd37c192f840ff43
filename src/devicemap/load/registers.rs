//! `registers:`: names, tables, addresses, types, and overlaps between them.

use super::{Loader, REGISTER_FIELDS, RegEntry, TABLES, TYPES, type_name};
use crate::devicemap::model::{PollClass, Register, StringEncoding, Table, ValueType, WordOrder};
use crate::devicemap::tree::{Kind, Node, Pos};

impl Loader<'_> {
    // ---- registers ----

    pub(super) fn registers(&mut self, node: &Node, max_read: u16) {
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
        let mut reg = Register::new(name, Table::Input, 0, ValueType::U16);
        let Some(f) = self.ctx.fields(node, &path, REGISTER_FIELDS) else {
            return RegEntry {
                reg,
                pos,
                table_known: false,
                placed: false,
            };
        };

        // Exactly one of input/holding/coil/discrete carries the address.
        let given: Vec<(&str, Table)> = f
            .names()
            .filter_map(|n| TABLES.iter().find(|(t, _)| *t == n).copied())
            .collect();
        let mut table_known = false;
        let mut placed = false;
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
                    if let Some(a) = self.ctx.int(n, &format!("{path}.{t}"), 0, 65535)
                        && let Ok(a) = u16::try_from(a)
                    {
                        reg.address = a;
                        placed = true;
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
            match self.ctx.choice(
                n,
                &format!("{path}.poll"),
                &["always", "slow", "once", "never"],
            ) {
                Some("slow") => reg.poll = PollClass::Slow,
                Some("once") => reg.poll = PollClass::Once,
                Some("never") => reg.poll = PollClass::Never,
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
            placed,
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
            .filter(|i| self.regs[*i].placed)
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
}
