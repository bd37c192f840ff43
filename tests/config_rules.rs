//! One test per validation rule of interfaces.md §2: the message says what to change and the
//! position points at the offending value.

mod config_support;

use std::io::Write;

use chargebridge::config::{AuthMode, Link, LogFormat};
use chargebridge::devicemap::Parity;
use config_support::{BASE, SECRET, assert_one_error, errors, load};

fn with_second(charger: &str) -> String {
    format!("{BASE}{charger}")
}

#[test]
fn base_configuration_loads_with_defaults() {
    let cfg = load(BASE).expect("valid");
    assert_eq!(cfg.path.to_str(), Some("gw.yaml"));
    assert_eq!(cfg.state_dir.to_str(), Some("/var/lib/chargebridge"));
    assert_eq!(cfg.http.listen.to_string(), "127.0.0.1:9464");
    assert!(!cfg.http.allow_remote);
    assert_eq!(cfg.log.format, LogFormat::Text);
    assert_eq!(cfg.log.filter, "info");
    assert_eq!(cfg.device_map_dirs.len(), 1);
    assert_eq!(
        cfg.device_map_dirs[0].to_str(),
        Some("/etc/chargebridge/device-maps")
    );
    assert_eq!(cfg.csms.security_profile, 2);
    assert_eq!(cfg.csms.ca_file, None);
    let c = &cfg.chargers[0];
    assert_eq!(c.id, "CB-0001");
    assert_eq!(c.link, Link::Bus("rs485-1".into()));
    assert_eq!(c.unit, 1);
    assert_eq!(c.password.as_ref().map(|p| p.expose()), Some(SECRET));
    assert_eq!(c.phases, 3);
    assert!((c.voltage - 230.0).abs() < 1e-9);
    assert!(
        (c.max_current - 16.0).abs() < 1e-9,
        "map max is the default"
    );
    assert_eq!(c.failsafe_current, None);
    assert_eq!(c.poll_interval.as_millis(), 1000);
    assert_eq!(c.authorization.mode, AuthMode::Free);
    assert_eq!(c.authorization.id_tag, "CB-0001");
    assert_eq!(
        cfg.csms.url_for("CB 0001/x"),
        "wss://csms.example.com/ocpp/CB%200001%2Fx"
    );
}

#[test]
fn yaml_syntax_error_is_located() {
    let yaml = BASE.replace("    unit: 1\n", "    unit: [1\n");
    assert_one_error(&yaml, 10, 11, "expected a single value");
    let yaml = BASE.replace("    unit: 1\n", "   unit: 1\n");
    assert_one_error(&yaml, 10, 4, "did not find expected '-'");
    let errs = errors("csms: wss://csms.example.com/ocpp\n");
    assert_eq!((errs[0].line, errs[0].column), (1, 7));
    assert!(errs[0].message.contains("`key: value`"), "{errs:?}");
}

#[test]
fn duplicate_keys_are_rejected() {
    let yaml = BASE.to_owned() + "    unit: 2\n";
    assert_one_error(&yaml, 12, 5, "duplicate mapping key `unit`");
}

#[test]
fn unknown_field_is_located_and_named() {
    let yaml = BASE.replace("    unit: 1\n", "    unit: 1\n    max_curent: 10\n");
    assert_one_error(&yaml, 11, 5, "unknown field `max_curent`");
}

#[test]
fn unknown_top_level_field_is_located() {
    let yaml = format!("{BASE}loglevel: debug\n");
    assert_one_error(&yaml, 12, 1, "unknown field `loglevel`");
}

#[test]
fn duplicate_charger_ids_are_rejected() {
    let yaml = with_second(
        "  - id: cb-0001\n    device_map: heidelberg-energy-control\n    bus: rs485-1\n    unit: 2\n",
    );
    assert_one_error(&yaml, 12, 9, "already used at line 7");
}

#[test]
fn two_chargers_with_one_bus_and_unit_are_rejected() {
    let yaml = with_second(
        "  - id: CB-0002\n    device_map: heidelberg-energy-control\n    bus: rs485-1\n    unit: 1\n",
    );
    assert_one_error(&yaml, 15, 11, "unit 1 on bus `rs485-1` is already used");
}

#[test]
fn default_units_clash_too() {
    let yaml = BASE.replace("    unit: 1\n", "")
        + "  - id: CB-0002\n    device_map: heidelberg-energy-control\n    bus: rs485-1\n";
    assert_one_error(&yaml, 13, 10, "the device map's default unit");
}

#[test]
fn two_chargers_at_one_tcp_endpoint_and_unit_are_rejected() {
    let yaml = with_second(
        "  - id: CB-0002\n    device_map: alfen-eve-single\n    tcp: Box.lan:502\n\
         \x20 - id: CB-0003\n    device_map: alfen-eve-single\n    tcp: box.LAN:502\n",
    );
    assert_one_error(&yaml, 17, 10, "endpoint `box.LAN:502`");
    // Same host, other port: fine.
    let ok = yaml.replace("box.LAN:502", "box.lan:1502");
    load(&ok).expect("different endpoints");
}

#[test]
fn a_charger_with_both_bus_and_tcp_is_rejected() {
    let yaml = BASE.replace("    unit: 1\n", "    tcp: 10.0.0.5:502\n    unit: 1\n");
    assert_one_error(&yaml, 10, 10, "not both");
}

#[test]
fn a_charger_with_neither_bus_nor_tcp_is_rejected() {
    let yaml = BASE.replace("    bus: rs485-1\n", "");
    assert_one_error(&yaml, 7, 5, "needs `bus:`");
}

#[test]
fn an_unknown_bus_is_rejected_with_the_known_ones() {
    let yaml = BASE.replace("    bus: rs485-1\n", "    bus: rs485-2\n");
    assert_one_error(
        &yaml,
        9,
        10,
        "bus `rs485-2` is not defined under `buses:` (defined: rs485-1)",
    );
}

#[test]
fn a_device_map_that_does_not_resolve_reports_the_loaders_message() {
    let yaml = BASE.replace("heidelberg-energy-control", "heidelburg");
    assert_one_error(&yaml, 8, 17, "no built-in device map `heidelburg`");
}

#[test]
fn a_broken_map_is_reported_once_for_all_its_chargers() {
    let yaml = BASE.replace("heidelberg-energy-control", "heidelburg")
        + "  - id: CB-0002\n    device_map: heidelburg\n    bus: rs485-1\n    unit: 2\n";
    assert_eq!(errors(&yaml).len(), 1);
}

#[test]
fn maps_with_different_serial_defaults_need_an_explicit_bus_setting() {
    let second = "  - id: CB-0002\n    device_map: slow-box\n    bus: rs485-1\n    unit: 2\n";
    let errs = errors(&with_second(second));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!((errs[0].line, errs[0].column), (13, 17));
    assert!(
        errs[0].message.contains("sets no `baud`"),
        "{}",
        errs[0].message
    );
    assert!(
        errs[0]
            .message
            .contains("wants 19200, `slow-box` wants 9600"),
        "{}",
        errs[0].message
    );
    assert!(
        errs[1].message.contains("sets no `parity`"),
        "{}",
        errs[1].message
    );

    // Setting both on the bus decides it; the bus value wins over every map.
    let fixed = with_second(second).replace(
        "    port: /dev/ttyUSB0\n",
        "    port: /dev/ttyUSB0\n    baud: 38400\n    parity: odd\n",
    );
    let cfg = load(&fixed).expect("explicit settings resolve the conflict");
    let s = cfg.serial_settings("rs485-1").expect("known bus");
    assert_eq!(
        (s.baud, s.parity, s.data_bits, s.stop_bits),
        (38400, Parity::Odd, 8, 1)
    );
}

#[test]
fn serial_settings_come_from_the_maps_when_the_bus_leaves_them_out() {
    let cfg = load(BASE).expect("valid");
    let s = cfg.serial_settings("rs485-1").expect("known bus");
    assert_eq!(
        (s.baud, s.parity, s.data_bits, s.stop_bits),
        (19200, Parity::Even, 8, 1)
    );
    assert_eq!(cfg.serial_settings("nope"), None);
}

#[test]
fn a_tcp_only_map_on_a_bus_is_rejected() {
    let yaml = BASE.replace("heidelberg-energy-control", "alfen-eve-single");
    assert_one_error(&yaml, 9, 10, "describes a Modbus TCP device");
}

#[test]
fn unit_zero_is_broadcast_on_a_bus() {
    let yaml = BASE.replace("    unit: 1\n", "    unit: 0\n");
    assert_one_error(&yaml, 10, 11, "1..=247");
    let yaml = BASE
        .replace("heidelberg-energy-control", "broadcast-box")
        .replace("    unit: 1\n", "");
    assert_one_error(&yaml, 8, 17, "the device map's default unit 0");
}

#[test]
fn an_unset_variable_is_named() {
    let yaml = BASE.replace("${CB_0001_PASSWORD}", "${CB_0009_PASSWORD}");
    assert_one_error(
        &yaml,
        11,
        15,
        "environment variable `CB_0009_PASSWORD` is not set",
    );
}

#[test]
fn an_empty_variable_is_named() {
    let yaml = BASE.replace("${CB_0001_PASSWORD}", "${EMPTY_ONE}");
    assert_one_error(&yaml, 11, 15, "environment variable `EMPTY_ONE` is empty");
}

#[test]
fn variables_expand_in_urls_and_paths() {
    let yaml =
        BASE.replace("csms.example.com", "${CSMS_HOST}") + "state_dir: /srv/${NOT_SET}/state\n";
    assert_one_error(&yaml, 12, 12, "`NOT_SET` is not set");
    let yaml = BASE.replace("csms.example.com", "${CSMS_HOST}");
    assert_eq!(
        load(&yaml).expect("valid").csms.url,
        "wss://csms.example.com/ocpp"
    );
}

#[test]
fn password_and_password_file_together_are_rejected() {
    let yaml = BASE.to_owned() + "    password_file: /etc/chargebridge/secrets/CB-0001\n";
    assert_one_error(&yaml, 12, 20, "either `password` or `password_file`");
}

#[test]
fn an_unreadable_password_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("CB-0001");
    let yaml = BASE.replace(
        "password: ${CB_0001_PASSWORD}",
        &format!("password_file: {}", missing.display()),
    );
    let d = assert_one_error(&yaml, 11, 20, &missing.display().to_string());
    assert!(d.message.contains("cannot be read"), "{}", d.message);
}

#[test]
fn a_password_file_loses_exactly_one_trailing_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("CB-0001");
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(b"  spaced secret \n\n").expect("write");
    let yaml = BASE.replace(
        "password: ${CB_0001_PASSWORD}",
        &format!("password_file: {}", path.display()),
    );
    let cfg = load(&yaml).expect("valid");
    let pw = cfg.chargers[0].password.as_ref().expect("password");
    assert_eq!(pw.expose(), "  spaced secret \n");

    std::fs::write(&path, "\n").expect("write");
    assert_one_error(&yaml, 11, 20, "is empty");
}

#[test]
fn phases_must_be_one_or_three() {
    let yaml = BASE.to_owned() + "    phases: 2\n";
    assert_one_error(&yaml, 12, 13, "1 or 3 phases");
    let cfg = load(&(BASE.to_owned() + "    phases: 1\n")).expect("valid");
    assert_eq!(cfg.chargers[0].phases, 1);
}

#[test]
fn max_current_must_be_positive() {
    let yaml = BASE.to_owned() + "    max_current: 0\n";
    assert_one_error(&yaml, 12, 18, "above 0 A");
    let yaml = BASE.to_owned() + "    max_current: -3\n";
    assert_one_error(&yaml, 12, 18, "above 0 A");
}

#[test]
fn max_current_cannot_exceed_the_maps_limit() {
    let yaml = BASE.to_owned() + "    max_current: 20\n";
    assert_one_error(&yaml, 12, 18, "above what the wallbox accepts (16 A");
    let cfg = load(&(BASE.to_owned() + "    max_current: 10\n")).expect("valid");
    assert!((cfg.chargers[0].max_current - 10.0).abs() < 1e-9);
}

#[test]
fn max_current_defaults_to_16_without_a_limit_register() {
    let yaml = BASE.replace("heidelberg-energy-control", "no-limit-box");
    let cfg = load(&yaml).expect("valid");
    assert!((cfg.chargers[0].max_current - 16.0).abs() < 1e-9);
}

#[test]
fn failsafe_current_cannot_exceed_max_current() {
    let yaml = BASE.to_owned() + "    max_current: 10\n    failsafe_current: 12\n";
    assert_one_error(&yaml, 13, 23, "above `max_current` (10 A)");
    let cfg = load(&(BASE.to_owned() + "    failsafe_current: 6\n")).expect("valid");
    assert_eq!(cfg.chargers[0].failsafe_current, Some(6.0));
}

#[test]
fn failsafe_current_is_zero_or_at_least_the_wallbox_minimum() {
    let yaml = BASE.to_owned() + "    failsafe_current: 3\n";
    assert_one_error(&yaml, 12, 23, "write 0 to stop charging, or at least 6");
    let cfg = load(&(BASE.to_owned() + "    failsafe_current: 0\n")).expect("valid");
    assert_eq!(cfg.chargers[0].failsafe_current, Some(0.0));
    let yaml = BASE.to_owned() + "    failsafe_current: -1\n";
    assert_one_error(&yaml, 12, 23, "cannot be negative");
}

#[test]
fn charger_ids_must_fit_a_url_path_segment() {
    let empty = BASE.replace("id: CB-0001", "id: \"\"");
    assert_one_error(&empty, 7, 9, "`id`: is empty");
    let long = BASE.replace("id: CB-0001", &format!("id: {}", "X".repeat(49)));
    assert_one_error(&long, 7, 9, "at most 48");
    let control = BASE.replace("id: CB-0001", "id: \"CB\\t0001\"");
    assert_one_error(&control, 7, 9, "control character");
    let colon = BASE.replace("id: CB-0001", "id: \"CB:0001\"");
    assert_one_error(&colon, 7, 9, "Basic Auth");
}

#[test]
fn a_long_id_needs_an_explicit_id_tag_in_free_mode() {
    let id = "GATEWAY-HALL-7-CHARGER-0001"; // 27 characters: a fine identity, too long an idTag
    let yaml = BASE.replace("CB-0001", id);
    assert_one_error(&yaml, 7, 9, "default idTag");
    let fixed = yaml + "    authorization: { mode: free, id_tag: HALL7-1 }\n";
    let cfg = load(&fixed).expect("valid");
    assert_eq!(cfg.chargers[0].authorization.id_tag, "HALL7-1");
}

#[test]
fn authorization_mode_must_be_free_or_remote() {
    let yaml = BASE.to_owned() + "    authorization: { mode: auto }\n";
    assert_one_error(&yaml, 12, 28, "use free or remote");
}

#[test]
fn csms_url_must_be_a_websocket_url() {
    let yaml = BASE.replace(
        "wss://csms.example.com/ocpp",
        "https://csms.example.com/ocpp",
    );
    assert_one_error(&yaml, 2, 8, "not a WebSocket URL");
    let yaml = BASE.replace(
        "wss://csms.example.com/ocpp",
        "wss://user:pw@csms.example.com/ocpp",
    );
    let d = assert_one_error(&yaml, 2, 8, "credentials");
    assert!(!d.message.contains("pw@"), "{}", d.message);
}

#[test]
fn plain_ws_needs_profile_1_and_allow_insecure() {
    let ws = BASE.replace("wss://", "ws://");
    assert_one_error(&ws, 2, 8, "security profile 2 needs TLS");

    let p1 = ws.replace("  url:", "  security_profile: 1\n  url:");
    assert_one_error(&p1, 3, 8, "allow_insecure: true");

    let ok = p1.replace("  url:", "  allow_insecure: true\n  url:");
    let cfg = load(&ok).expect("explicitly allowed");
    assert_eq!(cfg.csms.security_profile, 1);
    assert!(cfg.csms.allow_insecure);
}

#[test]
fn profile_1_with_wss_is_contradictory() {
    let yaml = BASE.replace("  url:", "  security_profile: 1\n  url:");
    assert_one_error(&yaml, 2, 21, "1 is plain ws://");
}

#[test]
fn security_profile_must_be_1_2_or_3() {
    let yaml = BASE.replace("  url:", "  security_profile: 0\n  url:");
    assert_one_error(&yaml, 2, 21, "not a security profile");
}

#[test]
fn profile_3_needs_a_client_certificate_per_charger() {
    let yaml = BASE.replace("  url:", "  security_profile: 3\n  url:");
    assert_one_error(&yaml, 8, 5, "client_cert");

    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cb.pem");
    let key = dir.path().join("cb.key");
    std::fs::write(&cert, "cert").expect("write");
    std::fs::write(&key, "key").expect("write");
    let ok = format!(
        "{yaml}    client_cert: {}\n    client_key: {}\n",
        cert.display(),
        key.display()
    );
    let cfg = load(&ok).expect("valid");
    assert_eq!(cfg.chargers[0].client_cert.as_deref(), Some(cert.as_path()));

    let missing_key = format!("{yaml}    client_cert: {}\n", cert.display());
    assert_one_error(&missing_key, 8, 5, "without `client_key`");
}

#[test]
fn unreadable_certificate_files_are_named() {
    let yaml = BASE.replace(
        "  url:",
        "  ca_file: /nonexistent/chargebridge-ca.pem\n  url:",
    );
    assert_one_error(&yaml, 2, 12, "/nonexistent/chargebridge-ca.pem");
}

#[test]
fn http_listen_must_be_loopback_unless_allowed() {
    let yaml = BASE.to_owned() + "http:\n  listen: 0.0.0.0:9464\n";
    assert_one_error(&yaml, 13, 11, "allow_remote: true");
    let ok = BASE.to_owned() + "http:\n  listen: 0.0.0.0:9464\n  allow_remote: true\n";
    let cfg = load(&ok).expect("explicitly allowed");
    assert_eq!(cfg.http.listen.to_string(), "0.0.0.0:9464");
    let v6 = BASE.to_owned() + "http: { listen: \"[::1]:9000\" }\n";
    assert_eq!(load(&v6).expect("loopback").http.listen.port(), 9000);
}

#[test]
fn http_listen_must_be_an_address() {
    let yaml = BASE.to_owned() + "http:\n  listen: localhost\n";
    assert_one_error(&yaml, 13, 11, "not an IP address and port");
}

#[test]
fn durations_are_checked() {
    let yaml = BASE.to_owned() + "    poll_interval: 5 seconds\n";
    assert_one_error(&yaml, 12, 20, "unknown unit");
    let yaml = BASE.to_owned() + "    poll_interval: 0s\n";
    assert_one_error(&yaml, 12, 20, "longer than 0");
    let yaml = BASE.replace(
        "    port: /dev/ttyUSB0\n",
        "    port: /dev/ttyUSB0\n    timeout: 2\n    request_delay: 50ms\n",
    );
    assert_one_error(&yaml, 6, 14, "needs a unit");
    let ok = BASE.replace(
        "    port: /dev/ttyUSB0\n",
        "    port: /dev/ttyUSB0\n    timeout: 2s\n    request_delay: 50ms\n",
    );
    let cfg = load(&ok).expect("valid");
    let bus = &cfg.buses["rs485-1"];
    assert_eq!(bus.timeout.map(|d| d.as_millis()), Some(2000));
    assert_eq!(bus.request_delay.map(|d| d.as_millis()), Some(50));
}

#[test]
fn bus_settings_are_checked() {
    let yaml = BASE.replace(
        "    port: /dev/ttyUSB0\n",
        "    port: /dev/ttyUSB0\n    parity: even-ish\n    stop_bits: 3\n",
    );
    let errs = errors(&yaml);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!((errs[0].line, errs[0].column), (6, 13));
    assert!(errs[0].message.contains("use none, even or odd"));
    assert_eq!((errs[1].line, errs[1].column), (7, 16));
    assert!(errs[1].message.contains("use 1 or 2"));
}

#[test]
fn a_bus_needs_a_port() {
    let yaml = BASE.replace("    port: /dev/ttyUSB0\n", "    baud: 9600\n");
    assert_one_error(&yaml, 4, 3, "needs `port:`");
}

#[test]
fn missing_sections_are_reported() {
    let errs = errors("log: { format: text }\n");
    let msgs: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(errs.len(), 2, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("missing `csms:`")));
    assert!(msgs.iter().any(|m| m.contains("missing `chargers:`")));
    let errs = errors("");
    assert_eq!(errs.len(), 2);
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let yaml = BASE
        .replace("wss://", "http://")
        .replace("    unit: 1\n", "    unit: 300\n    phases: 4\n")
        + "  - id: CB-0002\n    device_map: nope\n    tcp: box\n";
    let errs = errors(&yaml);
    let at: Vec<(u64, u64)> = errs.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(
        at,
        vec![(2, 8), (10, 11), (11, 13), (14, 17), (15, 10)],
        "{errs:#?}"
    );
    let text = chargebridge::diag::Diagnostics(errs).to_string();
    assert!(text.starts_with("gw.yaml:2:8: `url`:"), "{text}");
}

#[test]
fn log_settings_are_checked() {
    let yaml = BASE.to_owned() + "log: { format: xml, filter: \"chargebridge=loud\" }\n";
    let errs = errors(&yaml);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].message.contains("use text or json"));
    assert!(errs[1].message.contains("not a log filter"));
    let ok = BASE.to_owned() + "log: { format: json, filter: \"info,chargebridge=debug\" }\n";
    assert_eq!(load(&ok).expect("valid").log.format, LogFormat::Json);
}

#[test]
fn two_buses_on_one_port_are_rejected() {
    let yaml = BASE.replace(
        "buses:\n",
        "buses:\n  rs485-0:\n    port: /dev/ttyUSB0\n    baud: 9600\n",
    );
    assert_one_error(&yaml, 8, 11, "already the port of bus `rs485-0`");
}

#[test]
fn bus_timing_overrides_the_maps() {
    let cfg = load(BASE).expect("valid");
    let t = cfg.timing(&cfg.chargers[0]);
    assert_eq!(
        (t.timeout.as_millis(), t.request_delay.as_millis()),
        (1000, 100)
    );
    let yaml = BASE.replace(
        "    port: /dev/ttyUSB0\n",
        "    port: /dev/ttyUSB0\n    request_delay: 20ms\n",
    );
    let cfg = load(&yaml).expect("valid");
    let t = cfg.timing(&cfg.chargers[0]);
    assert_eq!(
        (t.timeout.as_millis(), t.request_delay.as_millis()),
        (1000, 20)
    );
}

#[test]
fn url_for_appends_one_segment() {
    let yaml = BASE.replace("/ocpp\n", "/ocpp/\n");
    let cfg = load(&yaml).expect("valid");
    assert_eq!(
        cfg.csms.url_for("CB-0001"),
        "wss://csms.example.com/ocpp/CB-0001"
    );
    assert_eq!(
        cfg.csms.url_for("RDAM 123"),
        "wss://csms.example.com/ocpp/RDAM%20123"
    );
}

#[test]
fn a_password_file_must_be_a_regular_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let yaml = BASE.replace(
        "password: ${CB_0001_PASSWORD}",
        &format!("password_file: {}", fifo.display()),
    );
    assert_one_error(&yaml, 11, 20, "is not a regular file");
    let yaml = BASE.replace(
        "password: ${CB_0001_PASSWORD}",
        &format!("password_file: {}", dir.path().display()),
    );
    assert_one_error(&yaml, 11, 20, "is not a regular file");
}
