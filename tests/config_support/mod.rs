//! Shared helpers for the configuration tests: hand-built device maps, a fake environment.

#![allow(dead_code)] // each test file uses a different part

use std::sync::Arc;
use std::time::Duration;

use chargebridge::config::{self, Config};
use chargebridge::devicemap::{
    ControlSpec, CurrentLimitSpec, DeviceMap, Identity, Iec61851State, ModbusSettings, Parity,
    Register, SerialSettings, StatusKey, StatusSpec, Table, ValueType, WriteFunction,
};
use chargebridge::diag::{Diagnostic, Diagnostics};

/// The password `${CB_0001_PASSWORD}` expands to; must never show up in output.
pub const SECRET: &str = "pw-0001-Zq8x!kT3vB";
/// The file label used by [`load`].
pub const FILE: &str = "gw.yaml";

/// A u16 register.
fn reg(name: &str, table: Table, address: u16, scale: f64) -> Register {
    Register {
        scale,
        ..Register::new(name, table, address, ValueType::U16)
    }
}

/// A small but complete map: status register, current limit (min 6 A), failsafe register.
pub fn map(
    name: &str,
    serial: Option<SerialSettings>,
    unit: u8,
    max: Option<f64>,
) -> Arc<DeviceMap> {
    Arc::new(DeviceMap {
        name: name.to_owned(),
        vendor: "Test".to_owned(),
        model: name.to_owned(),
        connectors: 1,
        modbus: ModbusSettings {
            serial,
            unit,
            request_delay: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            retries: 2,
            max_registers_per_read: 125,
            max_gap: 8,
            write_function: WriteFunction::Multiple,
        },
        registers: vec![
            reg("state", Table::Input, 5, 1.0),
            reg("limit", Table::Holding, 261, 0.1),
            reg("failsafe", Table::Holding, 262, 0.1),
        ],
        identity: Identity::default(),
        status: StatusSpec {
            register: 0,
            map: vec![(StatusKey::Number(2), Iec61851State::A)],
            vehicle: None,
        },
        measurands: Vec::new(),
        control: ControlSpec {
            power_limit: None,
            current_limit: max.map(|max| CurrentLimitSpec {
                register: 1,
                min: 6.0,
                max,
                off_value: 0.0,
            }),
            enable: None,
            refresh: None,
            failsafe_current: Some(2),
        },
        init: Vec::new(),
        keepalive: None,
    })
}

pub fn serial(baud: u32, parity: Parity) -> Option<SerialSettings> {
    Some(SerialSettings {
        baud,
        parity,
        data_bits: 8,
        stop_bits: 1,
    })
}

/// Device maps by name, as a map loader would hand them out.
pub fn resolve(name: &str) -> Result<Arc<DeviceMap>, String> {
    match name {
        "heidelberg-energy-control" => Ok(map(name, serial(19200, Parity::Even), 1, Some(16.0))),
        "alfen-eve-single" => Ok(map(name, None, 1, Some(32.0))),
        "slow-box" => Ok(map(name, serial(9600, Parity::None), 1, Some(32.0))),
        "no-limit-box" => Ok(map(name, serial(19200, Parity::Even), 1, None)),
        "broadcast-box" => Ok(map(name, serial(19200, Parity::Even), 0, Some(16.0))),
        _ => Err(format!(
            "no built-in device map `{name}` and no file of that name"
        )),
    }
}

/// The environment the tests run in.
pub fn env(name: &str) -> Option<String> {
    match name {
        "CB_0001_PASSWORD" => Some(SECRET.to_owned()),
        "CB_0002_PASSWORD" => Some("pw-0002-Lm4nR7wQ".to_owned()),
        "EMPTY_ONE" => Some(String::new()),
        "CSMS_HOST" => Some("csms.example.com".to_owned()),
        _ => None,
    }
}

/// Loads YAML text with the fake environment and maps.
pub fn load(yaml: &str) -> Result<Config, Diagnostics> {
    config::load_str(FILE, yaml, &env, &resolve)
}

/// The problems found in YAML text (panics if it loads).
pub fn errors(yaml: &str) -> Vec<Diagnostic> {
    match load(yaml) {
        Ok(_) => panic!("expected the configuration to be rejected:\n{yaml}"),
        Err(d) => d.0,
    }
}

/// The one problem found in YAML text, checked to be at `line:col` and to mention `needle`.
pub fn assert_one_error(yaml: &str, line: u64, column: u64, needle: &str) -> Diagnostic {
    let errs = errors(yaml);
    assert_eq!(errs.len(), 1, "expected exactly one problem, got {errs:#?}");
    let d = errs.into_iter().next().expect("one");
    assert_eq!(d.file, FILE);
    assert_eq!(
        (d.line, d.column),
        (line, column),
        "wrong position for `{}`",
        d.message
    );
    assert!(
        d.message.contains(needle),
        "message `{}` does not mention `{needle}`",
        d.message
    );
    d
}

/// A valid configuration with one RTU charger; tests append or alter lines.
/// Line numbers: 1 csms, 2 url, 3 buses, 4 rs485-1, 5 port, 6 chargers, 7 `- id`, 8 device_map,
/// 9 bus, 10 unit, 11 password.
pub const BASE: &str = "\
csms:
  url: wss://csms.example.com/ocpp
buses:
  rs485-1:
    port: /dev/ttyUSB0
chargers:
  - id: CB-0001
    device_map: heidelberg-energy-control
    bus: rs485-1
    unit: 1
    password: ${CB_0001_PASSWORD}
";
