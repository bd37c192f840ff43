//! The command line (interfaces.md §1). Exit codes: 0 ok, 1 invalid input, 2 runtime failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::devicemap::{self, DeviceMap, Parity};

/// chargebridge: Modbus wallboxes as OCPP 1.6J charge points.
#[derive(Debug, Parser)]
#[command(name = "chargebridge", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter, RUST_LOG syntax (e.g. `info,chargebridge::modbus=debug`).
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway daemon.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "/etc/chargebridge/chargebridge.yaml")]
        config: PathBuf,
    },
    /// Validate the configuration and every device map it uses.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = "/etc/chargebridge/chargebridge.yaml")]
        config: PathBuf,
    },
    /// List the built-in device maps, or print one.
    Maps {
        /// Print this map (a built-in name or a path) with a summary of what it declares.
        #[arg(long)]
        show: Option<String>,
    },
    /// Read every register of a device map once from a live wallbox (writes nothing): raw
    /// words, decoded values, the IEC 61851 state and OCPP status, and likely map mistakes.
    /// Exit 0 if the wallbox answered, 2 if not.
    Probe(Box<ProbeCommand>),
    /// Run a simulated wallbox that speaks a device map's registers.
    Sim(Box<SimCommand>),
    /// Everything on loopback: simulated wallboxes, the gateway and a small central system.
    Demo {
        /// Keep running after the first full charging cycle.
        #[arg(long)]
        forever: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ProbeCommand {
    /// Device map: a built-in name or a path to a YAML file.
    #[arg(long)]
    map: String,
    /// Modbus TCP wallbox, HOST:PORT (e.g. 192.168.10.21:502).
    #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
    tcp: Option<String>,
    /// Serial port of the RS-485 line (Modbus RTU), e.g. /dev/ttyUSB0.
    #[arg(long)]
    serial: Option<PathBuf>,
    /// Baud rate (default: the map's).
    #[arg(long, requires = "serial")]
    baud: Option<u32>,
    /// Parity (default: the map's).
    #[arg(long, value_enum, requires = "serial")]
    parity: Option<ParityArg>,
    /// Stop bits, 1 or 2 (default: the map's).
    #[arg(long, requires = "serial", value_parser = clap::value_parser!(u8).range(1..=2))]
    stop_bits: Option<u8>,
    /// Unit (slave) id (default: the map's).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=255))]
    unit: Option<u8>,
}

#[derive(Debug, clap::Args)]
struct SimCommand {
    /// Device map: a built-in name or a path to a YAML file.
    #[arg(long)]
    map: String,
    /// Serve Modbus TCP on this address (port 0 picks a free one).
    #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
    tcp: Option<std::net::SocketAddr>,
    /// Serve Modbus RTU on this serial device (e.g. one end of a socat pty pair).
    #[arg(long)]
    serial: Option<PathBuf>,
    /// Baud rate (default: the map's).
    #[arg(long)]
    baud: Option<u32>,
    /// Parity (default: the map's).
    #[arg(long, value_enum)]
    parity: Option<ParityArg>,
    /// Data bits (default: the map's).
    #[arg(long)]
    data_bits: Option<u8>,
    /// Stop bits (default: the map's).
    #[arg(long)]
    stop_bits: Option<u8>,
    /// Unit id(s) to serve; repeat for several simulated wallboxes on one line.
    #[arg(long)]
    unit: Vec<u8>,
    /// Script, e.g. `plug@2s,unplug@30s,fault@40s,clear@45s`.
    #[arg(long)]
    script: Option<String>,
    /// Control socket address (line protocol: plug, unplug, fault F, clear, evmax A, status).
    #[arg(long)]
    control: Option<std::net::SocketAddr>,
    /// Initial register value, repeatable: `--set layout_version=0x0108`.
    #[arg(long)]
    set: Vec<String>,
    /// Start with the EV plugged in.
    #[arg(long)]
    plugged: bool,
    /// The EV's maximum current in A (default 16).
    #[arg(long)]
    ev_max_current: Option<f64>,
    /// Phases the EV charges on (default: from the map, else 3).
    #[arg(long)]
    phases: Option<u8>,
    /// Phase voltage in V (default 230).
    #[arg(long)]
    voltage: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ParityArg {
    None,
    Even,
    Odd,
}

impl From<ParityArg> for Parity {
    fn from(p: ParityArg) -> Self {
        match p {
            ParityArg::None => Parity::None,
            ParityArg::Even => Parity::Even,
            ParityArg::Odd => Parity::Odd,
        }
    }
}

/// Exit code for invalid input.
const INVALID: u8 = 1;
/// Exit code for runtime failures.
const FAILED: u8 = 2;

/// Entry point of the binary.
#[must_use]
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { INVALID } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Maps { show } => maps(show.as_deref()),
        Command::Check { config } => match load_config(&config) {
            Ok(cfg) => print_out(&format!(
                "{}: ok ({} charger(s), {} bus(es))\n",
                config.display(),
                cfg.chargers.len(),
                cfg.buses.len()
            )),
            Err(code) => code,
        },
        Command::Run { config } => {
            let cfg = match load_config(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            let format = cli.log_format.unwrap_or(match cfg.log.format {
                config::LogFormat::Json => LogFormat::Json,
                config::LogFormat::Text => LogFormat::Text,
            });
            init_logging(format, cli.log.as_deref().unwrap_or(&cfg.log.filter));
            runtime(async move {
                let shutdown = CancellationToken::new();
                spawn_signal_handler(shutdown.clone());
                let reload = crate::gateway::Reload {
                    requests: spawn_reload_signal(),
                    load: Box::new(move || load_config_text(&config)),
                };
                crate::gateway::run_with_reload(cfg, Some(reload), shutdown).await
            })
        }
        Command::Probe(args) => {
            init_logging(
                cli.log_format.unwrap_or(LogFormat::Text),
                cli.log.as_deref().unwrap_or("warn"),
            );
            probe(&args)
        }
        Command::Sim(args) => {
            let args = *args;
            init_logging(
                cli.log_format.unwrap_or(LogFormat::Text),
                cli.log.as_deref().unwrap_or("info"),
            );
            let map = match resolve_map(&args.map, &[]) {
                Ok(m) => m,
                Err(code) => return code,
            };
            let sim_args = crate::sim::SimArgs {
                map: args.map,
                tcp: args.tcp,
                serial: args.serial,
                baud: args.baud,
                parity: args.parity.map(Into::into),
                data_bits: args.data_bits,
                stop_bits: args.stop_bits,
                units: args.unit,
                script: args.script,
                control: args.control,
                set: args.set,
                plugged: args.plugged,
                ev_max_current: args.ev_max_current,
                phases: args.phases,
                voltage: args.voltage,
            };
            runtime(async move {
                let shutdown = CancellationToken::new();
                spawn_signal_handler(shutdown.clone());
                crate::sim::run(sim_args, map, shutdown).await
            })
        }
        Command::Demo { forever } => {
            init_logging(
                cli.log_format.unwrap_or(LogFormat::Text),
                cli.log.as_deref().unwrap_or("warn"),
            );
            runtime(crate::demo::run(forever))
        }
    }
}

fn runtime(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(FAILED);
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(FAILED)
        }
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = tokio::signal::ctrl_c().await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        shutdown.cancel();
    });
}

/// One message per SIGHUP: the daemon reloads its configuration (the usual Unix convention,
/// and what `systemctl reload` sends with the packaged unit).
fn spawn_reload_signal() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP, reload is unavailable: {e}");
                return;
            }
        };
        while hup.recv().await.is_some() {
            // A reload already waiting covers this one too.
            let _ = tx.try_send(());
        }
    });
    rx
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves a map name or path, printing located errors.
fn resolve_map(name: &str, dirs: &[PathBuf]) -> Result<DeviceMap, ExitCode> {
    devicemap::resolve(name, dirs).map_err(|d| {
        eprintln!("{d}");
        ExitCode::from(INVALID)
    })
}

/// Loads a configuration and its device maps, printing every problem with its location.
fn load_config(path: &Path) -> Result<Config, ExitCode> {
    let resolve = |name: &str, dirs: &[PathBuf]| {
        devicemap::resolve(name, dirs)
            .map(Arc::new)
            .map_err(|d| d.to_string())
    };
    config::load_in(path, &resolve).map_err(|d| {
        eprintln!("{d}");
        ExitCode::from(INVALID)
    })
}

/// `chargebridge probe`: exit 0 when the wallbox answered, 2 when it did not, 1 for bad input.
fn probe(args: &ProbeCommand) -> ExitCode {
    let map = match resolve_map(&args.map, &[]) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let endpoint = match (&args.tcp, &args.serial) {
        (Some(addr), _) => crate::modbus::Endpoint::Tcp { addr: addr.clone() },
        (None, Some(path)) => {
            let defaults = map.modbus.serial;
            let Some(baud) = args.baud.or(defaults.map(|s| s.baud)) else {
                eprintln!(
                    "error: map `{}` has no serial settings (a TCP device?); give --baud (and --parity, --stop-bits)",
                    map.name
                );
                return ExitCode::from(INVALID);
            };
            crate::modbus::Endpoint::Serial {
                path: path.display().to_string(),
                settings: devicemap::SerialSettings {
                    baud,
                    parity: args
                        .parity
                        .map(Into::into)
                        .or(defaults.map(|s| s.parity))
                        .unwrap_or(Parity::None),
                    data_bits: defaults.map_or(8, |s| s.data_bits),
                    stop_bits: args
                        .stop_bits
                        .or(defaults.map(|s| s.stop_bits))
                        .unwrap_or(1),
                },
            }
        }
        (None, None) => {
            eprintln!("error: give --tcp HOST:PORT or --serial PATH");
            return ExitCode::from(INVALID);
        }
    };
    let unit = args.unit.unwrap_or(map.modbus.unit);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(FAILED);
        }
    };
    let report = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let bus = crate::modbus::spawn_bus("probe".into(), endpoint, shutdown.clone());
        let timing = crate::modbus::DeviceTiming::from(&map.modbus);
        let report = crate::probe::probe(&map, &bus, unit, &timing).await;
        shutdown.cancel();
        report
    });
    let printed = print_out(&report.to_string());
    if printed == ExitCode::SUCCESS {
        ExitCode::from(report.exit_code())
    } else {
        printed
    }
}

/// Loads a configuration and its device maps like [`load_config`], returning the located
/// problems as text (for a reload, where they are logged).
fn load_config_text(path: &Path) -> Result<Config, String> {
    let resolve = |name: &str, dirs: &[PathBuf]| {
        devicemap::resolve(name, dirs)
            .map(Arc::new)
            .map_err(|d| d.to_string())
    };
    config::load_in(path, &resolve).map_err(|d| d.to_string())
}

fn maps(show: Option<&str>) -> ExitCode {
    let text = match show {
        None => {
            let mut out = String::new();
            for name in devicemap::builtin_names() {
                let line = match devicemap::resolve(name, &[]) {
                    Ok(map) => format!("{name:<32} {} {}\n", map.vendor, map.model),
                    Err(_) => format!("{name:<32} (invalid)\n"),
                };
                out.push_str(&line);
            }
            out
        }
        Some(name) => {
            let map = match resolve_map(name, &[]) {
                Ok(m) => m,
                Err(code) => return code,
            };
            let source = devicemap::builtin_source(name)
                .map(str::to_owned)
                .or_else(|| std::fs::read_to_string(name).ok())
                .unwrap_or_default();
            format!("{source}\n{}\n", devicemap::describe(&map))
        }
    };
    print_out(&text)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print_out(text: &str) -> ExitCode {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: writing to stdout: {e}");
            ExitCode::from(FAILED)
        }
        _ => ExitCode::SUCCESS,
    }
}
