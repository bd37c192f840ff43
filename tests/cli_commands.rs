//! The command line as an installer uses it: the real binary, its exit codes and its output
//! (interfaces.md §1: 0 ok, 1 invalid input; errors as file:line:col).

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_chargebridge");
const MAP: &str = "heidelberg-energy-control";

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A valid configuration with one TCP charger using `device_map`.
fn write_config(dir: &Path, device_map: &str) -> std::path::PathBuf {
    let secret = dir.join("CB-1.secret");
    std::fs::write(&secret, "a-password\n").expect("password file");
    let yaml = format!(
        "state_dir: {dir}\ncsms:\n  url: wss://csms.example.com/ocpp\nchargers:\n  \
         - id: CB-1\n    device_map: {device_map}\n    tcp: 127.0.0.1:1502\n    unit: 1\n    \
         password_file: {secret}\n",
        dir = dir.display(),
        secret = secret.display()
    );
    let path = dir.join("chargebridge.yaml");
    std::fs::write(&path, yaml).expect("config");
    path
}

#[test]
fn check_accepts_a_valid_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), MAP);
    let out = run(&["check", "-c", config.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok"), "{}", text(&out.stdout));
}

#[test]
fn check_rejects_malformed_yaml_with_file_line_col() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("chargebridge.yaml");
    std::fs::write(&config, "state_dir: /tmp\ncsms: [unclosed\n").expect("config");
    let out = run(&["check", "-c", config.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1), "exit 1 on invalid input");
    let err = text(&out.stderr);
    let located = format!("{}:2:", config.display());
    assert!(
        err.lines().any(|l| l.starts_with(&located)
            && l[located.len()..]
                .split(':')
                .next()
                .is_some_and(|col| col.parse::<u32>().is_ok_and(|c| c > 0))),
        "expected `{located}<col>: …` on stderr, got:\n{err}"
    );
}

#[test]
fn check_locates_an_error_inside_a_device_map_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The built-in map with one measurand pointing at a register that does not exist.
    let builtin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("device-maps/heidelberg-energy-control.yaml"),
    )
    .expect("the built-in map's file");
    let broken = builtin.replace(
        "  Temperature: temperature",
        "  Temperature: no_such_register",
    );
    assert_ne!(broken, builtin, "the test edits the map");
    let line = broken
        .lines()
        .position(|l| l.contains("no_such_register"))
        .expect("edited line")
        + 1;
    let map = dir.path().join("broken-map.yaml");
    std::fs::write(&map, &broken).expect("map");
    let config = write_config(dir.path(), map.to_str().expect("utf-8 path"));

    let out = run(&["check", "-c", config.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1), "exit 1 on a broken map");
    let err = text(&out.stderr);
    let located = format!("{}:{line}:", map.display());
    assert!(
        err.contains(&located) && err.contains("no_such_register"),
        "expected the map's `{located}<col>` and the bad name on stderr, got:\n{err}"
    );
}

#[test]
fn maps_lists_and_shows_the_builtin_map() {
    let list = run(&["maps"]);
    assert_eq!(list.status.code(), Some(0));
    let listed = text(&list.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(MAP) && l.contains("Heidelberg")),
        "{listed}"
    );

    let show = run(&["maps", "--show", MAP]);
    assert_eq!(show.status.code(), Some(0), "{}", text(&show.stderr));
    let shown = text(&show.stdout);
    for expected in [
        "vendor: Heidelberg",
        "model: Energy Control",
        "registers:",
        "energy",
    ] {
        assert!(shown.contains(expected), "`{expected}` in:\n{shown}");
    }

    let unknown = run(&["maps", "--show", "no-such-wallbox"]);
    assert_eq!(
        unknown.status.code(),
        Some(1),
        "an unknown map is invalid input"
    );
}

#[test]
fn sim_help_works() {
    let out = run(&["sim", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for flag in ["--map", "--tcp", "--serial", "--unit"] {
        assert!(help.contains(flag), "`{flag}` in:\n{help}");
    }
}

/// `chargebridge maps --show NAME | head` must not panic when the reader goes away.
#[test]
fn maps_show_into_a_closed_pipe_does_not_panic() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(BIN)
        .args(["maps", "--show", MAP])
        .stdout(writer)
        .output()
        .expect("the binary runs");
    let err = text(&out.stderr);
    assert!(
        !err.contains("panicked"),
        "no panic on a closed pipe:\n{err}"
    );
    assert_ne!(out.status.code(), Some(101), "no panic exit code");
}
