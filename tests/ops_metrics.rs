//! End to end over loopback: central system + simulated wallboxes + the gateway, scraping
//! `/metrics`, `/status.json` and `/healthz` while an EV charges.
#![allow(clippy::unwrap_used)]

mod common;
mod ops_support;

use std::io::Write as _;
use std::process::{Command, Stdio};

use chargebridge::gateway::{Gateway, start_http};
use chargebridge::telemetry::Telemetry;
use ops_support::{Entry, Rig, START_ENERGY_WH, eventually, get, load, sample, sum};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_charging_session() {
    let rig = Rig::start(&["OPS-M1", "OPS-M2"]).await;
    let path = rig.write_config(&[Entry::new("OPS-M1"), Entry::new("OPS-M2")]);
    let cfg = load(&path).unwrap();
    let telemetry = Telemetry::new().unwrap();
    let addr = start_http(&cfg.http, telemetry.clone(), rig.shutdown.clone())
        .await
        .unwrap();
    assert!(addr.ip().is_loopback());
    let gateway = Gateway::start(cfg, telemetry, &rig.shutdown).await.unwrap();

    assert!(rig.wait_call(0, "OPS-M1", "BootNotification", 20).await);
    assert!(rig.wait_call(0, "OPS-M2", "BootNotification", 20).await);
    rig.wallbox("OPS-M1").plug();
    assert!(rig.wait_call(0, "OPS-M1", "StartTransaction", 20).await);

    // Power shows up once the wallbox has been given current and the EV draws it.
    let charging = eventually(20, async || {
        let (_, _, text) = get(addr, "/metrics").await;
        sample(&text, "chargebridge_charger_power_watts{charger=\"OPS-M1\"}").is_some_and(|p| p > 1000.0)
            && sample(&text, "chargebridge_charger_status{charger=\"OPS-M1\",connector=\"1\",status=\"Charging\"}") == Some(1.0)
    })
    .await;
    let (status, content_type, text) = get(addr, "/metrics").await;
    assert!(charging, "{text}");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );

    let snap = rig.wallbox("OPS-M1").snapshot();
    let power = sample(
        &text,
        "chargebridge_charger_power_watts{charger=\"OPS-M1\"}",
    )
    .unwrap();
    // 16 A x 3 phases x 230 V drawn by the simulated EV; the gateway's reading lags one poll.
    assert!(
        (power - snap.power_w).abs() <= 0.05 * snap.power_w + 1.0,
        "{power} vs {}",
        snap.power_w
    );
    let energy = sample(
        &text,
        "chargebridge_charger_energy_import_joules{charger=\"OPS-M1\"}",
    )
    .unwrap()
        / 3600.0;
    assert!(
        energy >= f64::from(START_ENERGY_WH) && energy <= snap.energy_wh + 1.0,
        "{energy}"
    );
    assert_eq!(
        sample(
            &text,
            "chargebridge_charger_current_limit_amperes{charger=\"OPS-M1\"}"
        ),
        Some(16.0)
    );
    assert_eq!(
        sample(
            &text,
            "chargebridge_charger_status{charger=\"OPS-M1\",connector=\"1\",status=\"Available\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "chargebridge_charger_current_limit_source{charger=\"OPS-M1\",source=\"max_current\"}"
        ),
        Some(1.0),
        "no profile: the installer limit applies"
    );
    assert_eq!(
        sample(
            &text,
            "chargebridge_charger_status{charger=\"OPS-M2\",connector=\"1\",status=\"Available\"}"
        ),
        Some(1.0)
    );
    for id in ["OPS-M1", "OPS-M2"] {
        assert_eq!(
            sample(
                &text,
                &format!("chargebridge_ocpp_connected{{charger=\"{id}\"}}")
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!("chargebridge_charger_reachable{{charger=\"{id}\"}}")
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!("chargebridge_ocpp_reconnects_total{{charger=\"{id}\"}}")
            ),
            Some(0.0)
        );
        let reads = sum(
            &text,
            "chargebridge_modbus_requests_total",
            &[
                &format!("charger=\"{id}\""),
                "function=\"read_input_registers\"",
                "result=\"ok\"",
            ],
        );
        assert!(reads >= 2.0, "{id}: {reads}\n{text}");
    }
    // The limit was written through FC 6/16 to a holding register.
    assert!(
        sum(
            &text,
            "chargebridge_modbus_requests_total",
            &[
                "charger=\"OPS-M1\"",
                "function=\"write_registers\"",
                "result=\"ok\""
            ]
        ) >= 1.0
    );
    assert!(
        sum(
            &text,
            "chargebridge_ocpp_messages_total",
            &[
                "charger=\"OPS-M1\"",
                "direction=\"sent\"",
                "action=\"BootNotification\"",
                "result=\"ok\""
            ]
        ) == 1.0,
        "{text}"
    );
    assert!(
        sum(
            &text,
            "chargebridge_ocpp_messages_total",
            &[
                "charger=\"OPS-M1\"",
                "action=\"StartTransaction\"",
                "result=\"ok\""
            ]
        ) == 1.0
    );
    assert!(
        sample(
            &text,
            "chargebridge_ocpp_outbox_messages{charger=\"OPS-M1\"}"
        )
        .is_some()
    );
    let bus = rig.sims["OPS-M1"].tcp_addr.unwrap().to_string();
    assert!(
        sample(
            &text,
            &format!("chargebridge_modbus_request_duration_seconds_count{{bus=\"{bus}\"}}")
        )
        .unwrap()
            >= 2.0
    );
    assert!(
        sample(
            &text,
            &format!("chargebridge_modbus_bus_busy_seconds_total{{bus=\"{bus}\"}}")
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "chargebridge_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(sample(&text, "process_open_fds").unwrap() > 3.0);
    assert!(!text.contains("pw-OPS"), "a password leaked into /metrics");

    // /status.json carries the same data.
    let (status, content_type, json) = get(addr, "/status.json").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let m1 = &v["chargers"][0];
    assert_eq!(m1["id"], "OPS-M1");
    assert_eq!(m1["ocpp_connected"], true);
    assert_eq!(m1["status"], "Charging");
    assert_eq!(m1["iec_state"], "C2");
    assert!(m1["transaction_id"].as_i64().is_some(), "{m1}");
    assert_eq!(m1["current_limit_a"], 16.0);
    assert!(m1["modbus"]["success_rate"].as_f64().unwrap() > 0.9);
    assert!(
        m1["last_messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["action"] == "StartTransaction")
    );
    assert!(
        !json.contains("pw-OPS"),
        "a password leaked into /status.json"
    );

    assert_eq!(m1["limit_source"], "max_current, no charging profile");

    // A charging profile lowers the limit; the metric and the status name its source.
    let start = (chrono::Utc::now() - chrono::Duration::minutes(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let answer = rig
        .csms
        .call(
            "OPS-M1",
            "SetChargingProfile",
            serde_json::json!({
                "connectorId": 1,
                "csChargingProfiles": {
                    "chargingProfileId": 7,
                    "stackLevel": 1,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": {
                        "startSchedule": start,
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]
                    }
                }
            }),
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], "Accepted", "{answer}");
    let limited = eventually(10, async || {
        let (_, _, text) = get(addr, "/metrics").await;
        sample(
            &text,
            "chargebridge_charger_current_limit_amperes{charger=\"OPS-M1\"}",
        ) == Some(10.0)
    })
    .await;
    assert!(limited, "{}", get(addr, "/metrics").await.2);
    let (_, _, json) = get(addr, "/status.json").await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["chargers"][0]["limit_source"], "TxDefaultProfile 7",
        "{json}"
    );
    assert_eq!(v["chargers"][0]["current_limit_a"], 10.0);
    let (_, _, text) = get(addr, "/metrics").await;
    for (source, on) in [
        ("TxDefaultProfile", 1.0),
        ("max_current", 0.0),
        ("none", 0.0),
    ] {
        let series = format!(
            "chargebridge_charger_current_limit_source{{charger=\"OPS-M1\",source=\"{source}\"}}"
        );
        assert_eq!(sample(&text, &series), Some(on), "{series}");
    }

    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!(status, 200);
    assert!(body.contains("all reachable"), "{body}");

    // A silent wallbox is named by /healthz and drops its reachable gauge.
    rig.wallbox("OPS-M2").set_silent(true);
    let named = eventually(20, async || {
        get(addr, "/healthz")
            .await
            .2
            .contains("unreachable: OPS-M2")
    })
    .await;
    assert!(named, "{}", get(addr, "/healthz").await.2);
    let (status, _, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&text, "chargebridge_charger_reachable{charger=\"OPS-M2\"}"),
        Some(0.0)
    );
    assert!(
        sum(
            &text,
            "chargebridge_modbus_requests_total",
            &["charger=\"OPS-M2\"", "result=\"timeout\""]
        ) >= 1.0,
        "{text}"
    );

    promtool_check(&text);
    gateway.stop().await;
}

/// `promtool check metrics` (Debian package `prometheus`) must find nothing to complain about.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            println!(
                "NOTICE: promtool not available ({e}); install the Debian package `prometheus` to run this check"
            );
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}
