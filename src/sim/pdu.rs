//! Modbus request PDUs -> response PDUs against a [`SimDevice`] (pure; shared by RTU and TCP).
//!
//! Section numbers refer to the Modbus Application Protocol Specification v1.1b3.

use tokio::time::Instant;

use super::device::{Exception, SimDevice};
use crate::devicemap::Table;

/// Largest quantity of coils one FC15 may write (§6.11).
const MAX_WRITE_BITS: u16 = 0x07B0;
/// Largest quantity of registers one FC16 may write (§6.12).
const MAX_WRITE_WORDS: u16 = 0x007B;

/// Whether a function code writes (a broadcast is only honoured for writes, §2.2 of the
/// serial line specification V1.02).
#[must_use]
pub fn is_write(function: u8) -> bool {
    matches!(function, 5 | 6 | 15 | 16)
}

/// The exception response for `function` (§7: function code with the high bit set).
#[must_use]
pub fn exception(function: u8, exception: Exception) -> Vec<u8> {
    vec![function | 0x80, exception.code()]
}

/// Answers one request PDU (function code first) and records it as traffic for the watchdog.
#[must_use]
pub fn respond(device: &mut SimDevice, request: &[u8], now: Instant) -> Vec<u8> {
    device.touch(now);
    let Some(&function) = request.first() else {
        return exception(0, Exception::IllegalFunction);
    };
    match handle(device, function, &request[1..], now) {
        Ok(response) => response,
        Err(e) => exception(function, e),
    }
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, Exception> {
    match data.get(at..at + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(Exception::IllegalDataValue),
    }
}

fn handle(
    device: &mut SimDevice,
    function: u8,
    data: &[u8],
    now: Instant,
) -> Result<Vec<u8>, Exception> {
    match function {
        1..=4 => {
            let table = match function {
                1 => Table::Coil,
                2 => Table::Discrete,
                3 => Table::Holding,
                _ => Table::Input,
            };
            if data.len() != 4 {
                return Err(Exception::IllegalDataValue);
            }
            let (start, count) = (u16_at(data, 0)?, u16_at(data, 2)?);
            let words = device.read(table, start, count, now)?;
            let body = if table.is_bits() {
                pack_bits(&words)
            } else {
                words.iter().flat_map(|w| w.to_be_bytes()).collect()
            };
            let len = u8::try_from(body.len()).map_err(|_| Exception::IllegalDataValue)?;
            let mut out = vec![function, len];
            out.extend(body);
            Ok(out)
        }
        5 | 6 => {
            if data.len() != 4 {
                return Err(Exception::IllegalDataValue);
            }
            let (addr, value) = (u16_at(data, 0)?, u16_at(data, 2)?);
            let (table, word) = if function == 5 {
                // §6.5: 0xFF00 is ON, 0x0000 OFF; anything else is an illegal value.
                match value {
                    0xFF00 => (Table::Coil, 1),
                    0x0000 => (Table::Coil, 0),
                    _ => return Err(Exception::IllegalDataValue),
                }
            } else {
                (Table::Holding, value)
            };
            device.write(table, addr, &[word], function, now)?;
            let mut out = vec![function];
            out.extend_from_slice(data);
            Ok(out)
        }
        15 | 16 => {
            if data.len() < 5 {
                return Err(Exception::IllegalDataValue);
            }
            let (addr, count) = (u16_at(data, 0)?, u16_at(data, 2)?);
            let byte_count = usize::from(data[4]);
            let payload = &data[5..];
            let (max, expected) = if function == 15 {
                (MAX_WRITE_BITS, usize::from(count).div_ceil(8))
            } else {
                (MAX_WRITE_WORDS, usize::from(count) * 2)
            };
            if count == 0 || count > max || byte_count != expected || payload.len() != expected {
                return Err(Exception::IllegalDataValue);
            }
            let (table, values) = if function == 15 {
                let bits = (0..usize::from(count))
                    .map(|i| u16::from((payload[i / 8] >> (i % 8)) & 1))
                    .collect::<Vec<_>>();
                (Table::Coil, bits)
            } else {
                let words = payload
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>();
                (Table::Holding, words)
            };
            device.write(table, addr, &values, function, now)?;
            Ok(vec![function, data[0], data[1], data[2], data[3]])
        }
        _ => Err(Exception::IllegalFunction),
    }
}

/// Packs 0/1 words into bytes, first coil in the lowest bit (§6.1).
fn pack_bits(bits: &[u16]) -> Vec<u8> {
    bits.chunks(8)
        .map(|chunk| {
            chunk.iter().enumerate().fold(
                0u8,
                |acc, (i, b)| if *b != 0 { acc | (1 << i) } else { acc },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::devicemap::*;
    use crate::sim::{SimDevice, SimOptions};

    include!("../../tests/common/map.rs");

    fn device() -> SimDevice {
        let mut map = test_map();
        map.registers
            .push(reg("relay", Table::Coil, 400, ValueType::U16, 1.0));
        map.registers
            .push(reg("lock", Table::Coil, 402, ValueType::U16, 1.0));
        SimDevice::new(Arc::new(map), SimOptions::default()).unwrap()
    }

    #[test]
    fn register_reads_are_big_endian_with_a_byte_count() {
        let mut d = device();
        let now = Instant::now();
        let r = respond(&mut d, &[0x04, 0x00, 0x04, 0x00, 0x02], now);
        assert_eq!(r, vec![0x04, 0x04, 0x00, 0x00, 0x00, 0x02]);
        let r = respond(&mut d, &[0x06, 0x01, 0x05, 0x00, 0xA0], now);
        assert_eq!(
            r,
            vec![0x06, 0x01, 0x05, 0x00, 0xA0],
            "FC6 echoes the request"
        );
        let r = respond(&mut d, &[0x03, 0x01, 0x05, 0x00, 0x01], now);
        assert_eq!(r, vec![0x03, 0x02, 0x00, 0xA0]);
    }

    #[test]
    fn coils_are_packed_lowest_address_in_the_lowest_bit() {
        let mut d = device();
        let now = Instant::now();
        // FC15: coils 400..=402 = 1, 0, 1 (401 is undeclared: refused).
        let r = respond(&mut d, &[0x0F, 0x01, 0x90, 0x00, 0x03, 0x01, 0b101], now);
        assert_eq!(r, vec![0x8F, 0x02]);
        let r = respond(&mut d, &[0x05, 0x01, 0x92, 0xFF, 0x00], now);
        assert_eq!(r, vec![0x05, 0x01, 0x92, 0xFF, 0x00]);
        let r = respond(&mut d, &[0x0F, 0x01, 0x90, 0x00, 0x01, 0x01, 0x01], now);
        assert_eq!(r, vec![0x0F, 0x01, 0x90, 0x00, 0x01]);
        let r = respond(&mut d, &[0x01, 0x01, 0x90, 0x00, 0x03], now);
        assert_eq!(r, vec![0x01, 0x01, 0b101]);
        // FC5 accepts only FF00 and 0000 (§6.5).
        let r = respond(&mut d, &[0x05, 0x01, 0x90, 0x12, 0x34], now);
        assert_eq!(r, vec![0x85, 0x03]);
    }

    #[test]
    fn malformed_and_unsupported_requests_get_exceptions() {
        let mut d = device();
        let now = Instant::now();
        assert_eq!(respond(&mut d, &[0x2B, 0x0E], now), vec![0xAB, 0x01]);
        assert_eq!(respond(&mut d, &[0x04, 0x00], now), vec![0x84, 0x03]);
        assert_eq!(
            respond(&mut d, &[0x10, 0x01, 0x05, 0x00, 0x01, 0x04, 0, 1], now),
            vec![0x90, 0x03],
            "byte count disagrees with the quantity"
        );
        assert_eq!(respond(&mut d, &[], now), vec![0x80, 0x01]);
        assert_eq!(d.snapshot(now).requests, 4);
    }

    proptest! {
        #[test]
        fn no_request_makes_it_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut d = device();
            let r = respond(&mut d, &bytes, Instant::now());
            prop_assert!(!r.is_empty());
        }
    }
}
