//! Registers <-> values, pure.
//!
//! Decoding order: combine words (word order) -> "unavailable" check on the raw unsigned value
//! -> mask and shift -> sign / float interpretation -> `raw * scale + offset`. Encoding runs the
//! same steps backwards. Coils and discrete inputs arrive as one word of 0 or 1 per address.

use super::model::{Register, StatusKey, StringEncoding, ValueType, WordOrder};

/// A decoded register value in engineering units.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Numbers, after scale and offset.
    Number(f64),
    /// Strings, trimmed of NUL bytes and spaces.
    Text(String),
}

impl Value {
    /// The number, if this is one.
    #[must_use]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Text(_) => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{n:.0}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Text(s) => f.write_str(s),
        }
    }
}

/// Why a value could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// The block read returned fewer words than the register occupies.
    #[error("register `{register}` needs {expected} words, got {got}")]
    WrongLength {
        /// Register name.
        register: String,
        /// Words expected.
        expected: usize,
        /// Words supplied.
        got: usize,
    },
    /// A value does not fit the register's type.
    #[error("value {value} does not fit register `{register}` ({reason})")]
    OutOfRange {
        /// Register name.
        register: String,
        /// The offending value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// A string where a number was expected or the other way round.
    #[error("register `{register}` holds a {expected}, not `{value}`")]
    WrongKind {
        /// Register name.
        register: String,
        /// `number` or `string`.
        expected: &'static str,
        /// The offending value.
        value: String,
    },
}

/// Combines words into the raw unsigned integer, honouring the word order.
fn combine(words: &[u16], order: WordOrder) -> u64 {
    let fold = |acc: u64, w: &u16| (acc << 16) | u64::from(*w);
    match order {
        WordOrder::Big => words.iter().fold(0, fold),
        WordOrder::Little => words.iter().rev().fold(0, fold),
    }
}

/// Splits a raw unsigned integer into `n` words in the given order.
fn split(raw: u64, n: u16, order: WordOrder) -> Vec<u16> {
    let mut big: Vec<u16> = (0..n)
        .rev()
        // checked: more than four words (a string register given a number) would shift a u64
        // by 64 or more; those words are 0 (found by tests/fuzz_codec.rs).
        .map(|i| (raw.checked_shr(16 * u32::from(i)).unwrap_or(0) & 0xFFFF) as u16)
        .collect();
    if order == WordOrder::Little {
        big.reverse();
    }
    big
}

fn check_len(reg: &Register, words: &[u16]) -> Result<(), CodecError> {
    if words.len() == usize::from(reg.words) {
        Ok(())
    } else {
        Err(CodecError::WrongLength {
            register: reg.name.clone(),
            expected: usize::from(reg.words),
            got: words.len(),
        })
    }
}

/// The raw unsigned integer after mask and shift, or `None` when it is an "unavailable" value.
fn masked_raw(reg: &Register, raw: u64) -> Option<u64> {
    if reg.unavailable.contains(&raw) {
        return None;
    }
    let masked = reg.mask.map_or(raw, |m| raw & m);
    Some(masked >> reg.shift)
}

fn decode_string(reg: &Register, words: &[u16]) -> String {
    let text = match reg.encoding {
        StringEncoding::Ascii | StringEncoding::AsciiSwapped => {
            let bytes: Vec<u8> = words
                .iter()
                .flat_map(|w| {
                    let [hi, lo] = w.to_be_bytes();
                    if reg.encoding == StringEncoding::Ascii {
                        [hi, lo]
                    } else {
                        [lo, hi]
                    }
                })
                .collect();
            // Zero-terminated strings (Alfen) end at the first NUL.
            let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
            String::from_utf8_lossy(&bytes[..end]).into_owned()
        }
        StringEncoding::Utf16 => {
            let end = words.iter().position(|w| *w == 0).unwrap_or(words.len());
            String::from_utf16_lossy(&words[..end])
        }
    };
    text.trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_owned()
}

/// Decodes one register's words; `Ok(None)` means the device reports "no reading".
///
/// # Errors
/// [`CodecError::WrongLength`] when `words` does not match the register's size.
pub fn decode(reg: &Register, words: &[u16]) -> Result<Option<Value>, CodecError> {
    check_len(reg, words)?;
    if reg.ty == ValueType::String {
        return Ok(Some(Value::Text(decode_string(reg, words))));
    }
    let raw = combine(words, reg.word_order);
    let Some(bits) = masked_raw(reg, raw) else {
        return Ok(None);
    };
    let plain = reg.mask.is_none() && reg.shift == 0;
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let number = match reg.ty {
        ValueType::I16 if plain => f64::from(bits as u16 as i16),
        ValueType::I32 if plain => f64::from(bits as u32 as i32),
        ValueType::I64 if plain => bits as i64 as f64,
        ValueType::F32 => f64::from(f32::from_bits(bits as u32)),
        ValueType::F64 => f64::from_bits(bits),
        _ => bits as f64,
    };
    if !number.is_finite() {
        // NaN and infinities are how float registers say "not available" (Alfen).
        return Ok(None);
    }
    Ok(Some(Value::Number(number * reg.scale + reg.offset)))
}

/// The key the status map is looked up with: the raw integer after mask/shift for numbers
/// (scale and offset do not apply), the trimmed text for strings.
///
/// # Errors
/// [`CodecError::WrongLength`] when `words` does not match the register's size.
pub fn status_key(reg: &Register, words: &[u16]) -> Result<Option<StatusKey>, CodecError> {
    check_len(reg, words)?;
    if reg.ty == ValueType::String {
        return Ok(Some(StatusKey::Text(decode_string(reg, words))));
    }
    let raw = combine(words, reg.word_order);
    #[allow(clippy::cast_possible_wrap)]
    Ok(masked_raw(reg, raw).map(|v| StatusKey::Number(v as i64)))
}

/// Encodes a value in engineering units into the register's words.
///
/// # Errors
/// [`CodecError::OutOfRange`] when the value does not fit the type, [`CodecError::WrongKind`]
/// for a string given to a numeric register or the other way round.
pub fn encode(reg: &Register, value: &Value) -> Result<Vec<u16>, CodecError> {
    match (reg.ty, value) {
        (ValueType::String, Value::Text(s)) => Ok(encode_string(reg, s)),
        (ValueType::String, Value::Number(n)) => Err(CodecError::WrongKind {
            register: reg.name.clone(),
            expected: "string",
            value: n.to_string(),
        }),
        (_, Value::Text(s)) => Err(CodecError::WrongKind {
            register: reg.name.clone(),
            expected: "number",
            value: s.clone(),
        }),
        (_, Value::Number(n)) => encode_number(reg, *n),
    }
}

/// Encodes a status key (raw integer or text) the way [`status_key`] reads it back.
///
/// # Errors
/// As [`encode`].
pub fn encode_status_key(reg: &Register, key: &StatusKey) -> Result<Vec<u16>, CodecError> {
    match key {
        StatusKey::Text(t) => encode(reg, &Value::Text(t.clone())),
        StatusKey::Number(n) => {
            let out_of_range = |reason| CodecError::OutOfRange {
                register: reg.name.clone(),
                value: n.to_string(),
                reason,
            };
            let raw = u64::try_from(*n).map_err(|_| out_of_range("negative status value"))?;
            let shifted = raw << reg.shift;
            let raw = reg.mask.map_or(shifted, |m| shifted & m);
            check_fits(reg, raw).map_err(out_of_range)?;
            Ok(split(raw, reg.words, reg.word_order))
        }
    }
}

fn check_fits(reg: &Register, raw: u64) -> Result<(), &'static str> {
    let bits = 16 * u32::from(reg.words);
    if bits < 64 && raw >> bits != 0 {
        Err("too large for the register")
    } else {
        Ok(())
    }
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]
fn encode_number(reg: &Register, value: f64) -> Result<Vec<u16>, CodecError> {
    let out_of_range = |reason| CodecError::OutOfRange {
        register: reg.name.clone(),
        value: value.to_string(),
        reason,
    };
    if !value.is_finite() {
        return Err(out_of_range("not a finite number"));
    }
    let scaled = (value - reg.offset) / reg.scale;
    let raw: u64 = match reg.ty {
        ValueType::F32 => u64::from((scaled as f32).to_bits()),
        ValueType::F64 => scaled.to_bits(),
        ty => {
            let rounded = scaled.round();
            let signed = matches!(ty, ValueType::I16 | ValueType::I32 | ValueType::I64)
                && reg.mask.is_none()
                && reg.shift == 0;
            let bits = 16 * u32::from(reg.words);
            if signed {
                let min = -(2f64.powi(bits as i32 - 1));
                let max = 2f64.powi(bits as i32 - 1) - 1.0;
                if rounded < min || rounded > max {
                    return Err(out_of_range("outside the signed range"));
                }
                let v = rounded as i64 as u64;
                if bits < 64 { v & ((1 << bits) - 1) } else { v }
            } else {
                if rounded < 0.0 {
                    return Err(out_of_range("negative value in an unsigned register"));
                }
                if rounded >= 2f64.powi(bits as i32) {
                    return Err(out_of_range("too large for the register"));
                }
                let shifted = (rounded as u64) << reg.shift;
                let raw = reg.mask.map_or(shifted, |m| shifted & m);
                check_fits(reg, raw).map_err(out_of_range)?;
                raw
            }
        }
    };
    Ok(split(raw, reg.words, reg.word_order))
}

fn encode_string(reg: &Register, s: &str) -> Vec<u16> {
    let n = usize::from(reg.words);
    let mut words = match reg.encoding {
        StringEncoding::Utf16 => s.encode_utf16().take(n).collect::<Vec<_>>(),
        StringEncoding::Ascii | StringEncoding::AsciiSwapped => s
            .as_bytes()
            .chunks(2)
            .take(n)
            .map(|c| {
                let (a, b) = (c[0], c.get(1).copied().unwrap_or(0));
                if reg.encoding == StringEncoding::Ascii {
                    u16::from_be_bytes([a, b])
                } else {
                    u16::from_be_bytes([b, a])
                }
            })
            .collect(),
    };
    words.resize(n, 0);
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devicemap::model::Table;

    fn reg(ty: ValueType) -> Register {
        Register {
            words: ty.fixed_words().unwrap_or(4),
            ..Register::new("r", Table::Input, 0, ty)
        }
    }

    fn num(r: &Register, words: &[u16]) -> f64 {
        decode(r, words).unwrap().unwrap().as_f64().unwrap()
    }

    #[test]
    fn integers_of_every_width_and_sign() {
        assert_eq!(num(&reg(ValueType::U16), &[0xFFFE]), 65534.0);
        assert_eq!(num(&reg(ValueType::I16), &[0xFFFE]), -2.0);
        assert_eq!(num(&reg(ValueType::U32), &[0x0001, 0x0002]), 65538.0);
        assert_eq!(num(&reg(ValueType::I32), &[0xFFFF, 0xFFFF]), -1.0);
        assert_eq!(num(&reg(ValueType::U64), &[0, 0, 1, 0]), 65536.0);
        assert_eq!(num(&reg(ValueType::I64), &[0xFFFF; 4]), -1.0);
    }

    #[test]
    fn low_word_first_swaps_words_not_bytes() {
        let mut r = reg(ValueType::U32);
        r.word_order = WordOrder::Little;
        // 0x12345678 low word first is 5678 1234 on the wire.
        assert_eq!(num(&r, &[0x5678, 0x1234]), f64::from(0x1234_5678u32));
        assert_eq!(
            encode(&r, &Value::Number(f64::from(0x1234_5678u32))).unwrap(),
            vec![0x5678, 0x1234]
        );
        let mut r64 = reg(ValueType::U64);
        r64.word_order = WordOrder::Little;
        assert_eq!(
            num(&r64, &[4, 3, 2, 1]),
            num(&reg(ValueType::U64), &[1, 2, 3, 4])
        );
    }

    #[test]
    fn floats_and_nan_as_unavailable() {
        let r = reg(ValueType::F32);
        let w = 230.5f32.to_bits();
        assert_eq!(num(&r, &[(w >> 16) as u16, w as u16]), 230.5);
        let nan = f32::NAN.to_bits();
        assert_eq!(decode(&r, &[(nan >> 16) as u16, nan as u16]).unwrap(), None);
        let r64 = reg(ValueType::F64);
        let words = encode(&r64, &Value::Number(12345.678)).unwrap();
        assert_eq!(num(&r64, &words), 12345.678);
    }

    #[test]
    fn scale_offset_and_sentinels() {
        let mut r = reg(ValueType::U16);
        r.scale = 0.1;
        r.offset = -40.0;
        r.unavailable = vec![0xFFFF];
        assert!((num(&r, &[160]) - (-24.0)).abs() < 1e-9);
        assert_eq!(decode(&r, &[0xFFFF]).unwrap(), None);
        assert_eq!(encode(&r, &Value::Number(-24.0)).unwrap(), vec![160]);
    }

    #[test]
    fn mask_and_shift_pick_a_byte() {
        let mut r = reg(ValueType::U16);
        r.mask = Some(0xFF00);
        r.shift = 8;
        assert_eq!(num(&r, &[0x4142]), f64::from(0x41));
        assert_eq!(
            status_key(&r, &[0x4142]).unwrap(),
            Some(StatusKey::Number(0x41))
        );
        assert_eq!(
            encode_status_key(&r, &StatusKey::Number(0x41)).unwrap(),
            vec![0x4100]
        );
    }

    #[test]
    fn strings_in_three_encodings() {
        let mut r = reg(ValueType::String);
        r.words = 3;
        assert_eq!(
            decode(&r, &[0x4231, 0, 0]).unwrap(),
            Some(Value::Text("B1".into()))
        );
        r.encoding = StringEncoding::AsciiSwapped;
        assert_eq!(
            decode(&r, &[0x3142, 0x2020, 0]).unwrap(),
            Some(Value::Text("B1".into()))
        );
        r.encoding = StringEncoding::Utf16;
        let words = encode(&r, &Value::Text("ÄB".into())).unwrap();
        assert_eq!(words, vec![0x00C4, 0x0042, 0]);
        assert_eq!(decode(&r, &words).unwrap(), Some(Value::Text("ÄB".into())));
    }

    #[test]
    fn encode_rejects_what_does_not_fit() {
        let r = reg(ValueType::U16);
        assert!(encode(&r, &Value::Number(70000.0)).is_err());
        assert!(encode(&r, &Value::Number(-1.0)).is_err());
        assert!(encode(&r, &Value::Text("x".into())).is_err());
        assert!(encode(&reg(ValueType::I16), &Value::Number(-32768.0)).is_ok());
        assert!(encode(&reg(ValueType::I16), &Value::Number(40000.0)).is_err());
        assert!(decode(&r, &[1, 2]).is_err());
    }
}
