//! The shipped example configuration loads, files are found relative to the configuration, and
//! secrets never show up in Debug output or in error messages.

mod config_support;

use std::path::Path;

use chargebridge::config::{self, AuthMode, Link};
use chargebridge::devicemap::Parity;
use config_support::{BASE, SECRET, env, errors, resolve};

const EXAMPLE: &str = include_str!("../packaging/chargebridge.example.yaml");
const FILE_SECRET: &str = "pw-0003-from-a-file";

/// The example with its password file moved into a temporary directory.
fn example_in(dir: &Path) -> String {
    let secret = dir.join("CB-0003");
    std::fs::write(&secret, format!("{FILE_SECRET}\n")).expect("write secret");
    EXAMPLE.replace(
        "/etc/chargebridge/secrets/CB-0003",
        &secret.display().to_string(),
    )
}

#[test]
fn the_packaged_example_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = example_in(dir.path());
    let cfg = config::load_str("chargebridge.yaml", &yaml, &env, &resolve)
        .unwrap_or_else(|d| panic!("example rejected:\n{d}"));

    assert_eq!(cfg.csms.url, "wss://csms.example.com/ocpp");
    assert_eq!(cfg.buses.len(), 1);
    assert_eq!(cfg.chargers.len(), 3);
    let ids: Vec<&str> = cfg.chargers.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["CB-0001", "CB-0002", "CB-0003"]);
    assert_eq!(cfg.chargers_on_bus("rs485-1").count(), 2);

    let s = cfg.serial_settings("rs485-1").expect("bus");
    assert_eq!(
        (s.baud, s.parity, s.data_bits, s.stop_bits),
        (19200, Parity::Even, 8, 1)
    );

    let cb2 = cfg.charger("CB-0002").expect("CB-0002");
    assert_eq!(
        (cb2.unit, cb2.max_current, cb2.failsafe_current),
        (2, 13.0, Some(0.0))
    );
    let cb3 = cfg.charger("CB-0003").expect("CB-0003");
    assert_eq!(cb3.link, Link::Tcp("192.168.10.21:502".into()));
    assert_eq!(cb3.device.name, "alfen-eve-single");
    assert_eq!(cb3.max_current, 32.0, "defaults to the map's limit");
    assert_eq!(cb3.phases, 1);
    assert_eq!(cb3.authorization.mode, AuthMode::Remote);
    assert_eq!(cb3.password.as_ref().map(|p| p.expose()), Some(FILE_SECRET));
    // One resolved map shared by the chargers of one model.
    assert!(std::sync::Arc::ptr_eq(
        &cfg.chargers[0].device,
        &cfg.chargers[1].device
    ));
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config::load_str("chargebridge.yaml", &example_in(dir.path()), &env, &resolve)
        .expect("valid");
    let debug = format!("{cfg:?}");
    assert!(
        !debug.contains(SECRET),
        "password from the environment leaked"
    );
    assert!(!debug.contains(FILE_SECRET), "password from a file leaked");
    assert!(debug.contains("password: Some(***)"), "{debug}");
}

#[test]
fn secrets_never_appear_in_error_messages() {
    // A literal password next to problems in the same charger, and in the environment.
    let yaml = BASE
        .replace("${CB_0001_PASSWORD}", "literal-Secret-9876")
        .replace(
            "    unit: 1\n",
            "    unit: 999\n    phases: 2\n    max_current: 99\n",
        )
        + "    failsafe_current: 50\n    authorization: { mode: nope }\n";
    let text = chargebridge::diag::Diagnostics(errors(&yaml)).to_string();
    assert!(!text.contains("literal-Secret-9876"), "{text}");

    // The same with both password forms given: the value must not be echoed.
    let both = BASE.to_owned() + "    password_file: /nonexistent\n";
    let text = chargebridge::diag::Diagnostics(errors(&both)).to_string();
    assert!(!text.contains(SECRET), "{text}");

    // A password file that is not text: the content is not echoed either.
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::write(&bin, b"Secret\xff\xfe").expect("write");
    let yaml = BASE.replace(
        "password: ${CB_0001_PASSWORD}",
        &format!("password_file: {}", bin.display()),
    );
    let text = chargebridge::diag::Diagnostics(errors(&yaml)).to_string();
    assert!(text.contains("not UTF-8"), "{text}");
    assert!(!text.contains("Secret"), "{text}");
}

#[test]
fn load_reads_the_file_and_resolves_relative_paths_next_to_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
    std::fs::write(dir.path().join("secrets/CB-0001"), "from-file\n").expect("write");
    let yaml = BASE.replace(
        "password: ${CB_0001_PASSWORD}",
        "password_file: secrets/CB-0001",
    ) + "state_dir: state\ndevice_map_dirs: [maps, /opt/maps]\n";
    let path = dir.path().join("chargebridge.yaml");
    std::fs::write(&path, yaml).expect("write");

    let cfg = config::load(&path, &resolve).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(cfg.path, path);
    assert_eq!(cfg.state_dir, dir.path().join("state"));
    assert_eq!(
        cfg.device_map_dirs,
        [dir.path().join("maps"), "/opt/maps".into()]
    );
    assert_eq!(
        cfg.chargers[0].password.as_ref().map(|p| p.expose()),
        Some("from-file")
    );
}

#[test]
fn a_device_map_path_is_relative_to_the_configuration() {
    let seen = std::cell::RefCell::new(Vec::new());
    let record = |name: &str| {
        seen.borrow_mut().push(name.to_owned());
        resolve("heidelberg-energy-control")
    };
    let yaml = BASE.replace("heidelberg-energy-control", "maps/my-box.yaml");
    config::load_str("/etc/chargebridge/gw.yaml", &yaml, &env, &record).expect("valid");
    let yaml = BASE.replace("heidelberg-energy-control", "my-box.yml");
    config::load_str("/etc/chargebridge/gw.yaml", &yaml, &env, &record).expect("valid");
    let yaml = BASE.replace("heidelberg-energy-control", "/opt/maps/box.yaml");
    config::load_str("/etc/chargebridge/gw.yaml", &yaml, &env, &record).expect("valid");
    assert_eq!(
        *seen.borrow(),
        [
            "/etc/chargebridge/maps/my-box.yaml",
            "/etc/chargebridge/my-box.yml",
            "/opt/maps/box.yaml"
        ]
    );
}

#[test]
fn a_missing_file_is_reported_by_name() {
    let err = config::load(Path::new("/nonexistent/chargebridge.yaml"), &resolve)
        .expect_err("no such file");
    let text = err.to_string();
    assert!(
        text.starts_with("/nonexistent/chargebridge.yaml: cannot read the configuration file"),
        "{text}"
    );
}

#[test]
fn the_resolver_is_told_the_configured_map_directories() {
    let seen = std::cell::RefCell::new(Vec::new());
    let record = |name: &str, dirs: &[std::path::PathBuf]| {
        seen.borrow_mut().push((name.to_owned(), dirs.to_vec()));
        resolve(name)
    };
    let yaml = BASE.to_owned() + "device_map_dirs: [maps, /opt/maps]\n";
    config::load_str_in("/etc/chargebridge/gw.yaml", &yaml, &env, &record).expect("valid");
    assert_eq!(
        *seen.borrow(),
        [(
            "heidelberg-energy-control".to_owned(),
            vec!["/etc/chargebridge/maps".into(), "/opt/maps".into()]
        )]
    );
}
