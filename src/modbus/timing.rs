//! Per-device timing and the Modbus RTU inter-frame silence.

use std::time::Duration;

use crate::devicemap::ModbusSettings;

/// How one device wants to be talked to; sent along with every request because several
/// devices with different needs can share one bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceTiming {
    /// Pause on the bus before each request to this device (many wallboxes need 20–200 ms).
    pub request_delay: Duration,
    /// Time to wait for the reply to one attempt.
    pub timeout: Duration,
    /// Extra attempts after a timeout or transport error (never after a Modbus exception).
    pub retries: u32,
}

impl From<&ModbusSettings> for DeviceTiming {
    fn from(settings: &ModbusSettings) -> Self {
        DeviceTiming {
            request_delay: settings.request_delay,
            timeout: settings.timeout,
            retries: settings.retries,
        }
    }
}

/// Bits on the wire per RTU character: start, 8 data, parity or second stop, stop
/// (Modbus over Serial Line v1.02 §2.5.1). 7-bit or parity-less framings are shorter, so
/// this errs on the side of a longer gap.
const BITS_PER_CHARACTER: u64 = 11;

/// Above 19200 baud the spec fixes t3.5 at 1.75 ms (Modbus over Serial Line v1.02 §2.5.1.1).
const FIXED_SILENCE: Duration = Duration::from_micros(1750);

/// The 3.5-character silence that must separate two RTU frames at `baud`
/// (Modbus over Serial Line v1.02 §2.5.1.1): 3.5 × 11 bits at up to 19200 baud, and a fixed
/// 1.75 ms above. A baud rate of 0 (invalid; the port will not open) gets the fixed value.
#[must_use]
pub fn rtu_frame_silence(baud: u32) -> Duration {
    if baud == 0 || baud > 19_200 {
        return FIXED_SILENCE;
    }
    // 3.5 characters = 35 tenth-characters; computed in nanoseconds to keep the fraction.
    let nanos = 35 * BITS_PER_CHARACTER * 1_000_000_000 / (10 * u64::from(baud));
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_at_19200_is_three_and_a_half_characters_of_eleven_bits() {
        // 38.5 bits at 19200 baud = 2.005 ms
        assert_eq!(rtu_frame_silence(19_200), Duration::from_nanos(2_005_208));
    }

    #[test]
    fn silence_at_9600_doubles() {
        assert_eq!(rtu_frame_silence(9_600), Duration::from_nanos(4_010_416));
    }

    #[test]
    fn silence_above_19200_is_fixed() {
        assert_eq!(rtu_frame_silence(38_400), Duration::from_micros(1750));
        assert_eq!(rtu_frame_silence(115_200), Duration::from_micros(1750));
    }

    #[test]
    fn silence_for_invalid_baud_does_not_divide_by_zero() {
        assert_eq!(rtu_frame_silence(0), Duration::from_micros(1750));
    }

    #[test]
    fn timing_comes_from_the_device_map() {
        let settings = ModbusSettings {
            serial: None,
            unit: 1,
            request_delay: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            retries: 2,
            max_registers_per_read: 125,
            max_gap: 8,
            write_function: crate::devicemap::WriteFunction::Multiple,
        };
        let timing = DeviceTiming::from(&settings);
        assert_eq!(timing.request_delay, Duration::from_millis(100));
        assert_eq!(timing.timeout, Duration::from_secs(1));
        assert_eq!(timing.retries, 2);
    }
}
