//! Read plans: which block reads cover the registers of some poll classes (pure).
//!
//! Every request on an RS-485 bus costs the device's request delay plus the frame times, so
//! registers are coalesced into as few block reads as the map's limits allow:
//! `max_registers_per_read` per request, and at most `max_gap` undeclared addresses inside a
//! block (some devices answer a read that touches an undeclared register with an exception).

use super::model::{DeviceMap, PollClass, Register, Table};

/// One block read: `count` registers (or bits) of `table` from `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadBlock {
    /// Table (and so the function code: 4, 3, 1 or 2).
    pub table: Table,
    /// First address.
    pub start: u16,
    /// Number of registers (or bits).
    pub count: u16,
}

impl ReadBlock {
    /// The last address read.
    #[must_use]
    pub fn last_address(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count).max(1) - 1
    }

    /// Whether the block reads every address of `reg`.
    #[must_use]
    pub fn covers(&self, reg: &Register) -> bool {
        reg.table == self.table
            && reg.address >= self.start
            && reg.last_address() <= self.last_address()
    }
}

const TABLE_ORDER: [Table; 4] = [Table::Input, Table::Holding, Table::Coil, Table::Discrete];

/// The fewest block reads covering every register whose poll class is in `classes`.
///
/// Blocks come per table (input, holding, coil, discrete), in address order. A block never
/// exceeds `max_registers_per_read`, never contains more than `max_gap` addresses that no
/// declared register of its table covers (whatever that register's class), and never splits
/// a register. Extending each block as far as the limits allow is optimal here: a shorter run
/// of consecutive registers is always readable when a longer one is.
#[must_use]
pub fn plan(map: &DeviceMap, classes: &[PollClass]) -> Vec<ReadBlock> {
    let mut out = Vec::new();
    for table in TABLE_ORDER {
        let declared = coverage(map, table);
        let mut wanted: Vec<&Register> = map
            .registers
            .iter()
            .filter(|r| r.table == table && classes.contains(&r.poll))
            .collect();
        wanted.sort_by_key(|r| (r.address, r.words));
        out.extend(coalesce(&wanted, &declared, map));
    }
    out
}

/// Splits a block the device refused into smaller reads along register boundaries.
///
/// The registers of the map inside the block are halved into two groups (each read as one
/// block); a block holding a single register (or none the map knows) cannot be split and is
/// returned unchanged, which tells the caller to give that register up.
#[must_use]
pub fn split(block: &ReadBlock, map: &DeviceMap) -> Vec<ReadBlock> {
    let mut inside: Vec<&Register> = map.registers.iter().filter(|r| block.covers(r)).collect();
    inside.sort_by_key(|r| (r.address, r.words));
    if inside.len() < 2 {
        return vec![*block];
    }
    let half = inside.len() / 2;
    let (left, right) = inside.split_at(half);
    [left, right]
        .into_iter()
        .filter_map(|group| {
            let first = group.first()?;
            let end = group.iter().map(|r| r.last_address()).max()?;
            Some(ReadBlock {
                table: block.table,
                start: first.address,
                count: span(first.address, end),
            })
        })
        .collect()
}

/// Merged address ranges `[start, end]` covered by any declared register of `table`.
fn coverage(map: &DeviceMap, table: Table) -> Vec<(u32, u32)> {
    let mut ranges: Vec<(u32, u32)> = map
        .registers
        .iter()
        // Write-only registers do not count: a read touching them may be refused.
        .filter(|r| r.table == table && r.poll != PollClass::Never)
        .map(|r| (u32::from(r.address), r.last_address()))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match merged.last_mut() {
            Some((_, last)) if s <= *last + 1 => *last = (*last).max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// Addresses in `[from, to]` that no declared range covers.
fn undeclared(declared: &[(u32, u32)], from: u32, to: u32) -> u32 {
    if from > to {
        return 0;
    }
    let covered: u32 = declared
        .iter()
        .filter(|(s, e)| *e >= from && *s <= to)
        .map(|(s, e)| (*e).min(to) - (*s).max(from) + 1)
        .sum();
    (to - from + 1) - covered
}

fn span(start: u16, end: u32) -> u16 {
    u16::try_from(end - u32::from(start) + 1).unwrap_or(u16::MAX)
}

fn coalesce(wanted: &[&Register], declared: &[(u32, u32)], map: &DeviceMap) -> Vec<ReadBlock> {
    let max_len = u32::from(map.modbus.max_registers_per_read.max(1));
    let max_gap = u32::from(map.modbus.max_gap);
    let mut out = Vec::new();
    let mut current: Option<(u16, u32, u32)> = None; // (start, end, undeclared inside)
    for reg in wanted {
        let (r_start, r_end) = (u32::from(reg.address), reg.last_address());
        if let Some((start, end, gaps)) = current {
            if r_end <= end {
                // Already inside the block (cannot happen for valid maps, which have no overlaps).
                continue;
            }
            let added = if r_start > end + 1 {
                undeclared(declared, end + 1, r_start - 1)
            } else {
                0
            };
            let len = r_end - u32::from(start) + 1;
            if len <= max_len && gaps + added <= max_gap {
                current = Some((start, r_end, gaps + added));
                continue;
            }
            out.push(ReadBlock {
                table: reg.table,
                start,
                count: span(start, end),
            });
        }
        current = Some((reg.address, r_end, 0));
    }
    if let (Some((start, end, _)), Some(first)) = (current, wanted.first()) {
        out.push(ReadBlock {
            table: first.table,
            start,
            count: span(start, end),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::devicemap::model::{
        ControlSpec, Identity, ModbusSettings, StatusSpec, ValueType, WriteFunction,
    };

    fn reg(name: &str, table: Table, address: u16, words: u16, poll: PollClass) -> Register {
        let ty = if words == 1 {
            ValueType::U16
        } else {
            ValueType::String
        };
        Register {
            words,
            poll,
            ..Register::new(name, table, address, ty)
        }
    }

    fn map(registers: Vec<Register>, max_read: u16, max_gap: u16) -> DeviceMap {
        DeviceMap {
            name: "t".into(),
            vendor: "V".into(),
            model: "M".into(),
            connectors: 1,
            modbus: ModbusSettings {
                serial: None,
                unit: 1,
                request_delay: Duration::ZERO,
                timeout: Duration::from_secs(1),
                retries: 0,
                max_registers_per_read: max_read,
                max_gap,
                write_function: WriteFunction::Multiple,
            },
            registers,
            identity: Identity::default(),
            status: StatusSpec {
                register: 0,
                map: vec![],
                vehicle: None,
            },
            measurands: vec![],
            control: ControlSpec::default(),
            init: vec![],
            keepalive: None,
        }
    }

    const ALL: [PollClass; 3] = [PollClass::Always, PollClass::Slow, PollClass::Once];

    fn block(table: Table, start: u16, count: u16) -> ReadBlock {
        ReadBlock {
            table,
            start,
            count,
        }
    }

    #[test]
    fn contiguous_registers_become_one_read() {
        let m = map(
            (0..10)
                .map(|i| {
                    reg(
                        &format!("r{i}"),
                        Table::Holding,
                        100 + i,
                        1,
                        PollClass::Always,
                    )
                })
                .collect(),
            125,
            0,
        );
        assert_eq!(plan(&m, &ALL), vec![block(Table::Holding, 100, 10)]);
    }

    #[test]
    fn a_gap_wider_than_max_gap_splits_the_read() {
        let regs = vec![
            reg("a", Table::Input, 0, 1, PollClass::Always),
            reg("b", Table::Input, 5, 1, PollClass::Always), // 4 undeclared between
            reg("c", Table::Input, 20, 1, PollClass::Always), // 14 undeclared between
        ];
        assert_eq!(
            plan(&map(regs.clone(), 125, 4), &ALL),
            vec![block(Table::Input, 0, 6), block(Table::Input, 20, 1)]
        );
        assert_eq!(
            plan(&map(regs.clone(), 125, 3), &ALL),
            vec![
                block(Table::Input, 0, 1),
                block(Table::Input, 5, 1),
                block(Table::Input, 20, 1)
            ]
        );
        // The gaps add up within one block: 4 + 14 = 18.
        assert_eq!(
            plan(&map(regs, 125, 18), &ALL),
            vec![block(Table::Input, 0, 21)]
        );
    }

    #[test]
    fn registers_of_other_classes_are_not_gaps() {
        let regs = vec![
            reg("a", Table::Input, 0, 1, PollClass::Always),
            reg("serial", Table::Input, 1, 10, PollClass::Once),
            reg("b", Table::Input, 11, 1, PollClass::Always),
        ];
        assert_eq!(
            plan(&map(regs, 125, 0), &[PollClass::Always]),
            vec![block(Table::Input, 0, 12)]
        );
    }

    #[test]
    fn a_read_never_exceeds_the_limit_or_splits_a_register() {
        let regs = vec![
            reg("a", Table::Input, 0, 1, PollClass::Always),
            reg("b", Table::Input, 1, 2, PollClass::Always),
            reg("c", Table::Input, 3, 2, PollClass::Always),
        ];
        // 4 registers per read: `c` (3..4) would make 5, so it starts the next read.
        assert_eq!(
            plan(&map(regs, 4, 8), &ALL),
            vec![block(Table::Input, 0, 3), block(Table::Input, 3, 2)]
        );
    }

    #[test]
    fn tables_are_planned_separately() {
        let regs = vec![
            reg("h", Table::Holding, 5, 1, PollClass::Always),
            reg("i", Table::Input, 5, 1, PollClass::Always),
            reg("c", Table::Coil, 6, 1, PollClass::Always),
            reg("d", Table::Discrete, 7, 1, PollClass::Slow),
        ];
        assert_eq!(
            plan(&map(regs, 125, 8), &[PollClass::Always]),
            vec![
                block(Table::Input, 5, 1),
                block(Table::Holding, 5, 1),
                block(Table::Coil, 6, 1)
            ]
        );
    }

    #[test]
    fn nothing_to_read_is_an_empty_plan() {
        let m = map(vec![reg("a", Table::Input, 0, 1, PollClass::Once)], 125, 8);
        assert!(plan(&m, &[PollClass::Always]).is_empty());
    }

    #[test]
    fn split_halves_along_register_boundaries_down_to_one_register() {
        let regs: Vec<Register> = [(0, 1), (1, 2), (3, 1), (10, 4), (14, 1)]
            .iter()
            .enumerate()
            .map(|(i, (a, w))| reg(&format!("r{i}"), Table::Holding, *a, *w, PollClass::Always))
            .collect();
        let m = map(regs, 125, 8);
        let whole = plan(&m, &ALL);
        assert_eq!(whole, vec![block(Table::Holding, 0, 15)]);
        let halves = split(&whole[0], &m);
        assert_eq!(
            halves,
            vec![block(Table::Holding, 0, 3), block(Table::Holding, 3, 12)]
        );
        assert_eq!(
            split(&halves[1], &m),
            vec![block(Table::Holding, 3, 1), block(Table::Holding, 10, 5)]
        );
        // One register: nothing left to split.
        let single = block(Table::Holding, 10, 4);
        assert_eq!(split(&single, &m), vec![single]);
    }

    /// Registers with random sizes and gaps, in one or two tables, never overlapping.
    fn registers() -> impl Strategy<Value = Vec<Register>> {
        prop::collection::vec((0u16..12, 1u16..5, 0usize..3, any::<bool>()), 1..40).prop_map(
            |specs| {
                let mut next = [0u32; 2];
                let mut out = Vec::new();
                for (i, (gap, words, class, holding)) in specs.into_iter().enumerate() {
                    let t = usize::from(holding);
                    let address = next[t] + u32::from(gap);
                    let Ok(addr) = u16::try_from(address) else {
                        continue;
                    };
                    next[t] = address + u32::from(words);
                    let table = if holding {
                        Table::Holding
                    } else {
                        Table::Input
                    };
                    out.push(reg(&format!("r{i}"), table, addr, words, ALL[class]));
                }
                out
            },
        )
    }

    fn undeclared_in(m: &DeviceMap, b: &ReadBlock) -> u32 {
        (u32::from(b.start)..=b.last_address())
            .filter(|a| {
                !m.registers.iter().any(|r| {
                    r.table == b.table && u32::from(r.address) <= *a && *a <= r.last_address()
                })
            })
            .count() as u32
    }

    /// The fewest blocks by dynamic programming over the sorted wanted registers.
    fn minimum(m: &DeviceMap, classes: &[PollClass]) -> usize {
        let mut total = 0;
        for table in TABLE_ORDER {
            let mut w: Vec<&Register> = m
                .registers
                .iter()
                .filter(|r| r.table == table && classes.contains(&r.poll))
                .collect();
            w.sort_by_key(|r| r.address);
            let n = w.len();
            let mut best = vec![usize::MAX; n + 1];
            best[0] = 0;
            for j in 1..=n {
                for i in 0..j {
                    let b = ReadBlock {
                        table,
                        start: w[i].address,
                        count: span(w[i].address, w[j - 1].last_address()),
                    };
                    let ok = u32::from(b.count) <= u32::from(m.modbus.max_registers_per_read)
                        && undeclared_in(m, &b) <= u32::from(m.modbus.max_gap);
                    if ok && best[i] != usize::MAX {
                        best[j] = best[j].min(best[i] + 1);
                    }
                }
            }
            total += best[n];
        }
        total
    }

    proptest! {
        #[test]
        fn plans_cover_each_register_once_within_the_limits(
            regs in registers(),
            max_read in 4u16..=40,
            max_gap in 0u16..=10,
            classes in prop::sample::subsequence(ALL.to_vec(), 1..=3),
        ) {
            let m = map(regs, max_read, max_gap);
            let blocks = plan(&m, &classes);
            for r in m.registers.iter().filter(|r| classes.contains(&r.poll)) {
                let covering = blocks.iter().filter(|b| b.covers(r)).count();
                prop_assert_eq!(covering, 1, "register {} covered {} times", r.name, covering);
                let touching = blocks.iter().filter(|b| {
                    b.table == r.table
                        && u32::from(b.start) <= r.last_address()
                        && u32::from(r.address) <= b.last_address()
                }).count();
                prop_assert_eq!(touching, 1, "register {} split", r.name);
            }
            for b in &blocks {
                prop_assert!(b.count >= 1 && b.count <= max_read, "{:?}", b);
                prop_assert!(undeclared_in(&m, b) <= u32::from(max_gap), "{:?}", b);
            }
            prop_assert_eq!(blocks.len(), minimum(&m, &classes));
        }

        #[test]
        fn splitting_ends_in_single_registers_and_loses_none(
            regs in registers(),
            max_gap in 0u16..=10,
        ) {
            let m = map(regs, 125, max_gap);
            let mut queue = plan(&m, &ALL);
            let mut singles = Vec::new();
            let mut steps = 0;
            while let Some(b) = queue.pop() {
                steps += 1;
                prop_assert!(steps < 10_000);
                let parts = split(&b, &m);
                if parts == vec![b] {
                    singles.push(b);
                } else {
                    for p in &parts {
                        prop_assert!(p.count < b.count && p.start >= b.start
                            && p.last_address() <= b.last_address());
                    }
                    queue.extend(parts);
                }
            }
            for r in &m.registers {
                prop_assert_eq!(singles.iter().filter(|b| b.covers(r)).count(), 1);
            }
            prop_assert!(singles.iter().all(|b| m.registers.iter().filter(|r| b.covers(r)).count() == 1));
        }
    }
}
