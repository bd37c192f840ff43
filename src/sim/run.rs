//! `chargebridge sim`: simulated wallboxes on Modbus TCP or a serial line, with an optional
//! script and control socket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::device::parse_register_value;
use super::device::{SimDevice, SimOptions};
use super::ev::Ev;
use super::handle::SimHandle;
use super::script::{parse_script, run_script};
use super::{control, rtu, tcp};
use crate::devicemap::{DeviceMap, Parity, SerialSettings};

/// The `sim` subcommand's arguments (the CLI layer fills this in).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimArgs {
    /// `--map NAME|PATH`, for messages (the caller loads the map).
    pub map: String,
    /// `--tcp ADDR:PORT`: serve Modbus TCP (port 0 picks a free port; see [`RunningSim`]).
    pub tcp: Option<SocketAddr>,
    /// `--serial PATH`: serve Modbus RTU on this serial device (e.g. one end of a socat pty pair).
    pub serial: Option<PathBuf>,
    /// `--baud N`; default: the map's serial settings, else 19200.
    pub baud: Option<u32>,
    /// `--parity none|even|odd`; default: the map's.
    pub parity: Option<Parity>,
    /// `--data-bits 7|8`; default: the map's.
    pub data_bits: Option<u8>,
    /// `--stop-bits 1|2`; default: the map's.
    pub stop_bits: Option<u8>,
    /// `--unit N`, repeatable: one simulated wallbox per unit; default: the map's unit.
    pub units: Vec<u8>,
    /// `--script plug@2s,unplug@30s,…`, applied to every unit.
    pub script: Option<String>,
    /// `--control ADDR:PORT`: the line-protocol control socket.
    pub control: Option<SocketAddr>,
    /// `--set NAME=VALUE`, repeatable: initial register values (`layout_version=0x0108`).
    pub set: Vec<String>,
    /// `--plugged`: start with the EV plugged in.
    pub plugged: bool,
    /// `--ev-max-current A` (default 16).
    pub ev_max_current: Option<f64>,
    /// `--phases 1|2|3`; default from the map, else 3.
    pub phases: Option<u8>,
    /// `--voltage V` (default 230).
    pub voltage: Option<f64>,
}

/// A started simulator: the addresses it listens on and its wallboxes.
#[derive(Debug)]
pub struct RunningSim {
    /// The Modbus TCP address actually bound (with the real port for port 0).
    pub tcp_addr: Option<SocketAddr>,
    /// The control socket's address actually bound.
    pub control_addr: Option<SocketAddr>,
    /// The simulated wallboxes by unit id.
    pub units: Vec<(u8, SimHandle)>,
    /// Ends when the Modbus server ends (after `shutdown`, or with its error).
    pub server: JoinHandle<anyhow::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

impl RunningSim {
    /// Waits for the Modbus server to end, then stops the script and control socket.
    ///
    /// # Errors
    /// The server's error (a serial port that fails, a listener that breaks).
    pub async fn wait(self) -> anyhow::Result<()> {
        let result = match self.server.await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("simulator server task failed: {e}")),
        };
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        result
    }
}

/// Builds the options for one wallbox from the arguments.
///
/// # Errors
/// A `--set` without `=`, naming an unknown register or with a value that does not fit.
pub fn options(args: &SimArgs, map: &DeviceMap) -> anyhow::Result<SimOptions> {
    let mut initial = Vec::new();
    for item in &args.set {
        let (name, value) = item.split_once('=').with_context(|| {
            format!("--set `{item}`: write NAME=VALUE, e.g. layout_version=0x0108")
        })?;
        let name = name.trim();
        let value =
            parse_register_value(map, name, value).with_context(|| format!("--set `{item}`"))?;
        initial.push((name.to_owned(), value));
    }
    let ev = Ev {
        plugged: args.plugged,
        max_current_a: args.ev_max_current.unwrap_or(16.0),
        full: false,
    };
    Ok(SimOptions {
        initial,
        phases: args.phases,
        voltage_v: args.voltage.unwrap_or(230.0),
        ev,
        max_current_a: None,
    })
}

/// Starts the simulator: binds every socket before returning, so the caller can print or
/// connect to the addresses at once.
///
/// # Errors
/// Invalid arguments (exactly one of `tcp` and `serial`, a bad script or `--set`), a
/// socket or serial port that cannot be opened.
pub async fn spawn(
    args: SimArgs,
    map: DeviceMap,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningSim> {
    let steps = args
        .script
        .as_deref()
        .map(parse_script)
        .transpose()?
        .unwrap_or_default();
    let opts = options(&args, &map)?;
    let map = Arc::new(map);
    let unit_ids = if args.units.is_empty() {
        vec![map.modbus.unit]
    } else {
        args.units.clone()
    };
    let mut units = Vec::new();
    for unit in unit_ids {
        if units.iter().any(|(u, _)| *u == unit) {
            bail!("unit {unit} is given twice");
        }
        let device = SimDevice::new(Arc::clone(&map), opts.clone())
            .with_context(|| format!("simulated wallbox for map `{}`", args.map))?;
        units.push((unit, SimHandle::new(device)));
    }
    let stop = shutdown.child_token();
    let (server, tcp_addr) = match (&args.tcp, &args.serial) {
        (Some(addr), None) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for Modbus TCP on {addr}"))?;
            let bound = listener.local_addr()?;
            tracing::info!(addr = %bound, map = %args.map, "simulator serving Modbus TCP");
            let (u, s) = (units.clone(), stop.clone());
            let task = tokio::spawn(async move {
                tcp::serve_tcp(listener, u, s)
                    .await
                    .context("Modbus TCP server failed")
            });
            (task, Some(bound))
        }
        (None, Some(path)) => {
            let defaults = map.modbus.serial.unwrap_or(SerialSettings {
                baud: 19_200,
                parity: Parity::Even,
                data_bits: 8,
                stop_bits: 1,
            });
            let settings = SerialSettings {
                baud: args.baud.unwrap_or(defaults.baud),
                parity: args.parity.unwrap_or(defaults.parity),
                data_bits: args.data_bits.unwrap_or(defaults.data_bits),
                stop_bits: args.stop_bits.unwrap_or(defaults.stop_bits),
            };
            let stream = rtu::open_serial(path, settings)?;
            tracing::info!(port = %path.display(), map = %args.map, "simulator serving Modbus RTU");
            let (u, s) = (units.clone(), stop.clone());
            let task = tokio::spawn(async move {
                rtu::serve_rtu_stream(stream, settings.baud, u, s)
                    .await
                    .context("Modbus RTU server failed")
            });
            (task, None)
        }
        _ => bail!("give exactly one of --tcp ADDR:PORT and --serial PATH"),
    };
    let mut tasks = Vec::new();
    let mut control_addr = None;
    if let Some(addr) = args.control {
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                stop.cancel();
                return Err(e).with_context(|| format!("cannot listen for control on {addr}"));
            }
        };
        let bound = listener.local_addr()?;
        tracing::info!(addr = %bound, "simulator control socket");
        control_addr = Some(bound);
        let (u, s) = (units.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = control::serve_control(listener, u, s).await {
                tracing::warn!(error = %e, "control socket failed");
            }
        }));
    }
    if !steps.is_empty() {
        let handles = units.iter().map(|(_, h)| h.clone()).collect();
        tasks.push(tokio::spawn(run_script(handles, steps, stop.clone())));
    }
    Ok(RunningSim {
        tcp_addr,
        control_addr,
        units,
        server,
        tasks,
        stop,
    })
}

/// Runs the simulator until `shutdown` (the `chargebridge sim` subcommand).
///
/// # Errors
/// As [`spawn`], and a server that fails while running.
pub async fn run(args: SimArgs, map: DeviceMap, shutdown: CancellationToken) -> anyhow::Result<()> {
    spawn(args, map, shutdown).await?.wait().await
}
