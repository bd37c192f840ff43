//! Parsers for single values; pure (but for reading a password file), so they are tested
//! directly. Each returns the message part after the field name.

use std::io::Read;
use std::path::Path;

use crate::config::{MAX_CHARGER_ID_LEN, MAX_ID_TAG_LEN, Secret};
use crate::devicemap::{DeviceMap, Parity};

/// A password file larger than this is certainly not a password (and might be a device).
const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

pub(super) fn parse_bool(t: &str) -> Result<bool, String> {
    match t.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{t}` is not true or false")),
    }
}

pub(super) fn parse_f64(t: &str) -> Result<f64, String> {
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{t}` is not a number")),
    }
}

pub(super) fn parse_parity(t: &str) -> Result<Parity, String> {
    match t {
        "none" => Ok(Parity::None),
        "even" => Ok(Parity::Even),
        "odd" => Ok(Parity::Odd),
        _ => Err(format!("`{t}` is not a parity; use none, even or odd")),
    }
}

/// One serial setting of a map, as written in YAML (for comparison and messages).
pub(super) fn serial_field(map: &DeviceMap, field: &str) -> String {
    let Some(s) = map.modbus.serial else {
        return String::new();
    };
    match field {
        "baud" => s.baud.to_string(),
        "parity" => parity_name(s.parity).to_owned(),
        "data_bits" => s.data_bits.to_string(),
        _ => s.stop_bits.to_string(),
    }
}

fn parity_name(p: Parity) -> &'static str {
    match p {
        Parity::None => "none",
        Parity::Even => "even",
        Parity::Odd => "odd",
    }
}

/// The identity is one URL path segment (percent-encoded, so most characters are fine) and,
/// with Basic Auth, the user name.
pub(super) fn check_charger_id(t: &str, profile: u8) -> Result<String, String> {
    if t.is_empty() {
        return Err("is empty; write the charge point identity the central system knows".into());
    }
    let len = t.chars().count();
    if len > MAX_CHARGER_ID_LEN {
        return Err(format!(
            "is {len} characters long; a charge point identity has at most {MAX_CHARGER_ID_LEN}"
        ));
    }
    if t.chars().any(char::is_control) {
        return Err("contains a control character; use printable characters only".into());
    }
    // RFC 7617 §2: the user-id of Basic Auth cannot contain a colon.
    if profile != 3 && t.contains(':') {
        return Err(
            "contains `:`, which Basic Auth (security profiles 1 and 2) cannot send as a user name"
                .into(),
        );
    }
    Ok(t.to_owned())
}

pub(super) fn check_id_tag(t: &str) -> Result<String, String> {
    let len = t.chars().count();
    if t.is_empty() {
        Err("is empty; write the idTag to send, or remove the line".into())
    } else if len > MAX_ID_TAG_LEN {
        Err(format!(
            "is {len} characters long; an OCPP idTag has at most {MAX_ID_TAG_LEN}"
        ))
    } else if t.chars().any(char::is_control) {
        Err("contains a control character".into())
    } else {
        Ok(t.to_owned())
    }
}

/// `ws://` or `wss://`, a host, no credentials (they would end up in logs), no query or
/// fragment (the charger id is appended as a path segment).
pub(super) fn check_csms_url(t: &str) -> Result<String, String> {
    let lower = t.to_ascii_lowercase();
    let rest = if lower.starts_with("wss://") {
        &t[6..]
    } else if lower.starts_with("ws://") {
        &t[5..]
    } else {
        return Err(format!(
            "`{t}` is not a WebSocket URL; write wss://HOST/PATH (or ws:// with security profile 1)"
        ));
    };
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "contains credentials (`user:password@`); remove them and give each charger \
             `password:` or `password_file:` instead"
                .into(),
        );
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err(format!("`{t}` has no host name"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!(
            "`{t}` has a query or fragment; the charger id is appended as a path segment, so \
             the URL must end with its path"
        ));
    }
    Ok(t.to_owned())
}

/// `host:port` or `[v6]:port`; returns the text as written and a normalised key.
pub(super) fn parse_endpoint(t: &str) -> Result<(String, String), String> {
    let usage = "write HOST:PORT, e.g. 192.168.10.21:502";
    if t.contains("://") {
        return Err(format!("`{t}` has a scheme; {usage}"));
    }
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        rest.split_once("]:")
            .ok_or_else(|| format!("`{t}` is not [IPv6]:PORT; e.g. [fd00::21]:502"))?
    } else {
        let (h, p) = t
            .rsplit_once(':')
            .ok_or_else(|| format!("`{t}` has no port; {usage}"))?;
        if h.contains(':') {
            return Err(format!(
                "`{t}`: write an IPv6 address in brackets, e.g. [fd00::21]:502"
            ));
        }
        (h, p)
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{t}` has no valid host; {usage}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((t.to_owned(), format!("{}:{p}", host.to_ascii_lowercase()))),
        _ => Err(format!("`{port}` is not a TCP port (1..=65535); {usage}")),
    }
}

/// The whole file minus one trailing newline (interfaces.md §2). Errors never include content.
pub(super) fn read_password_file(path: &Path) -> Result<Secret, String> {
    check_regular_file(path)?;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_PASSWORD_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE_BYTES {
        return Err(format!(
            "is larger than {MAX_PASSWORD_FILE_BYTES} bytes; it should hold only the password"
        ));
    }
    let mut text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())?;
    if text.ends_with('\n') {
        text.pop();
        // An editor on Windows ends the line with CR LF; that is still one newline.
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err("is empty; write the password into it".into());
    }
    Ok(Secret::new(text))
}

/// Opening a FIFO or a device would block or read forever; only regular files (or links to
/// them) are read.
pub(super) fn check_regular_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err("is not a regular file".to_owned()),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised_for_comparison() {
        assert_eq!(
            parse_endpoint("Box.LAN:502"),
            Ok(("Box.LAN:502".into(), "box.lan:502".into()))
        );
        assert_eq!(
            parse_endpoint("[fd00::21]:502").map(|e| e.1),
            Ok("fd00::21:502".into())
        );
        assert!(parse_endpoint("box.lan").is_err());
        assert!(parse_endpoint("fd00::21:502").is_err());
        assert!(parse_endpoint("box:0").is_err());
        assert!(parse_endpoint(":502").is_err());
        assert!(parse_endpoint("tcp://box:502").is_err());
    }

    #[test]
    fn csms_urls_need_scheme_host_and_no_credentials() {
        assert!(check_csms_url("wss://csms.example.com/ocpp").is_ok());
        assert!(check_csms_url("WS://10.0.0.1:8180/steve/websocket/CentralSystemService").is_ok());
        assert!(check_csms_url("https://csms.example.com/ocpp").is_err());
        assert!(check_csms_url("wss:///ocpp").is_err());
        assert!(check_csms_url("wss://u:p@csms.example.com/ocpp").is_err());
        assert!(check_csms_url("wss://csms.example.com/ocpp?x=1").is_err());
    }
}
