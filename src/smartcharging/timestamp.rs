//! Timestamps in charging profiles: lenient in, strict out.
//!
//! OCPP 1.6 errata 3.10 asks receivers to accept fractional seconds and offsets; central systems
//! also send offsets without minutes (`+02`, monta-app/ocpp-emulator #5) and local times without
//! any offset (evcc #10399). All of these are read; a time without offset is taken as UTC, the
//! only zone OCPP ever means. Output is always UTC with milliseconds and `Z`.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer, de};

/// Reads an ISO 8601 / RFC 3339 timestamp, leniently (see the module docs).
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc));
    }
    // `%#z` accepts `+02`, `+0200` and `+02:00`.
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(d) = DateTime::parse_from_str(t, fmt) {
            return Some(d.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(n.and_utc());
        }
    }
    None
}

/// Writes a timestamp as OCPP-J expects it: UTC, milliseconds, `Z`.
pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serde helpers for `Option<DateTime<Utc>>` fields with [`parse`] and [`format`].
pub(crate) mod opt {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        t: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format(*t)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => parse(&text)
                .map(Some)
                .ok_or_else(|| de::Error::custom(format!("`{text}` is not a timestamp"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_missing_offsets_are_read() {
        let want = "2026-03-01T10:00:00.000Z";
        for text in [
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00.000Z",
            "2026-03-01T12:00:00+02:00",
            "2026-03-01T12:00:00+02",
            "2026-03-01T12:00:00+0200",
            "2026-03-01T10:00:00",
            "2026-03-01T10:00:00.0",
        ] {
            assert_eq!(parse(text).map(format).as_deref(), Some(want), "{text}");
        }
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse(""), None);
    }
}
