//! `chargebridge demo`: the whole path on loopback from the real binary (takes ~20 s).

use std::process::Command;

#[test]
fn demo_completes_a_cycle_on_every_wallbox() {
    let out = Command::new(env!("CARGO_BIN_EXE_chargebridge"))
        .arg("demo")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "demo exits 0\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for id in ["DEMO-RTU-1", "DEMO-RTU-2", "DEMO-TCP-3"] {
        for action in ["BootNotification", "StartTransaction", "StopTransaction"] {
            assert!(
                stdout.lines().any(|l| l.contains(id) && l.contains(action)),
                "{id} {action} in the timeline:\n{stdout}"
            );
        }
    }
    assert!(
        stdout.contains("every wallbox completed a charging cycle"),
        "{stdout}"
    );
}
