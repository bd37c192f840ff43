//! The errors a bus request can end with.

/// Why a Modbus request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The device did not answer within the timeout (after all retries), or the unit is in
    /// backoff after repeated timeouts. Usual causes: wrong unit id, wrong serial settings,
    /// wiring, or the device is switched off.
    #[error(
        "no reply from the Modbus device within the timeout (check unit id, serial settings, wiring and power)"
    )]
    Timeout,
    /// The device answered with a Modbus exception (Modbus Application Protocol v1.1b3 §7).
    #[error("the Modbus device answered with exception {0:#04x} ({name})", name = exception_name(*.0))]
    Exception(u8),
    /// The connection could not be opened, broke, or the reply was garbled.
    #[error("Modbus transport error: {0}")]
    Transport(String),
    /// The bus task has stopped (shutdown), so the request was not served.
    #[error("the Modbus bus task has stopped")]
    Closed,
}

/// The name of a Modbus exception code (Modbus Application Protocol v1.1b3 §7).
#[must_use]
pub fn exception_name(code: u8) -> &'static str {
    match code {
        0x01 => "illegal function",
        0x02 => "illegal data address",
        0x03 => "illegal data value",
        0x04 => "server device failure",
        0x05 => "acknowledge",
        0x06 => "server device busy",
        0x08 => "memory parity error",
        0x0A => "gateway path unavailable",
        0x0B => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_message_names_the_code() {
        let text = BusError::Exception(2).to_string();
        assert!(text.contains("0x02"), "{text}");
        assert!(text.contains("illegal data address"), "{text}");
        assert!(
            BusError::Exception(0x42)
                .to_string()
                .contains("unknown exception")
        );
    }
}
