//! Durations as written in configuration files: `500ms`, `1s`, `15s`, `5m`, `1h`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A duration parsed from `<number><unit>` with unit `ms`, `s`, `m` or `h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The wrapped duration.
    #[must_use]
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Parses `500ms`, `1s`, `1.5s`, `5m`, `1h`.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration `{t}` needs a unit: ms, s, m or h (e.g. 500ms, 15s)"))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("duration `{t}` does not start with a number"))?;
    let factor = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "duration `{t}` has unknown unit `{unit}`: use ms, s, m or h"
            ));
        }
    };
    let secs = value * factor;
    if !secs.is_finite() || !(0.0..=1.0e9).contains(&secs) {
        return Err(format!("duration `{t}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map(HumanDuration).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_the_docs_use() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        assert!(parse("15").unwrap_err().contains("needs a unit"));
        assert!(parse("15 parsecs").is_err());
        assert!(parse("s").is_err());
    }
}
