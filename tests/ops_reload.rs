//! Reload: chargers whose settings did not change keep their session (the central system sees
//! no reconnect); changed ones restart, removed ones stop, new ones start; an invalid
//! configuration is rejected and the running one kept. Both through the library and through
//! SIGHUP to the real binary.
#![allow(clippy::unwrap_used)]

mod common;
mod ops_support;

use std::process::Stdio;
use std::time::Duration;

use chargebridge::gateway::{Gateway, ReloadSummary};
use chargebridge::sim::csms::CsmsEvent;
use chargebridge::telemetry::Telemetry;
use ops_support::{Entry, Rig, eventually, load};
use tokio::io::AsyncBufReadExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_restarts_only_what_changed() {
    let rig = Rig::start(&["OPS-R1", "OPS-R2", "OPS-R3", "OPS-R4"]).await;
    let first = [
        Entry::new("OPS-R1"),
        Entry::new("OPS-R2"),
        Entry::new("OPS-R3"),
    ];
    let cfg = load(&rig.write_config(&first)).unwrap();
    let telemetry = Telemetry::new().unwrap();
    let mut gateway = Gateway::start(cfg, telemetry.clone(), &rig.shutdown)
        .await
        .unwrap();
    for id in ["OPS-R1", "OPS-R2", "OPS-R3"] {
        assert!(rig.wait_call(0, id, "BootNotification", 20).await, "{id}");
    }
    // OPS-R1 is charging through the reload: its transaction must not be disturbed.
    rig.wallbox("OPS-R1").plug();
    assert!(rig.wait_call(0, "OPS-R1", "StartTransaction", 20).await);
    assert_eq!(rig.connects_since(0, "OPS-R1"), 1);

    let mark = rig.csms.mark();
    let mut second = vec![
        Entry::new("OPS-R1"),
        Entry::new("OPS-R2"),
        Entry::new("OPS-R4"),
    ];
    second[1].max_current = 10;
    let cfg = load(&rig.write_config(&second)).unwrap();
    let summary = gateway.reload(cfg).await.unwrap();
    assert_eq!(
        summary,
        ReloadSummary {
            kept: vec!["OPS-R1".into()],
            restarted: vec!["OPS-R2".into()],
            added: vec!["OPS-R4".into()],
            removed: vec!["OPS-R3".into()],
        }
    );
    assert!(rig.wait_call(mark, "OPS-R4", "BootNotification", 20).await);
    assert!(rig.wait_call(mark, "OPS-R2", "BootNotification", 20).await);
    // Give a wrongly restarted session time to show up at the central system.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rig.connects_since(mark, "OPS-R1"),
        0,
        "{:?}",
        rig.csms.events()
    );
    assert_eq!(rig.disconnects_since(mark, "OPS-R1"), 0);
    assert!(
        !rig.csms.events()[mark..]
            .iter()
            .any(|e| e.charger() == "OPS-R1" && e.is_call("StopTransaction"))
    );
    assert_eq!(rig.connects_since(mark, "OPS-R2"), 1);
    assert_eq!(rig.disconnects_since(mark, "OPS-R2"), 1);
    // The old session has closed before its successor connects.
    let events = rig.csms.events();
    let position = |want: fn(&CsmsEvent) -> bool| {
        events[mark..]
            .iter()
            .position(|e| e.charger() == "OPS-R2" && want(e))
            .unwrap()
    };
    assert!(
        position(|e| matches!(e, CsmsEvent::Disconnected { .. }))
            < position(|e| matches!(e, CsmsEvent::Connected { .. }))
    );
    assert_eq!(rig.disconnects_since(mark, "OPS-R3"), 1);
    assert!(!rig.csms.is_connected("OPS-R3"));
    assert_eq!(gateway.charger_ids(), ["OPS-R1", "OPS-R2", "OPS-R4"]);
    let text = telemetry.render_metrics();
    assert!(
        !text.contains("OPS-R3"),
        "the removed charger's series are gone:\n{text}"
    );
    assert!(
        text.contains("chargebridge_ocpp_connected{charger=\"OPS-R1\"} 1"),
        "{text}"
    );

    // Reloading the same configuration changes nothing.
    let mark = rig.csms.mark();
    let cfg = load(&rig.write_config(&second)).unwrap();
    let summary = gateway.reload(cfg).await.unwrap();
    assert_eq!(summary.kept, ["OPS-R1", "OPS-R2", "OPS-R4"]);
    assert!(summary.restarted.is_empty() && summary.added.is_empty() && summary.removed.is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in ["OPS-R1", "OPS-R2", "OPS-R4"] {
        assert_eq!(
            rig.connects_since(mark, id) + rig.disconnects_since(mark, id),
            0,
            "{id}"
        );
    }
    gateway.stop().await;
}

/// Lines of the daemon's stderr, collected in the background.
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Logs {
    fn contains(&self, s: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l.contains(s))
    }
    fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

fn hup(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_daemon_and_an_invalid_file_is_rejected() {
    let rig = Rig::start(&["OPS-H1", "OPS-H2"]).await;
    let path = rig.write_config(&[Entry::new("OPS-H1"), Entry::new("OPS-H2")]);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chargebridge"))
        .args(["--log-format", "json", "run", "-c"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let logs = Logs(Default::default());
    let sink = logs.0.clone();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let reader = tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    for id in ["OPS-H1", "OPS-H2"] {
        assert!(
            rig.wait_call(0, id, "BootNotification", 30).await,
            "{id}: {}",
            logs.all()
        );
    }
    // JSON logs: one object per line, and no secret in them.
    assert!(
        eventually(5, async || logs.contains("\"gateway running\"")).await,
        "{}",
        logs.all()
    );
    for l in logs.0.lock().unwrap().iter() {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok(),
            "not JSON: {l}"
        );
        assert!(!l.contains("pw-OPS"), "a password in the log: {l}");
    }

    // An invalid file: rejected, logged with its location, nothing restarted.
    let mark = rig.csms.mark();
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("max_current: 16", "max_current: [oops")).unwrap();
    hup(pid);
    assert!(
        eventually(10, async || logs.contains("reload rejected")).await,
        "{}",
        logs.all()
    );
    assert!(
        logs.contains("chargebridge.yaml:"),
        "the error names the file: {}",
        logs.all()
    );

    // A valid change of OPS-H2 only.
    let mut entries = [Entry::new("OPS-H1"), Entry::new("OPS-H2")];
    entries[1].max_current = 8;
    rig.write_config(&entries);
    hup(pid);
    assert!(
        eventually(10, async || logs.contains("configuration reloaded")).await,
        "{}",
        logs.all()
    );
    assert!(
        rig.wait_call(mark, "OPS-H2", "BootNotification", 20).await,
        "{}",
        logs.all()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rig.connects_since(mark, "OPS-H1"),
        0,
        "{:?}",
        rig.csms.events()
    );
    assert_eq!(rig.connects_since(mark, "OPS-H2"), 1);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon is still running"
    );

    // SIGTERM stops it cleanly.
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let _ = reader.await;
}
