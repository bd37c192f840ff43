//! One test per validation rule of interfaces.md §3: each asserts the message (with its hint)
//! and the line:column it points at.

mod common;

use std::time::Duration;

use chargebridge::devicemap::{
    IdentityValue, KeepaliveAction, KeepaliveInterval, PollClass, StatusKey, StringEncoding, Table,
    ValueType, WordOrder, WriteFunction, load_file, load_str, resolve,
};
use common::map_errors::{HEAD, errors, one, one_at};

/// A valid map with `registers` and optional extra sections appended (registers start on line 4).
fn map(registers: &str, rest: &str) -> String {
    format!("{HEAD}registers:\n{registers}status: {{ register: state, map: {{ 2: A }} }}\n{rest}")
}

#[test]
fn a_minimal_map_gets_the_documented_defaults() {
    let m = load_str("mini", "t.yaml", &map("  state: { input: 5 }\n", "")).unwrap();
    assert_eq!(m.name, "mini");
    assert_eq!(m.connectors, 1);
    assert_eq!(m.modbus.serial, None);
    assert_eq!(m.modbus.unit, 1);
    assert_eq!(m.modbus.request_delay, Duration::ZERO);
    assert_eq!(m.modbus.timeout, Duration::from_secs(1));
    assert_eq!(m.modbus.retries, 2);
    assert_eq!(m.modbus.max_registers_per_read, 125);
    assert_eq!(m.modbus.max_gap, 8);
    assert_eq!(m.modbus.write_function, WriteFunction::Multiple);
    let r = &m.registers[0];
    assert_eq!(
        (r.table, r.address, r.ty, r.words),
        (Table::Input, 5, ValueType::U16, 1)
    );
    assert_eq!(
        (r.word_order, r.encoding),
        (WordOrder::Big, StringEncoding::Ascii)
    );
    assert_eq!((r.scale, r.offset, r.mask, r.shift), (1.0, 0.0, None, 0));
    assert_eq!(r.poll, PollClass::Always);
    assert_eq!(
        m.status.map,
        vec![(
            StatusKey::Number(2),
            chargebridge::devicemap::Iec61851State::A
        )]
    );
    assert!(m.keepalive.is_none() && m.init.is_empty() && m.measurands.is_empty());
}

#[test]
fn every_field_of_the_format_is_read() {
    let yaml = format!(
        "{HEAD}connectors: 2
modbus:
  serial: {{ baud: 9600, parity: odd, data_bits: 7, stop_bits: 2 }}
  unit: 255
  request_delay: 20ms
  timeout: 500ms
  retries: 0
  max_registers_per_read: 60
  max_gap: 0
  write_function: 6
registers:
  state: {{ holding: 0x10, mask: 0xFF00, shift: 8 }}
  temp: {{ input: 1, type: i16, scale: 0.1, offset: -40, unavailable: [-1], poll: slow }}
  energy: {{ input: 2, type: u32, word_order: little }}
  serial: {{ input: 20, type: string, length: 5, encoding: ascii-swapped, poll: once }}
  mode: {{ holding: 30, type: string, length: 1, encoding: utf16 }}
  enable: {{ coil: 400 }}
  lim: {{ holding: 40, type: f32 }}
  ka: {{ holding: 50 }}
identity:
  firmware: \"1.2.3\"
  serial: {{ register: serial, format: \"SN-{{}}\" }}
status: {{ register: mode, map: {{ \"A\": A, \"B\": B1, \"C\": C2 }} }}
measurands:
  Temperature: temp
  Energy.Active.Import.Register: energy
control:
  current_limit: {{ register: lim, max: 32 }}
  enable: {{ register: enable, on_value: 1, off_value: 0 }}
  refresh: 25s
  failsafe_current: {{ register: lim }}
init:
  - {{ register: ka, value: 7 }}
keepalive:
  every: 5s
  write: {{ register: ka, value: 0x55AA }}
"
    );
    let m = load_str("full", "t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.connectors, 2);
    let s = m.modbus.serial.unwrap();
    assert_eq!((s.baud, s.data_bits, s.stop_bits), (9600, 7, 2));
    assert_eq!(m.modbus.unit, 255);
    assert_eq!(m.modbus.request_delay, Duration::from_millis(20));
    assert_eq!(m.modbus.write_function, WriteFunction::Single);
    assert_eq!((m.modbus.max_registers_per_read, m.modbus.max_gap), (60, 0));
    let state = &m.registers[0];
    assert_eq!(
        (state.address, state.mask, state.shift),
        (16, Some(0xFF00), 8)
    );
    let temp = &m.registers[1];
    assert_eq!(
        temp.unavailable,
        vec![0xFFFF],
        "-1 of an i16 is the raw word 0xFFFF"
    );
    assert_eq!((temp.offset, temp.poll), (-40.0, PollClass::Slow));
    assert_eq!(m.registers[2].word_order, WordOrder::Little);
    assert_eq!(
        (m.registers[3].words, m.registers[3].encoding),
        (5, StringEncoding::AsciiSwapped)
    );
    assert_eq!(m.registers[5].table, Table::Coil);
    assert_eq!(
        m.identity.firmware,
        Some(IdentityValue::Literal("1.2.3".into()))
    );
    assert!(
        matches!(&m.identity.serial, Some(IdentityValue::Register { format: Some(f), .. }) if f == "SN-{}")
    );
    assert_eq!(m.status.map[1].0, StatusKey::Text("B".into()));
    let cl = m.control.current_limit.as_ref().unwrap();
    assert_eq!(
        (cl.min, cl.max, cl.off_value),
        (6.0, 32.0, 0.0),
        "min defaults to 6 A"
    );
    assert_eq!(m.control.refresh, Some(Duration::from_secs(25)));
    assert!(
        matches!(m.keepalive.as_ref().unwrap().interval, KeepaliveInterval::Every(d) if d == Duration::from_secs(5))
    );
    assert!(
        matches!(&m.keepalive.as_ref().unwrap().action, KeepaliveAction::Write(w) if w.value == 21930.0)
    );
}

// ---- YAML itself ----

#[test]
fn a_yaml_syntax_error_is_located() {
    one(
        &format!("{HEAD}registers:\n  state: {{ input: 5\n"),
        4,
        "{",
        &["YAML: ", "unclosed"],
    );
}

#[test]
fn an_empty_file_says_what_to_start_with() {
    one_at("", 1, 1, &["empty", "vendor"]);
}

#[test]
fn yaml_1_1_boolean_keys_are_rejected_with_a_hint() {
    let yaml = map(
        "  state: { input: 5 }\n  run: { coil: 1 }\n",
        "control:\n  enable: { register: run, on: 1 }\n",
    );
    one(
        &yaml,
        8,
        "on:",
        &["the key `on` is a boolean to YAML 1.1 tools", "on_value"],
    );
}

#[test]
fn a_register_named_like_a_yaml_1_1_boolean() {
    one(
        &map("  state: { input: 5 }\n  Off: { coil: 1 }\n", ""),
        5,
        "Off",
        &["registers: the key `Off` is a boolean to YAML 1.1 tools"],
    );
}

#[test]
fn the_neutral_phase_n_is_not_a_boolean() {
    let yaml = map(
        "  state: { input: 5 }\n  i_n: { input: 6 }\n",
        "measurands:\n  Current.Import: { N: i_n }\n",
    );
    let m = load_str("t", "t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.measurands[0].sources, vec![(Some("N".to_owned()), 1)]);
}

#[test]
fn a_yaml_1_1_boolean_where_a_number_belongs() {
    one(
        &map(
            "  state: { input: 5 }\n  run: { coil: 1 }\n",
            "init:\n  - { register: run, value: on }\n",
        ),
        8,
        "on }",
        &["init[0].value: expected a number", "write 1 or 0"],
    );
}

#[test]
fn a_boolean_status_key_is_rejected_with_a_hint() {
    let yaml = format!(
        "{HEAD}registers:\n  state: {{ input: 5 }}\nstatus: {{ register: state, map: {{ yes: A }} }}\n"
    );
    one(
        &yaml,
        5,
        "yes",
        &[
            "the key `yes` is a boolean to YAML 1.1 tools",
            "register `state` is numeric",
        ],
    );
}

// ---- unknown fields ----

#[test]
fn unknown_top_level_field() {
    one(
        &map("  state: { input: 5 }\n", "vendr: X\n"),
        6,
        "vendr",
        &["unknown field `vendr`", "allowed here"],
    );
}

#[test]
fn unknown_register_field_suggests_the_right_one() {
    one(
        &map("  state: { input: 5, sacle: 0.1 }\n", ""),
        4,
        "sacle",
        &["unknown field `sacle`", "did you mean `scale`?"],
    );
}

#[test]
fn unknown_modbus_field() {
    one(
        &map("  state: { input: 5 }\n", "modbus: { baud: 9600 }\n"),
        6,
        "baud",
        &["modbus: unknown field `baud`"],
    );
}

// ---- tables and addresses ----

#[test]
fn a_register_needs_one_table() {
    one(
        &map("  state: { type: u16 }\n", ""),
        4,
        "state",
        &["exactly one table", "input: 5"],
    );
}

#[test]
fn a_register_in_two_tables() {
    one(
        &map("  state: { input: 5, holding: 5 }\n", ""),
        4,
        "holding",
        &["both `input` and `holding`", "keep one"],
    );
}

#[test]
fn an_address_beyond_65535() {
    one(
        &map(
            "  state: { input: 5 }\n  e: { input: 65535, type: u32 }\n",
            "",
        ),
        5,
        "65535",
        &["end at 65536", "past the last address 65535"],
    );
}

#[test]
fn an_address_that_is_not_a_number() {
    one(
        &map("  state: { input: five }\n", ""),
        4,
        "five",
        &["registers.state.input", "whole number"],
    );
}

#[test]
fn overlapping_registers_in_one_table() {
    one(
        &map(
            "  state: { input: 5 }\n  energy: { input: 4, type: u32 }\n",
            "",
        ),
        5,
        "energy",
        &["registers.energy", "overlaps `state`", "line 4"],
    );
}

#[test]
fn the_same_address_in_different_tables_is_fine() {
    load_str(
        "t",
        "t.yaml",
        &map("  state: { input: 5 }\n  lim: { holding: 5 }\n", ""),
    )
    .unwrap();
}

// ---- types ----

#[test]
fn a_string_needs_a_length() {
    one(
        &map(
            "  state: { input: 5 }\n  sn: { input: 10, type: string }\n",
            "",
        ),
        5,
        "sn",
        &["needs `length`"],
    );
}

#[test]
fn length_on_a_number() {
    one(
        &map("  state: { input: 5, length: 2 }\n", ""),
        4,
        "length",
        &["`length` applies only to type string", "remove"],
    );
}

#[test]
fn encoding_on_a_number() {
    one(
        &map("  state: { input: 5, encoding: ascii }\n", ""),
        4,
        "encoding",
        &["`encoding` applies only to type string"],
    );
}

#[test]
fn mask_on_a_float() {
    one(
        &map(
            "  state: { input: 5 }\n  p: { input: 6, type: f32, mask: 0xFF }\n",
            "",
        ),
        5,
        "mask",
        &["`mask` applies only to integer types, not f32"],
    );
}

#[test]
fn shift_on_a_string() {
    one(
        &map(
            "  state: { input: 5 }\n  s: { input: 6, type: string, length: 2, shift: 8 }\n",
            "",
        ),
        5,
        "shift",
        &["`shift` applies only to integer types, not string"],
    );
}

#[test]
fn a_mask_wider_than_the_register() {
    one(
        &map("  state: { input: 5, mask: 0x1FFFF }\n", ""),
        4,
        "0x1FFFF",
        &["beyond the register's 16 bits"],
    );
}

#[test]
fn coils_hold_only_u16() {
    one(
        &map(
            "  state: { input: 5 }\n  on_off: { coil: 3, type: u32 }\n",
            "",
        ),
        5,
        "u32",
        &["a coil holds one bit", "u16"],
    );
}

#[test]
fn an_unknown_type_suggests_one() {
    one(
        &map("  state: { input: 5, type: uint16 }\n", ""),
        4,
        "uint16",
        &["`uint16` is not allowed", "u16"],
    );
}

#[test]
fn scale_zero() {
    one(
        &map("  state: { input: 5, scale: 0 }\n", ""),
        4,
        "0 }",
        &["scale: must not be 0"],
    );
}

#[test]
fn scale_not_finite() {
    // YAML's .inf: rejected while parsing, still located at the value.
    one(
        &map("  state: { input: 5, scale: .inf }\n", ""),
        4,
        ".inf",
        &[],
    );
}

#[test]
fn a_register_wider_than_one_read() {
    let yaml = format!(
        "{HEAD}modbus: {{ max_registers_per_read: 10 }}\nregisters:\n  state: {{ input: 5 }}\n  sn: {{ input: 20, type: string, length: 16 }}\nstatus: {{ register: state, map: {{ 2: A }} }}\n"
    );
    one(
        &yaml,
        6,
        "sn",
        &["occupies 16 registers", "max_registers_per_read is 10"],
    );
}

#[test]
fn a_bad_poll_class() {
    one(
        &map("  state: { input: 5, poll: sometimes }\n", ""),
        4,
        "sometimes",
        &["`sometimes` is not allowed", "always, slow, once"],
    );
}

#[test]
fn an_unavailable_value_that_does_not_fit() {
    one(
        &map("  state: { input: 5, unavailable: [0x10000] }\n", ""),
        4,
        "0x10000",
        &["out of range"],
    );
}

// ---- references ----

#[test]
fn status_pointing_at_an_unknown_register() {
    let yaml = format!(
        "{HEAD}registers:\n  state: {{ input: 5 }}\nstatus: {{ register: stat, map: {{ 2: A }} }}\n"
    );
    one(
        &yaml,
        5,
        "stat,",
        &["unknown register `stat`", "did you mean `state`?"],
    );
}

#[test]
fn a_measurand_pointing_at_an_unknown_register() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "measurands:\n  Power.Active.Import: pwr\n",
        ),
        7,
        "pwr",
        &["unknown register `pwr`", "declared registers: state"],
    );
}

#[test]
fn a_measurand_pointing_at_a_string_register() {
    one(
        &map(
            "  state: { input: 5 }\n  sn: { input: 9, type: string, length: 2 }\n",
            "measurands:\n  Voltage: sn\n",
        ),
        8,
        "sn",
        &["`sn`", "is a string"],
    );
}

#[test]
fn identity_pointing_at_an_unknown_register() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "identity:\n  firmware: { register: fw }\n",
        ),
        7,
        "fw",
        &["identity.firmware.register", "unknown register `fw`"],
    );
}

#[test]
fn keepalive_reading_an_unknown_register() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "keepalive: { every: 15s, read: stat }\n",
        ),
        6,
        "stat }",
        &["keepalive.read", "unknown register `stat`"],
    );
}

#[test]
fn keepalive_every_from_an_unknown_register() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "keepalive:\n  every_from: { register: wd, unit: ms, divide: 4 }\n  read: state\n",
        ),
        7,
        "wd",
        &["keepalive.every_from.register", "unknown register `wd`"],
    );
}

// ---- writable registers ----

#[test]
fn a_current_limit_on_an_input_register() {
    one(
        &map(
            "  state: { input: 5 }\n  lim: { input: 6 }\n",
            "control:\n  current_limit: { register: lim, max: 16 }\n",
        ),
        8,
        "lim,",
        &[
            "control.current_limit.register",
            "read-only input register",
            "holding",
        ],
    );
}

#[test]
fn an_enable_flag_on_a_discrete_input() {
    one(
        &map(
            "  state: { input: 5 }\n  en: { discrete: 6 }\n",
            "control:\n  enable: { register: en }\n",
        ),
        8,
        "en }",
        &["read-only discrete register"],
    );
}

#[test]
fn init_writing_an_input_register() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "init:\n  - { register: state, value: 4 }\n",
        ),
        7,
        "state",
        &["init[0].register", "read-only input"],
    );
}

#[test]
fn keepalive_writing_an_input_register() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "keepalive: { every: 5s, write: { register: state, value: 1 } }\n",
        ),
        6,
        "state",
        &["keepalive.write.register", "read-only input"],
    );
}

#[test]
fn a_failsafe_register_that_is_not_writable() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "control:\n  failsafe_current: { register: state }\n",
        ),
        7,
        "state",
        &["control.failsafe_current.register", "read-only input"],
    );
}

#[test]
fn a_write_value_the_register_cannot_hold() {
    one(
        &map(
            "  state: { input: 5 }\n  standby: { holding: 258 }\n",
            "init:\n  - { register: standby, value: 70000 }\n",
        ),
        8,
        "70000",
        &["init[0].value", "70000", "too large"],
    );
}

// ---- status ----

#[test]
fn a_status_state_outside_iec_61851() {
    one(
        &map("  state: { input: 5 }\n", "").replace("2: A", "2: A, 3: X1"),
        5,
        "X1",
        &[
            "`X1` is not an IEC 61851 state",
            "A, B1, B2, C1, C2, D1, D2, E, F",
        ],
    );
}

#[test]
fn a_status_state_that_is_almost_right() {
    one(
        &map("  state: { input: 5 }\n", "").replace("2: A", "2: c2"),
        5,
        "c2",
        &["did you mean `C2`?"],
    );
}

#[test]
fn string_keys_for_a_numeric_status_register() {
    one(
        &map("  state: { input: 5 }\n", "").replace("2: A", "\"2\": A"),
        5,
        "\"2\"",
        &["key \"2\" is text", "numeric", "without quotes: 2"],
    );
}

#[test]
fn number_keys_for_a_string_status_register() {
    let yaml = format!(
        "{HEAD}registers:\n  state: {{ input: 5, type: string, length: 1 }}\nstatus: {{ register: state, map: {{ 2: A }} }}\n"
    );
    one(
        &yaml,
        5,
        "2: A",
        &["key 2 is a number", "is a string", "quote it: \"2\""],
    );
}

#[test]
fn the_same_status_value_twice() {
    one(
        &map("  state: { input: 5 }\n", "").replace("2: A", "2: A, 0x02: B1"),
        5,
        "0x02",
        &["`0x02` is given twice", "keep one"],
    );
}

#[test]
fn a_map_without_status() {
    one(
        &format!("{HEAD}registers:\n  state: {{ input: 5 }}\n"),
        1,
        "vendor",
        &["missing `status:`"],
    );
}

// ---- control ----

#[test]
fn current_limit_min_above_max() {
    one(
        &map(
            "  state: { input: 5 }\n  lim: { holding: 6 }\n",
            "control:\n  current_limit: { register: lim, min: 16, max: 6 }\n",
        ),
        8,
        "16",
        &["min 16 A is greater than max 6 A", "swap"],
    );
}

#[test]
fn current_limit_without_max() {
    one(
        &map(
            "  state: { input: 5 }\n  lim: { holding: 6 }\n",
            "control:\n  current_limit: { register: lim }\n",
        ),
        8,
        "current_limit",
        &["missing `max`"],
    );
}

// ---- measurands ----

#[test]
fn an_unknown_measurand() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "measurands:\n  Energy.Active.Import: state\n",
        ),
        7,
        "Energy",
        &[
            "not an OCPP 1.6 measurand",
            "did you mean `Energy.Active.Import.Register`?",
        ],
    );
}

#[test]
fn an_unknown_phase() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "measurands:\n  Voltage: { L1N: state }\n",
        ),
        7,
        "L1N",
        &["`L1N` is not an OCPP 1.6 phase", "L1-N"],
    );
}

// ---- modbus ----

#[test]
fn serial_parity() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "modbus: { serial: { baud: 9600, parity: e } }\n",
        ),
        6,
        "e }",
        &["modbus.serial.parity", "none, even, odd"],
    );
}

#[test]
fn serial_data_bits() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "modbus: { serial: { baud: 9600, data_bits: 9 } }\n",
        ),
        6,
        "9 }",
        &["modbus.serial.data_bits", "7, 8"],
    );
}

#[test]
fn serial_stop_bits() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "modbus: { serial: { baud: 9600, stop_bits: 3 } }\n",
        ),
        6,
        "3 }",
        &["modbus.serial.stop_bits", "1, 2"],
    );
}

#[test]
fn serial_without_baud() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "modbus: { serial: { parity: even } }\n",
        ),
        6,
        "serial",
        &["missing `baud`"],
    );
}

#[test]
fn write_function_other_than_6_or_16() {
    one(
        &map("  state: { input: 5 }\n", "modbus: { write_function: 5 }\n"),
        6,
        "5 }",
        &["modbus.write_function", "6, 16"],
    );
}

#[test]
fn max_registers_per_read_zero() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "modbus: { max_registers_per_read: 0 }\n",
        ),
        6,
        "0 }",
        &["out of range", "1..=125"],
    );
}

#[test]
fn max_registers_per_read_above_the_modbus_limit() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "modbus: { max_registers_per_read: 126 }\n",
        ),
        6,
        "126",
        &["126 is out of range", "1..=125"],
    );
}

#[test]
fn unit_zero_is_broadcast() {
    one(
        &map("  state: { input: 5 }\n", "modbus: { unit: 0 }\n"),
        6,
        "0 }",
        &["modbus.unit", "1..=255"],
    );
}

#[test]
fn a_duration_without_unit() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "modbus: { request_delay: 100 }\n",
        ),
        6,
        "100",
        &["needs a unit", "100ms"],
    );
}

#[test]
fn a_duration_with_an_unknown_unit() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "modbus: { timeout: 2 fortnights }\n",
        ),
        6,
        "2 fortnights",
        &["modbus.timeout", "unknown unit"],
    );
}

#[test]
fn connectors_zero() {
    one(
        &map("  state: { input: 5 }\n", "connectors: 0\n"),
        6,
        "0",
        &["connectors", "out of range"],
    );
}

// ---- keepalive ----

#[test]
fn keepalive_needs_exactly_one_interval() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "keepalive: { every: 5s, every_from: { register: state, unit: s }, read: state }\n",
        ),
        6,
        "every_from",
        &["either `every` or `every_from`, not both"],
    );
}

#[test]
fn keepalive_needs_an_action() {
    one(
        &map("  state: { input: 5 }\n", "keepalive: { every: 5s }\n"),
        6,
        "keepalive",
        &["missing `read: NAME` or `write"],
    );
}

// ---- identity, names ----

#[test]
fn vendor_longer_than_ocpp_allows() {
    one(
        "vendor: A vendor name far too long\nmodel: M\nregisters:\n  state: { input: 5 }\nstatus: { register: state, map: { 2: A } }\n",
        1,
        "A vendor",
        &["longer than 20 characters", "chargePointVendor"],
    );
}

#[test]
fn identity_format_without_placeholder() {
    one(
        &map(
            "  state: { input: 5 }\n",
            "identity:\n  firmware: { register: state, format: \"v\" }\n",
        ),
        7,
        "\"v\"",
        &["has no `{}`"],
    );
}

// ---- all problems at once ----

#[test]
fn every_problem_is_reported_in_file_order() {
    let yaml = format!(
        "{HEAD}registers:\n  state: {{ input: 5, sacle: 1 }}\n  lim: {{ input: 6 }}\n  sn: {{ input: 9, type: string }}\nstatus: {{ register: state, map: {{ 2: Z }} }}\ncontrol:\n  current_limit: {{ register: lim, min: 9, max: 6 }}\n"
    );
    let errs = errors(&yaml);
    let places: Vec<(u64, u64)> = errs.iter().map(|d| (d.line, d.column)).collect();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        places,
        vec![(4, 22), (6, 3), (7, 38), (9, 30), (9, 40)],
        "{}",
        text.join("\n")
    );
    assert!(text[0].starts_with("t.yaml:4:22: "), "{}", text[0]);
}

// ---- files and names ----

#[test]
fn load_file_names_the_map_after_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme-box.yaml");
    std::fs::write(&path, map("  state: { input: 5 }\n", "")).unwrap();
    let m = load_file(&path).unwrap();
    assert_eq!(m.name, "acme-box");
}

#[test]
fn load_file_reports_a_missing_file() {
    let d = load_file(std::path::Path::new("/nonexistent/x.yaml")).unwrap_err();
    assert_eq!(d.0.len(), 1);
    assert!(
        d.0[0]
            .to_string()
            .starts_with("/nonexistent/x.yaml: cannot read"),
        "{d}"
    );
}

#[test]
fn problems_in_a_file_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, map("  state: { input: 5, scale: 0 }\n", "")).unwrap();
    let d = load_file(&path).unwrap_err();
    assert_eq!(d.0[0].file, path.display().to_string());
    assert_eq!((d.0[0].line, d.0[0].column), (4, 29));
}

#[test]
fn resolve_prefers_map_dirs_over_built_ins() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = map("  state: { input: 5 }\n", "").replace("vendor: V", "vendor: Local");
    std::fs::write(dir.path().join("heidelberg-energy-control.yaml"), yaml).unwrap();
    let local = resolve("heidelberg-energy-control", &[dir.path().to_path_buf()]).unwrap();
    assert_eq!(local.vendor, "Local");
    let builtin = resolve("heidelberg-energy-control", &[]).unwrap();
    assert_eq!(builtin.vendor, "Heidelberg");
}

#[test]
fn resolve_treats_slashes_and_yaml_suffixes_as_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.yml");
    std::fs::write(&path, map("  state: { input: 5 }\n", "")).unwrap();
    assert_eq!(resolve(path.to_str().unwrap(), &[]).unwrap().name, "x");
    // A bare file name with .yaml is a path (relative to the working directory), not a map name.
    let err = resolve("heidelberg-energy-control.yaml", &[]).unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn resolve_lists_the_available_maps_for_an_unknown_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("my-box.yaml"), "x").unwrap();
    let err = resolve("alfen-eve", &[dir.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown device map `alfen-eve`"), "{err}");
    assert!(err.contains("heidelberg-energy-control"), "{err}");
    assert!(err.contains("my-box"), "{err}");
}

#[test]
fn a_bad_address_does_not_also_report_an_overlap() {
    one(
        &map("  state: { input: 0 }\n  p: { input: -3 }\n", ""),
        5,
        "-3",
        &["registers.p.input: -3 is out of range", "0..=65535"],
    );
}
