//! `chargebridge demo`: the whole path on loopback with nothing but the binary.
//!
//! Two simulated Heidelberg Energy Control wallboxes share one simulated RS-485 line (a pty
//! pair made in-process, 19200 8E1), a simulated Alfen Eve speaks Modbus TCP, the small central
//! system listens on loopback behind TLS with a throwaway CA, and the real gateway (the same
//! configuration loader and tasks as `run`) sits between them. The demo plugs in an EV at
//! each wallbox, lets it charge, unplugs it, prints what the central system sees, and exits
//! 0 when every wallbox has been through one full cycle.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::devicemap;
use crate::modbus::PtyPair;
use crate::sim::csms::{Csms, CsmsEvent, CsmsHandle, CsmsOptions};
use crate::sim::pki::TestPki;
use crate::sim::{SimArgs, SimHandle};

/// Prints a timeline line; a reader that went away (`demo | head`) is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The RS-485 wallboxes.
const MAP: &str = "heidelberg-energy-control";
/// The Modbus TCP wallbox.
const TCP_MAP: &str = "alfen-eve-single";
const CHARGERS: [&str; 3] = ["DEMO-RTU-1", "DEMO-RTU-2", "DEMO-TCP-3"];
/// How long each EV charges before it is unplugged.
const CHARGE_FOR: Duration = Duration::from_secs(12);
/// A demo that has not finished by then has failed.
const DEADLINE: Duration = Duration::from_secs(120);

/// Runs the demo; with `forever`, keeps plugging and unplugging until Ctrl-C.
///
/// # Errors
/// Anything that keeps the demo from completing a cycle, e.g. a pty or socket that cannot be
/// opened, or a cycle that does not finish within two minutes.
pub async fn run(forever: bool) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let result = run_inner(forever, shutdown.clone()).await;
    shutdown.cancel();
    result
}

async fn run_inner(forever: bool, shutdown: CancellationToken) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let map = devicemap::resolve(MAP, &[]).map_err(|d| anyhow::anyhow!("{d}"))?;
    let tcp_map = devicemap::resolve(TCP_MAP, &[]).map_err(|d| anyhow::anyhow!("{d}"))?;

    // The central system, behind TLS with a throwaway CA.
    let pki = TestPki::generate(&["localhost", "127.0.0.1"]).context("generating certificates")?;
    let ca_file = pki.write_ca(dir.path()).context("writing the CA")?;
    let passwords: HashMap<String, String> = CHARGERS
        .iter()
        .map(|id| ((*id).to_owned(), format!("demo-secret-{id}")))
        .collect();
    let csms = Csms::start(CsmsOptions {
        tls: Some(pki),
        passwords: passwords.clone(),
        reject_unknown: true,
        ..CsmsOptions::default()
    })
    .await
    .context("starting the central system")?;

    // The wallboxes: two units on one simulated RS-485 line, one on Modbus TCP.
    let line = PtyPair::open().context("opening a pty pair for the simulated RS-485 line")?;
    // A register-layout version and lifetime energy counters, as wallboxes in service have.
    let heidelberg = vec![
        "layout_version=0x0108".to_owned(),
        "hw_max_current=16".to_owned(),
        "hw_min_current=6".to_owned(),
        "energy=1250000".to_owned(),
    ];
    let rtu = crate::sim::spawn(
        SimArgs {
            map: MAP.into(),
            serial: Some(line.b.clone().into()),
            units: vec![1, 2],
            set: heidelberg,
            ..SimArgs::default()
        },
        map.clone(),
        shutdown.clone(),
    )
    .await
    .context("starting the RS-485 simulator")?;
    let tcp = crate::sim::spawn(
        SimArgs {
            map: TCP_MAP.into(),
            tcp: Some(([127, 0, 0, 1], 0).into()),
            units: vec![1],
            set: vec!["energy=3480120".to_owned(), "phases=3".to_owned()],
            ..SimArgs::default()
        },
        tcp_map,
        shutdown.clone(),
    )
    .await
    .context("starting the Modbus TCP simulator")?;
    let tcp_addr = tcp.tcp_addr.context("the TCP simulator has no address")?;

    let mut wallboxes: HashMap<&str, SimHandle> = HashMap::new();
    for (unit, handle) in &rtu.units {
        wallboxes.insert(
            if *unit == 1 { CHARGERS[0] } else { CHARGERS[1] },
            handle.clone(),
        );
    }
    if let Some((_, handle)) = tcp.units.first() {
        wallboxes.insert(CHARGERS[2], handle.clone());
    }

    // The gateway, configured through the same file format and loader as `run`.
    let config_path = write_config(
        dir.path(),
        &csms,
        &ca_file,
        &line.a,
        &tcp_addr.to_string(),
        &passwords,
    )?;
    let resolve = |name: &str, dirs: &[std::path::PathBuf]| {
        devicemap::resolve(name, dirs)
            .map(Arc::new)
            .map_err(|d| d.to_string())
    };
    let cfg = config::load_in(&config_path, &resolve).map_err(|d| anyhow::anyhow!("{d}"))?;
    out!(
        "chargebridge demo: {} wallboxes, central system at {}",
        CHARGERS.len(),
        csms.url()
    );
    out!(
        "  {} and {} on a simulated RS-485 line ({} <-> {}, 19200 8E1)",
        CHARGERS[0],
        CHARGERS[1],
        line.a,
        line.b
    );
    out!("  {} ({TCP_MAP}) on Modbus TCP {tcp_addr}", CHARGERS[2]);
    let gateway = tokio::spawn(crate::gateway::run(cfg, shutdown.clone()));

    let outcome = drive(&csms, &wallboxes, started, forever).await;
    shutdown.cancel();
    let _ = gateway.await;
    let _ = rtu.wait().await;
    let _ = tcp.wait().await;
    drop(line);
    outcome
}

fn write_config(
    dir: &Path,
    csms: &CsmsHandle,
    ca_file: &Path,
    rtu_port: &str,
    tcp_addr: &str,
    passwords: &HashMap<String, String>,
) -> anyhow::Result<std::path::PathBuf> {
    let url = csms.url().replace("127.0.0.1", "localhost");
    let mut yaml = format!(
        "state_dir: {dir}\nlog: {{ format: text, filter: warn }}\ndevice_map_dirs: []\n\
         csms:\n  url: {url}\n  security_profile: 2\n  ca_file: {ca}\n\
         buses:\n  rs485-1: {{ port: {rtu_port}, baud: 19200, parity: even, data_bits: 8, stop_bits: 1 }}\n\
         chargers:\n",
        dir = dir.display(),
        ca = ca_file.display(),
    );
    for (i, id) in CHARGERS.iter().enumerate() {
        let secret = dir.join(format!("{id}.secret"));
        std::fs::write(&secret, format!("{}\n", passwords[*id]))
            .context("writing a password file")?;
        let (map, link) = if i < 2 {
            (MAP, format!("bus: rs485-1\n    unit: {}", i + 1))
        } else {
            (TCP_MAP, format!("tcp: {tcp_addr}\n    unit: 1"))
        };
        let _ = write!(
            yaml,
            "  - id: {id}\n    device_map: {map}\n    {link}\n    password_file: {secret}\n    \
             max_current: 16\n    failsafe_current: 6\n    poll_interval: 1s\n",
            secret = secret.display()
        );
    }
    let path = dir.join("chargebridge.yaml");
    std::fs::write(&path, yaml).context("writing the demo configuration")?;
    Ok(path)
}

/// Where each wallbox is in its demo cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    WaitingForBoot,
    Booted(Instant),
    Charging(Instant),
    Unplugged,
    Done,
}

async fn drive(
    csms: &CsmsHandle,
    wallboxes: &HashMap<&str, SimHandle>,
    started: Instant,
    forever: bool,
) -> anyhow::Result<()> {
    let mut events = csms.subscribe();
    let mut phase: HashMap<&str, Phase> = CHARGERS
        .iter()
        .map(|c| (*c, Phase::WaitingForBoot))
        .collect();
    let mut configured = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        if !forever && phase.values().all(|p| *p == Phase::Done) {
            out!(
                "{} every wallbox completed a charging cycle",
                stamp(started)
            );
            return Ok(());
        }
        if !forever && started.elapsed() > DEADLINE {
            bail!(
                "the demo did not complete within {} s; phases: {phase:?}",
                DEADLINE.as_secs()
            );
        }
        tokio::select! {
            event = events.recv() => match event {
                Ok(timed) => {
                    let event = timed.event;
                    if let Some(line) = describe(&event) {
                        out!("{} {line}", stamp(started));
                    }
                    let charger = event.charger().to_owned();
                    let Some(id) = CHARGERS.iter().find(|c| **c == charger).copied() else { continue };
                    if let CsmsEvent::Call { action, payload, .. } = &event {
                        match action.as_str() {
                            "BootNotification" if configured.insert(id) => {
                                // What a platform does on connect: sample meter values often.
                                let csms = csms.clone();
                                tokio::spawn(async move {
                                    let _ = csms.call(id, "ChangeConfiguration", json!({"key": "MeterValueSampleInterval", "value": "5"})).await;
                                    let _ = csms.call(id, "ChangeConfiguration", json!({"key": "MeterValuesSampledData", "value": "Energy.Active.Import.Register,Power.Active.Import"})).await;
                                });
                                phase.insert(id, Phase::Booted(Instant::now()));
                            }
                            "StatusNotification"
                                if payload["connectorId"] == 1
                                    && payload["status"] == "Available"
                                    && phase.get(id) == Some(&Phase::Unplugged) =>
                            {
                                phase.insert(id, if forever { Phase::Booted(Instant::now()) } else { Phase::Done });
                            }
                            _ => {}
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => bail!("the central system stopped"),
            },
            _ = tick.tick() => {
                for (i, id) in CHARGERS.iter().enumerate() {
                    let Some(wb) = wallboxes.get(id) else { continue };
                    match phase.get(id).copied() {
                        // Stagger the plug-ins so the timeline reads well.
                        Some(Phase::Booted(t)) if t.elapsed() >= Duration::from_secs(2 + 2 * i as u64) => {
                            out!("{} {id:<11} EV plugged in", stamp(started));
                            wb.plug();
                            phase.insert(id, Phase::Charging(Instant::now()));
                        }
                        Some(Phase::Charging(t)) if t.elapsed() >= CHARGE_FOR => {
                            let s = wb.snapshot();
                            out!("{} {id:<11} EV unplugged at {:.0} Wh", stamp(started), s.energy_wh);
                            wb.unplug();
                            phase.insert(id, Phase::Unplugged);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

fn stamp(started: Instant) -> String {
    format!("[{:>6.2}s]", started.elapsed().as_secs_f64())
}

/// One timeline line for what the central system saw, or `None` for noise.
fn describe(event: &CsmsEvent) -> Option<String> {
    Some(match event {
        CsmsEvent::Connected { charger } => format!("{charger:<11} connected (wss, Basic Auth)"),
        CsmsEvent::Disconnected { charger } => format!("{charger:<11} disconnected"),
        CsmsEvent::Rejected { charger, status } => {
            format!("{charger:<11} refused with HTTP {status}")
        }
        CsmsEvent::Unsolicited { .. } => return None,
        CsmsEvent::Call {
            charger,
            action,
            payload,
        } => {
            let detail = match action.as_str() {
                "BootNotification" => format!(
                    "{} {} firmware {}",
                    payload["chargePointVendor"].as_str().unwrap_or("?"),
                    payload["chargePointModel"].as_str().unwrap_or("?"),
                    payload["firmwareVersion"].as_str().unwrap_or("-")
                ),
                "StatusNotification" => format!(
                    "connector {} {}{}",
                    payload["connectorId"],
                    payload["status"].as_str().unwrap_or("?"),
                    payload["vendorErrorCode"]
                        .as_str()
                        .map(|v| format!(" ({v})"))
                        .unwrap_or_default()
                ),
                "StartTransaction" => format!(
                    "idTag {} meterStart {} Wh",
                    payload["idTag"].as_str().unwrap_or("?"),
                    payload["meterStart"]
                ),
                "StopTransaction" => format!(
                    "transaction {} meterStop {} Wh, reason {}",
                    payload["transactionId"],
                    payload["meterStop"],
                    payload["reason"].as_str().unwrap_or("Local")
                ),
                "MeterValues" => meter_summary(payload),
                "Heartbeat" => return None,
                _ => String::new(),
            };
            format!("{charger:<11} {action} {detail}")
        }
    })
}

fn meter_summary(payload: &Value) -> String {
    let mut parts = Vec::new();
    for mv in payload["meterValue"].as_array().into_iter().flatten() {
        for sv in mv["sampledValue"].as_array().into_iter().flatten() {
            parts.push(format!(
                "{} {}{}",
                sv["measurand"]
                    .as_str()
                    .unwrap_or("Energy.Active.Import.Register"),
                sv["value"].as_str().unwrap_or("?"),
                sv["unit"]
                    .as_str()
                    .map(|u| format!(" {u}"))
                    .unwrap_or_default()
            ));
        }
    }
    parts.join(", ")
}
