//! The status page rendered by a real browser (headless Chromium): every charger and its
//! status appear in the DOM; a screenshot is kept under `target/` as an artifact.
#![allow(clippy::unwrap_used)]

mod common;
mod ops_support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use chargebridge::gateway::{Gateway, start_http};
use chargebridge::telemetry::Telemetry;
use ops_support::{Entry, Rig, eventually, get, load};

const IDS: [&str; 3] = ["OPS-S1", "OPS-S2", "OPS-S3"];

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Runs headless Chromium with `args` against `url`, bounded in time; stdout on success.
async fn browser(bin: &str, args: &[String], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium did not finish within 90 s")
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_every_charger_in_a_browser() {
    let rig = Rig::start(&IDS).await;
    let entries: Vec<Entry> = IDS.iter().map(|id| Entry::new(id)).collect();
    let cfg = load(&rig.write_config(&entries)).unwrap();
    let telemetry = Telemetry::new().unwrap();
    let addr = start_http(&cfg.http, telemetry.clone(), rig.shutdown.clone())
        .await
        .unwrap();
    let gateway = Gateway::start(cfg, telemetry, &rig.shutdown).await.unwrap();
    rig.wallbox("OPS-S2").plug();
    let ready = eventually(30, async || {
        let (_, _, json) = get(addr, "/status.json").await;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["chargers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ocpp_connected"] == true && c["status"].is_string())
            && v["chargers"][1]["status"] == "Charging"
    })
    .await;
    assert!(ready, "{}", get(addr, "/status.json").await.2);
    let (status, content_type, page) = get(addr, "/status").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"));
    assert!(!page.contains("pw-OPS"), "a password leaked into /status");

    let Some(bin) = chromium() else {
        println!(
            "NOTICE: chromium is not installed (Debian package `chromium`); the browser check is skipped"
        );
        gateway.stop().await;
        return;
    };
    let url = format!("http://{addr}/status");
    let dom = browser(bin, &["--dump-dom".to_owned()], &url).await;
    for id in IDS {
        assert!(
            dom.contains(&format!("id=\"charger-{id}\"")),
            "{id} missing from the DOM:\n{dom}"
        );
    }
    assert!(dom.contains("Charging"), "{dom}");
    assert!(dom.contains("Available"), "{dom}");
    assert!(dom.contains("connected"), "{dom}");

    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ops-status-page.png");
    let _ = std::fs::remove_file(&shot);
    browser(
        bin,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1100,1400".to_owned(),
            "--hide-scrollbars".to_owned(),
        ],
        &url,
    )
    .await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot {}",
        shot.display()
    );
    println!("screenshot: {}", shot.display());
    gateway.stop().await;
}
