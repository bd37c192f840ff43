//! Packaging: the Debian package is built with `packaging/build-deb.sh` (cargo-deb) from the
//! test binary, and its contents and control files are checked; the systemd unit passes
//! `systemd-analyze verify`; the Grafana dashboard is valid JSON whose queries use only
//! series the gateway exports (and parse as PromQL, where promtool is installed).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_debian_package_has_the_binary_unit_config_and_maps() {
    let out = tempfile::tempdir().unwrap();
    // The debug binary that cargo built for the tests; no release build is needed here.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_chargebridge"));
    assert!(bin.exists());
    let (ok, log) = run(Command::new(root().join("packaging/build-deb.sh"))
        .current_dir(root())
        .args([
            "--profile",
            "dev",
            "--no-build",
            "--fast",
            "--strip",
            "--output",
        ])
        .arg(out.path()));
    if !ok
        && !have("cargo-deb", "--version")
        && !Command::new("cargo")
            .args(["deb", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        println!(
            "NOTICE: cargo-deb is not installed and could not be installed; the package check is skipped:\n{log}"
        );
        return;
    }
    assert!(ok, "build-deb.sh failed:\n{log}");
    let deb = std::fs::read_dir(out.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {}:\n{log}", out.path().display()));
    assert!(
        deb.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("chargebridge_")
    );

    let (ok, contents) = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    assert!(ok, "{contents}");
    println!("{contents}");
    let files: BTreeSet<String> = contents
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_owned())
        .collect();
    let has = |p: &str| files.contains(p);
    assert!(has("/usr/bin/chargebridge"), "{contents}");
    assert!(has("/etc/chargebridge/chargebridge.yaml"), "{contents}");
    assert!(
        has("/usr/share/chargebridge/grafana-dashboard.json"),
        "{contents}"
    );
    assert!(has("/usr/share/doc/chargebridge/README.md"), "{contents}");
    assert!(
        has("/lib/systemd/system/chargebridge.service")
            || has("/usr/lib/systemd/system/chargebridge.service"),
        "{contents}"
    );
    for map in std::fs::read_dir(root().join("device-maps"))
        .unwrap()
        .filter_map(Result::ok)
    {
        let name = map.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") {
            assert!(
                has(&format!("/usr/share/chargebridge/device-maps/{name}")),
                "{name}: {contents}"
            );
        }
    }
    let bin_line = contents
        .lines()
        .find(|l| l.ends_with("./usr/bin/chargebridge"))
        .unwrap();
    assert!(bin_line.starts_with("-rwxr-xr-x"), "{bin_line}");
    let conf_line = contents
        .lines()
        .find(|l| l.ends_with("./etc/chargebridge/chargebridge.yaml"))
        .unwrap();
    assert!(
        conf_line.starts_with("-rw-r-----"),
        "the example configuration may hold secrets: {conf_line}"
    );

    // Control files: the configuration is a conffile; the user is created in group dialout.
    let control = out.path().join("control");
    let (ok, log) = run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(&control));
    assert!(ok, "{log}");
    let read = |f: &str| std::fs::read_to_string(control.join(f)).unwrap_or_default();
    assert!(
        read("conffiles")
            .lines()
            .any(|l| l == "/etc/chargebridge/chargebridge.yaml"),
        "{}",
        read("conffiles")
    );
    let fields = read("control");
    assert!(fields.contains("Package: chargebridge"), "{fields}");
    assert!(
        fields
            .lines()
            .any(|l| l.starts_with("Depends:") && l.contains("adduser")),
        "{fields}"
    );
    let postinst = read("postinst");
    assert!(
        postinst.contains("adduser --system") && postinst.contains("dialout"),
        "{postinst}"
    );
    assert!(read("postrm").contains("rm -rf /var/lib/chargebridge"));

    // The packaged binary is the one that runs.
    let tree = out.path().join("tree");
    let (ok, log) = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
    assert!(ok, "{log}");
    let (ok, version) = run(Command::new(tree.join("usr/bin/chargebridge")).arg("--version"));
    assert!(
        ok && version.contains(env!("CARGO_PKG_VERSION")),
        "{version}"
    );
    let (ok, maps) = run(Command::new(tree.join("usr/bin/chargebridge")).arg("maps"));
    assert!(ok && maps.contains("heidelberg-energy-control"), "{maps}");
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let unit = std::fs::read_to_string(root().join("packaging/chargebridge.service")).unwrap();
    for line in [
        "User=chargebridge",
        "SupplementaryGroups=dialout",
        "StateDirectory=chargebridge",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "DevicePolicy=closed",
        "DeviceAllow=char-ttyUSB rw",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
    if !have("systemd-analyze", "--version") {
        println!("NOTICE: systemd-analyze is not available; `verify` is skipped");
        return;
    }
    // `verify` checks that the executables exist: point the unit at the test binary.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chargebridge.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/chargebridge", env!("CARGO_BIN_EXE_chargebridge")),
    )
    .unwrap();
    let (ok, log) = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(
        ok && log.trim().is_empty(),
        "systemd-analyze verify:\n{log}"
    );
}

/// Every `chargebridge_*` / `process_*` series name in the dashboard's queries.
fn dashboard_series(dash: &serde_json::Value) -> (Vec<String>, BTreeSet<String>) {
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::String(e)) = m.get("expr") {
                    out.push(e.clone());
                }
                m.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(dash, &mut exprs);
    let mut names = BTreeSet::new();
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("chargebridge_") || word.starts_with("process_") {
                names.insert(word.to_owned());
            }
        }
    }
    (exprs, names)
}

#[test]
fn the_grafana_dashboard_queries_exported_series() {
    let text = std::fs::read_to_string(root().join("packaging/grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dash["title"], "chargebridge");
    let (exprs, names) = dashboard_series(&dash);
    assert!(exprs.len() >= 15, "{exprs:?}");
    // What the gateway exports, with one charger and one bus that saw traffic.
    let t = chargebridge::telemetry::Telemetry::new().unwrap();
    let c = t.charger("CB-1", "rs485-1", "Acme Box");
    c.modbus_request(
        chargebridge::telemetry::ModbusOp::Read(chargebridge::devicemap::Table::Input),
        std::time::Duration::from_millis(5),
        &Ok::<(), chargebridge::modbus::BusError>(()),
    );
    c.call_sent("Heartbeat");
    c.call_done(&Ok(serde_json::Value::Null));
    c.limit_written(Some(6.0));
    let metrics = t.render_metrics();
    let mut exported: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    // Series that need a reading, a machine state or a running bus to appear.
    for extra in [
        "chargebridge_charger_status",
        "chargebridge_charger_power_watts",
        "chargebridge_charger_energy_import_joules",
        "chargebridge_modbus_bus_busy_seconds_total",
    ] {
        exported.insert(extra.to_owned());
    }
    for name in &names {
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            exported.contains(base),
            "the dashboard queries {name}, which is not exported"
        );
    }
    for required in [
        "chargebridge_charger_power_watts",
        "chargebridge_modbus_requests_total",
        "chargebridge_ocpp_connected",
    ] {
        assert!(
            names.contains(required),
            "{required} is not on the dashboard"
        );
    }

    // The queries parse as PromQL (promtool checks rule expressions).
    if !have("promtool", "--version") {
        println!(
            "NOTICE: promtool is not installed (Debian package `prometheus`); PromQL check skipped"
        );
        return;
    }
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__range", "1h")
            .replace("$charger", ".*")
            .replace("$bus", ".*")
            .replace("$job", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, rules).unwrap();
    let (ok, log) = run(Command::new("promtool").args(["check", "rules"]).arg(&file));
    assert!(ok, "promtool check rules:\n{log}");
}

#[test]
fn build_deb_script_and_maintainer_scripts_are_valid_shell() {
    for script in [
        "packaging/build-deb.sh",
        "packaging/debian/postinst",
        "packaging/debian/postrm",
    ] {
        let path: &Path = &root().join(script);
        let (ok, log) = run(Command::new("sh").arg("-n").arg(path));
        assert!(ok, "{script}: {log}");
    }
}
