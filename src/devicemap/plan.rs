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
        .filter(|r| r.table == table)
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
