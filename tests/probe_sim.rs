//! `chargebridge probe` against the simulator over Modbus TCP: a device that answers, one
//! that refuses some registers, one whose map has the word order wrong, one that is silent.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

use std::time::Duration;

use chargebridge::devicemap::{self, DeviceMap, Iec61851State, Value};
use chargebridge::modbus::{DeviceTiming, Endpoint, spawn_bus};
use chargebridge::probe::{self, Finding, Outcome, ProbeReport};
use chargebridge::sim::{RunningSim, SimArgs, SimHandle, spawn};
use tokio_util::sync::CancellationToken;

const HEIDELBERG: &str = "heidelberg-energy-control";

fn heidelberg_with(replace: &[(&str, &str)]) -> DeviceMap {
    let mut text = devicemap::builtin_source(HEIDELBERG).unwrap().to_owned();
    for (from, to) in replace {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    devicemap::load_str(HEIDELBERG, "test.yaml", &text).unwrap()
}

async fn sim(map: DeviceMap, stop: &CancellationToken) -> (RunningSim, SimHandle) {
    let args = SimArgs {
        map: "test".into(),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        ..SimArgs::default()
    };
    let running = spawn(args, map, stop.clone()).await.unwrap();
    let handle = running.units[0].1.clone();
    (running, handle)
}

async fn run_probe(map: &DeviceMap, running: &RunningSim, stop: &CancellationToken) -> ProbeReport {
    let bus = spawn_bus(
        "probe".into(),
        Endpoint::Tcp {
            addr: running.tcp_addr.unwrap().to_string(),
        },
        stop.clone(),
    );
    let mut timing = DeviceTiming::from(&map.modbus);
    timing.timeout = Duration::from_millis(300);
    timing.retries = 0;
    probe::probe(map, &bus, map.modbus.unit, &timing).await
}

#[tokio::test]
async fn a_charging_wallbox_is_read_decoded_and_left_untouched() {
    let stop = CancellationToken::new();
    let map = devicemap::resolve(HEIDELBERG, &[]).unwrap();
    let (running, handle) = sim(map.clone(), &stop).await;
    handle
        .set_register("layout_version", &Value::Number(264.0))
        .unwrap();
    handle.set_register("limit", &Value::Number(16.0)).unwrap();
    handle.plug();

    let report = run_probe(&map, &running, &stop).await;
    assert!(report.answered);
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.state, Some(Ok(Iec61851State::C2)));
    assert_eq!(report.status.status.as_str(), "Charging");
    let state = report.register("state").unwrap();
    assert_eq!(state.outcome, Outcome::Words(vec![7]));
    let limit = report.register("limit").unwrap();
    assert_eq!(limit.outcome, Outcome::Words(vec![160]));
    assert_eq!(limit.value, Some(Value::Number(16.0)));
    let text = report.to_string();
    assert!(text.contains("IEC 61851 state: C2 (raw 7)"), "{text}");
    assert!(
        text.contains("OCPP status (no transaction): Charging"),
        "{text}"
    );
    assert!(text.contains("0108"), "raw words in hex: {text}");
    assert!(
        handle.snapshot().last_write.is_none(),
        "probe must not write"
    );
    stop.cancel();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn registers_the_device_refuses_are_named_one_by_one() {
    let stop = CancellationToken::new();
    // The device rejects any read touching an address it does not have (max_gap: 0) ...
    let device = heidelberg_with(&[("max_gap: 8 ", "max_gap: 0 ")]);
    let (running, handle) = sim(device, &stop).await;
    handle.plug();
    // ... and the installer's map declares two registers it does not have, inside the block.
    let map = heidelberg_with(&[(
        "  hw_max_current:",
        "  extra_a:               { input: 19 }\n  extra_b:               { input: 20 }\n  hw_max_current:",
    )]);
    let report = run_probe(&map, &running, &stop).await;
    assert!(report.answered, "exceptions are answers");
    assert_eq!(report.exit_code(), 0);
    assert_eq!(
        report.register("extra_a").unwrap().outcome,
        Outcome::Exception(2)
    );
    assert_eq!(
        report.register("extra_b").unwrap().outcome,
        Outcome::Exception(2)
    );
    // Everything else in the refused block was still read.
    assert!(matches!(
        report.register("energy").unwrap().outcome,
        Outcome::Words(_)
    ));
    assert_eq!(report.state, Some(Ok(Iec61851State::B1)));
    let text = report.to_string();
    assert!(
        text.contains("extra_a: the device refuses it (exception 0x02, illegal data address)"),
        "{text}"
    );
    stop.cancel();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn a_wrong_word_order_and_an_all_ones_value_are_pointed_out() {
    let stop = CancellationToken::new();
    let device = devicemap::resolve(HEIDELBERG, &[]).unwrap();
    let (running, handle) = sim(device, &stop).await;
    handle
        .set_register("energy", &Value::Number(1234.0))
        .unwrap();
    handle
        .set_register("watchdog", &Value::Number(65535.0))
        .unwrap();
    let map = heidelberg_with(&[(
        "energy:                { input: 17, type: u32 }",
        "energy:                { input: 17, type: u32, word_order: little }",
    )]);
    let report = run_probe(&map, &running, &stop).await;
    let energy = report.register("energy").unwrap();
    assert_eq!(energy.outcome, Outcome::Words(vec![0, 1234]));
    assert_eq!(
        energy.findings,
        vec![Finding::LooksSwapped {
            swapped: 1234.0,
            order: devicemap::WordOrder::Big
        }]
    );
    assert_eq!(
        report.register("watchdog").unwrap().findings,
        vec![Finding::AllOnes { raw: 0xFFFF }]
    );
    let text = report.to_string();
    assert!(
        text.contains("energy: the words look swapped: with `word_order: big` it reads 1234"),
        "{text}"
    );
    assert!(text.contains("watchdog: reads 0xFFFF"), "{text}");
    stop.cancel();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn a_silent_device_is_reported_with_what_to_check() {
    let stop = CancellationToken::new();
    let map = devicemap::resolve(HEIDELBERG, &[]).unwrap();
    let (running, handle) = sim(map.clone(), &stop).await;
    handle.set_silent(true);
    let report = run_probe(&map, &running, &stop).await;
    assert!(!report.answered);
    assert_eq!(report.exit_code(), 2);
    assert_eq!(report.state, None);
    assert!(
        report
            .registers
            .iter()
            .all(|r| matches!(r.outcome, Outcome::NoAnswer(_) | Outcome::NotRead))
    );
    let text = report.to_string();
    assert!(text.contains("The device did not answer"), "{text}");
    assert!(
        text.contains("OCPP status (no transaction): unknown"),
        "no status is invented for a silent device: {text}"
    );
    assert!(text.contains("unit id"), "{text}");
    stop.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_subcommand_exits_0_when_answered_and_2_when_not() {
    let stop = CancellationToken::new();
    let map = devicemap::resolve("vestel-evc04", &[]).unwrap();
    let (running, handle) = sim(map, &stop).await;
    let addr = running.tcp_addr.unwrap().to_string();
    let run = |addr: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_chargebridge"))
                .args(["probe", "--map", "vestel-evc04", "--tcp", &addr])
                .output()
                .unwrap()
        })
    };
    let out = run(addr.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("IEC 61851 state: A"), "{stdout}");
    assert!(
        stdout.contains("(write-only, not read)"),
        "the alive register: {stdout}"
    );

    handle.set_silent(true);
    let out = run(addr).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    stop.cancel();
    running.wait().await.unwrap();
}

/// RS-485: `chargebridge probe --serial` against the simulator on the other end of a pty pair,
/// with the map's serial defaults (MENNEKES AMTRON Compact: 57600 8N2, unit 50).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_subcommand_reads_an_rs485_wallbox() {
    let pty = chargebridge::modbus::PtyPair::open().unwrap();
    let stop = CancellationToken::new();
    let map = devicemap::resolve("mennekes-amtron-compact", &[]).unwrap();
    let args = SimArgs {
        map: "mennekes-amtron-compact".into(),
        serial: Some(pty.b.clone().into()),
        plugged: true,
        ..SimArgs::default()
    };
    let running = spawn(args, map, stop.clone()).await.unwrap();
    let path = pty.a.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_chargebridge"))
            .args([
                "probe",
                "--map",
                "mennekes-amtron-compact",
                "--serial",
                &path,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("unit 50"), "{stdout}");
    assert!(stdout.contains("IEC 61851 state: B1 (raw 11)"), "{stdout}");
    assert!(
        stdout.contains("OCPP status (no transaction): Preparing"),
        "{stdout}"
    );
    stop.cancel();
    running.wait().await.unwrap();
}
