//! Fuzz target `codec`: the register codec (`decode`, `status_key`, `encode`,
//! `encode_status_key`) with arbitrary register definitions (every type, word order, string
//! encoding, scale, offset, mask, shift, "unavailable" list; lengths that do not match) and
//! arbitrary register contents or values (NaN, infinities, huge numbers, any text). Nothing
//! panics, and integers written without scaling read back unchanged. See `fuzz_support` for the
//! corpus and `FUZZ_CASES`.

mod fuzz_support;

use chargebridge::devicemap::Value;
use chargebridge::devicemap::codec::{decode, encode, encode_status_key, status_key};
use chargebridge::devicemap::model::{
    Register, StatusKey, StringEncoding, Table, ValueType, WordOrder,
};
use proptest::prelude::*;
use serde_json::Value as Json;

const TYPES: &[ValueType] = &[
    ValueType::U16,
    ValueType::I16,
    ValueType::U32,
    ValueType::I32,
    ValueType::U64,
    ValueType::I64,
    ValueType::F32,
    ValueType::F64,
    ValueType::String,
];

/// An unscaled register of `ty`; callers set the other fields.
fn register(ty: ValueType, word_order: WordOrder, words: u16) -> Register {
    Register {
        word_order,
        words,
        ..Register::new("fuzz", Table::Holding, 0, ty)
    }
}

/// Decodes, derives the status key, and writes what was read back; nothing may panic.
fn exercise(reg: &Register, data: &[u16]) {
    let decoded = decode(reg, data);
    let _ = status_key(reg, data);
    if let Ok(Some(value)) = &decoded {
        let _ = encode(reg, value);
    }
    if let Ok(Some(key)) = status_key(reg, data) {
        let _ = encode_status_key(reg, &key);
    }
}

/// A corpus seed: a JSON object describing the register plus `data` (register contents) and
/// optionally `status_number` (a numeric status key to encode).
fn from_seed(bytes: &[u8]) -> Option<(Register, Vec<u16>, Option<i64>)> {
    let v: Json = serde_json::from_slice(bytes).ok()?;
    let ty = match v["type"].as_str()? {
        "u16" => ValueType::U16,
        "i16" => ValueType::I16,
        "u32" => ValueType::U32,
        "i32" => ValueType::I32,
        "u64" => ValueType::U64,
        "i64" => ValueType::I64,
        "f32" => ValueType::F32,
        "f64" => ValueType::F64,
        _ => ValueType::String,
    };
    let word_order = if v["word_order"] == "little" {
        WordOrder::Little
    } else {
        WordOrder::Big
    };
    let encoding = match v["encoding"].as_str() {
        Some("ascii-swapped") => StringEncoding::AsciiSwapped,
        Some("utf16") => StringEncoding::Utf16,
        _ => StringEncoding::Ascii,
    };
    let words = u16::try_from(v["words"].as_u64()?).ok()?;
    let reg = Register {
        encoding,
        scale: v["scale"].as_f64().unwrap_or(1.0),
        offset: v["offset"].as_f64().unwrap_or(0.0),
        mask: v["mask"].as_u64(),
        shift: u32::try_from(v["shift"].as_u64().unwrap_or(0)).ok()?,
        unavailable: v["unavailable"]
            .as_array()
            .map(|a| a.iter().filter_map(Json::as_u64).collect())
            .unwrap_or_default(),
        ..register(ty, word_order, words)
    };
    let data = v["data"]
        .as_array()?
        .iter()
        .filter_map(|w| u16::try_from(w.as_u64()?).ok())
        .collect();
    Some((reg, data, v["status_number"].as_i64()))
}

#[test]
fn the_corpus_replays_cleanly() {
    for (name, bytes) in fuzz_support::corpus("codec") {
        let (reg, data, status) =
            from_seed(&bytes).unwrap_or_else(|| panic!("{name}: not a codec seed"));
        exercise(&reg, &data);
        if let Some(k) = status {
            let _ = encode_status_key(&reg, &StatusKey::Number(k));
        }
        eprintln!("replayed {name}");
    }
}

/// Registers as the loader can produce them (`devicemap::load`): words fixed by the type
/// (any length for strings), finite non-zero scale, finite offset, `shift` below the register's
/// width, `mask` within it; `unavailable` and the contents are arbitrary.
fn any_register() -> impl Strategy<Value = Register> {
    let finite = any::<f64>().prop_filter("finite", |f| f.is_finite());
    let scale = prop_oneof![
        Just(1.0),
        Just(0.1),
        Just(0.001),
        Just(-1.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        finite.clone().prop_filter("non-zero", |f| *f != 0.0),
    ];
    let offset = prop_oneof![Just(0.0), Just(-40.0), Just(f64::MAX), finite];
    (
        prop::sample::select(TYPES),
        prop_oneof![Just(WordOrder::Big), Just(WordOrder::Little)],
        1u16..12,
        prop_oneof![
            Just(StringEncoding::Ascii),
            Just(StringEncoding::AsciiSwapped),
            Just(StringEncoding::Utf16)
        ],
        scale,
        offset,
        prop::option::of(any::<u64>()),
        any::<u32>(),
        prop::collection::vec(any::<u64>(), 0..3),
    )
        .prop_map(
            |(ty, wo, words, enc, scale, offset, mask, shift, unavailable)| {
                let words = ty.fixed_words().unwrap_or(words);
                let integer = !matches!(ty, ValueType::F32 | ValueType::F64 | ValueType::String);
                let bits = 16 * u32::from(words);
                let width = if bits >= 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                let (mask, shift) = if integer {
                    (mask.map(|m| (m & width).max(1)), shift % bits)
                } else {
                    (None, 0)
                };
                Register {
                    encoding: enc,
                    scale,
                    offset,
                    mask,
                    shift,
                    unavailable,
                    ..register(ty, wo, words)
                }
            },
        )
}

proptest! {
    #![proptest_config(fuzz_support::config())]

    #[test]
    fn any_register_contents_decode_without_panicking(
        reg in any_register(),
        data in prop::collection::vec(any::<u16>(), 0..14),
    ) {
        exercise(&reg, &data);
    }

    #[test]
    fn any_value_encodes_without_panicking(
        reg in any_register(),
        n in prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(-0.0), Just(1e300)],
        text in "\\PC{0,30}",
        k in any::<i64>(),
    ) {
        let _ = encode(&reg, &Value::Number(n));
        if let Ok(words) = encode(&reg, &Value::Text(text.clone())) {
            prop_assert_eq!(words.len(), usize::from(reg.words));
        }
        let _ = encode_status_key(&reg, &StatusKey::Number(k));
        let _ = encode_status_key(&reg, &StatusKey::Text(text));
    }

    #[test]
    fn unscaled_integers_read_back_unchanged(
        ty in prop::sample::select(&TYPES[..6]),
        wo in prop_oneof![Just(WordOrder::Big), Just(WordOrder::Little)],
        n in any::<i32>(),
    ) {
        let reg = register(ty, wo, ty.fixed_words().unwrap_or(1));
        let value = Value::Number(f64::from(n));
        if let Ok(words) = encode(&reg, &value) {
            prop_assert_eq!(decode(&reg, &words), Ok(Some(value)));
        }
    }
}
