//! `chargebridge bench scale`: N wallboxes over Modbus TCP, each with its own OCPP session
//! over TLS, against the real gateway binary (`chargebridge run -c <generated config>`) as a
//! child process.
//!
//! The load generators live in this process: one simulated wallbox per Modbus TCP listener
//! (as in a car park, where every wallbox has its own address), and the loopback central
//! system behind TLS with Basic Auth. The gateway's CPU time and memory are read from
//! `/proc/<pid>`, so they do not include the generators.
//!
//! Phases, each timed:
//! 1. start: the gateway process is spawned; time until every BootNotification is in.
//! 2. idle: every wallbox polled each `--poll`, no EV; CPU and memory over `--window`.
//! 3. plug-in: each EV is plugged in once, spread over 10 s; latency from the plug-in (the
//!    wallbox's state register changes) to the StatusNotification the central system gets.
//! 4. charging: every wallbox charging, MeterValueSampleInterval 10 s (set with
//!    ChangeConfiguration); CPU and memory over `--window`.
//! 5. limits: SetChargingProfile (TxDefaultProfile, alternately 10 A and 8 A) to every
//!    charger, spread over 10 s; latency from the CALL to the reply, to the limit register
//!    written on the wallbox, and to the gateway reading it back (the verification).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::out;
use super::procfs::{self, ProcSample};
use super::stats::{Summary, ms, summarize};
use crate::devicemap::{self, Register, codec};
use crate::sim::csms::{Csms, CsmsEvent, CsmsHandle, CsmsOptions, TimedEvent};
use crate::sim::pki::TestPki;
use crate::sim::{SimDevice, SimHandle, pdu};

/// `bench scale` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct ScaleArgs {
    /// Number of wallboxes (and OCPP sessions).
    #[arg(long, default_value_t = 50)]
    pub chargers: usize,
    /// Poll interval of every charger, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub poll_ms: u64,
    /// Length of each CPU measurement window, seconds.
    #[arg(long, default_value_t = 30)]
    pub window: u64,
    /// Device map of the simulated wallboxes (a Modbus TCP map).
    #[arg(long, default_value = "alfen-eve-single")]
    pub map: String,
    /// The gateway binary (default: this executable).
    #[arg(long)]
    pub gateway: Option<PathBuf>,
    /// SetChargingProfile rounds (each sends one profile to every charger).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Keep the generated configuration, state and gateway log in this directory.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

/// How long the whole fleet may take to send its BootNotifications before the run is
/// given up (the target is 10 s; this only bounds a broken run).
const BOOT_DEADLINE: Duration = Duration::from_secs(120);
/// Plug-ins and SetChargingProfile calls are spread over this long.
const SPREAD: Duration = Duration::from_secs(10);
/// After the last stimulus, how long to wait for the slowest answer.
const STRAGGLERS: Duration = Duration::from_secs(15);

/// What the simulated wallbox saw of its current-limit register.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LimitEvent {
    /// The master wrote this value (engineering units).
    Write { at: Instant, value: f64 },
    /// The master read a block covering the register.
    Read { at: Instant },
}

/// One wallbox's limit register and the requests that touched it.
#[derive(Debug)]
struct LimitWatch {
    reg: Register,
    events: Mutex<Vec<LimitEvent>>,
}

impl LimitWatch {
    fn record(&self, event: LimitEvent) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }

    fn events(&self) -> Vec<LimitEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Looks at one request PDU (function code first) and records a write of or a read
    /// covering the limit register.
    fn observe(&self, request: &[u8], at: Instant) {
        let word = |i: usize| {
            request
                .get(i..i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let (Some(&function), Some(start)) = (request.first(), word(1)) else {
            return;
        };
        let first = u32::from(self.reg.address);
        let last = self.reg.last_address();
        let start32 = u32::from(start);
        match function {
            3 => {
                let Some(count) = word(3) else { return };
                if start32 <= first && last < start32 + u32::from(count) {
                    self.record(LimitEvent::Read { at });
                }
            }
            6 if start32 == first && self.reg.words == 1 => {
                if let Some(Ok(Some(v))) = word(3)
                    .map(|w| codec::decode(&self.reg, &[w]).map(|v| v.and_then(|v| v.as_f64())))
                {
                    self.record(LimitEvent::Write { at, value: v });
                }
            }
            16 => {
                let Some(count) = word(3) else { return };
                if start32 > first || last >= start32 + u32::from(count) {
                    return;
                }
                let offset = 6 + 2 * (first - start32) as usize;
                let words: Option<Vec<u16>> = (0..usize::from(self.reg.words))
                    .map(|i| word(offset + 2 * i))
                    .collect();
                if let Some(words) = words
                    && let Ok(Some(v)) = codec::decode(&self.reg, &words)
                    && let Some(value) = v.as_f64()
                {
                    self.record(LimitEvent::Write { at, value });
                }
            }
            _ => {}
        }
    }
}

/// One simulated wallbox with its own listener.
struct Wallbox {
    id: String,
    addr: SocketAddr,
    sim: SimHandle,
    watch: Arc<LimitWatch>,
}

/// Serves one wallbox on `listener` (Modbus TCP, MBAP framing as in `sim::tcp`), recording
/// what touches the limit register.
async fn serve_wallbox(
    listener: TcpListener,
    unit: u8,
    sim: SimHandle,
    watch: Arc<LimitWatch>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let (sim, watch, stop) = (sim.clone(), Arc::clone(&watch), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = connection(stream, unit, &sim, &watch) => {}
                    }
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    unit: u8,
    sim: &SimHandle,
    watch: &LimitWatch,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut header = [0u8; 7];
    let mut body = [0u8; 256];
    let mut out = Vec::with_capacity(264);
    loop {
        stream.read_exact(&mut header).await?;
        let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
        if !(2..=254).contains(&length) {
            return Ok(());
        }
        let request = &mut body[..length - 1];
        stream.read_exact(request).await?;
        if header[6] != unit {
            continue;
        }
        watch.observe(request, Instant::now());
        let now = tokio::time::Instant::now();
        let response = sim.with(|d| pdu::respond(d, request, now));
        let Ok(len) = u16::try_from(response.len() + 1) else {
            continue;
        };
        out.clear();
        out.extend_from_slice(&header[..4]);
        out.extend_from_slice(&len.to_be_bytes());
        out.push(unit);
        out.extend_from_slice(&response);
        stream.write_all(&out).await?;
    }
}

/// Raises this process's soft limit on open files to the hard limit (the child inherits it).
fn raise_nofile() -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit")?;
    }
    Ok(hard)
}

fn charger_id(i: usize) -> String {
    format!("SCALE-{i:04}")
}

fn password(id: &str) -> String {
    format!("scale-secret-{id}")
}

fn write_config(
    dir: &Path,
    csms_url: &str,
    ca_file: &Path,
    map: &str,
    poll_ms: u64,
    wallboxes: &[Wallbox],
) -> anyhow::Result<PathBuf> {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    let state = dir.join("state");
    std::fs::create_dir_all(&state)?;
    let mut yaml = format!(
        "state_dir: {state}\nhttp: {{ listen: 127.0.0.1:0 }}\nlog: {{ format: text, filter: warn }}\n\
         device_map_dirs: []\ncsms:\n  url: {csms_url}\n  security_profile: 2\n  ca_file: {ca}\n\
         chargers:\n",
        state = state.display(),
        ca = ca_file.display(),
    );
    for w in wallboxes {
        let secret = secrets.join(&w.id);
        std::fs::write(&secret, format!("{}\n", password(&w.id)))?;
        let _ = write!(
            yaml,
            "  - id: {id}\n    device_map: {map}\n    tcp: {addr}\n    unit: 1\n    \
             password_file: {secret}\n    max_current: 16\n    poll_interval: {poll_ms}ms\n    \
             authorization: {{ mode: free }}\n",
            id = w.id,
            addr = w.addr,
            secret = secret.display(),
        );
    }
    let path = dir.join("chargebridge.yaml");
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// Polls `done` every 500 ms until it holds or `deadline` passes; whether it held. Figures
/// come from the recorded timestamps, so polling slowly only keeps the load generators'
/// share of the CPU down.
async fn until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn chargers_with(events: &[TimedEvent], action: &str) -> HashMap<String, DateTime<Utc>> {
    let mut first = HashMap::new();
    for e in events {
        if let CsmsEvent::Call {
            charger, action: a, ..
        } = &e.event
            && a == action
        {
            first.entry(charger.clone()).or_insert(e.at);
        }
    }
    first
}

/// A CPU/memory window over the gateway process.
struct Window {
    cpu_percent: f64,
    rss: u64,
    wall: Duration,
    harness_cpu_percent: f64,
}

async fn measure_window(pid: u32, length: Duration) -> anyhow::Result<Window> {
    let (g0, h0, t0) = (sample(pid)?, procfs::sample(None)?, Instant::now());
    tokio::time::sleep(length).await;
    let (g1, h1, wall) = (sample(pid)?, procfs::sample(None)?, t0.elapsed());
    Ok(Window {
        cpu_percent: procfs::cpu_percent(&g0, &g1, wall),
        rss: g1.rss,
        wall,
        harness_cpu_percent: procfs::cpu_percent(&h0, &h1, wall),
    })
}

fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    procfs::sample(Some(pid))
        .with_context(|| format!("reading /proc/{pid} (did the gateway exit?)"))
}

fn duration_between(from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Duration> {
    (to - from).to_std().ok()
}

/// The central system's SetChargingProfile payload: a TxDefaultProfile of `amps` from now on.
fn profile(amps: f64) -> Value {
    json!({
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": amps }]
            }
        }
    })
}

/// Latencies of one SetChargingProfile: (reply, register written, read back).
type LimitLatency = (Duration, Option<Duration>, Option<Duration>);

/// The first write of `value` at or after `t0`, and the first read covering the register after
/// that write (the gateway's verification).
fn limit_times(
    events: &[LimitEvent],
    t0: Instant,
    value: f64,
) -> (Option<Instant>, Option<Instant>) {
    let written = events.iter().find_map(|e| match e {
        LimitEvent::Write { at, value: v } if *at >= t0 && (v - value).abs() < 0.05 => Some(*at),
        _ => None,
    });
    let read = written.and_then(|w| {
        events.iter().find_map(|e| match e {
            LimitEvent::Read { at } if *at >= w => Some(*at),
            _ => None,
        })
    });
    (written, read)
}

struct Row {
    figure: String,
    value: String,
    target: String,
}

fn row(rows: &mut Vec<Row>, figure: &str, value: String, target: &str) {
    rows.push(Row {
        figure: figure.to_owned(),
        value,
        target: target.to_owned(),
    });
}

fn latency_text(s: Option<Summary>) -> String {
    s.map_or_else(
        || "no samples".to_owned(),
        |s| {
            format!(
                "p50 {} / p99 {} / max {} ms (n={})",
                ms(s.p50),
                ms(s.p99),
                ms(s.max),
                s.n
            )
        },
    )
}

/// Runs the scale benchmark and prints its table.
///
/// # Errors
/// Anything that keeps the run from completing: sockets, the gateway binary, a fleet that does
/// not boot within two minutes.
pub async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    if args.chargers == 0 {
        bail!("--chargers must be at least 1");
    }
    let nofile = raise_nofile()?;
    let stop = CancellationToken::new();
    let result = run_inner(&args, nofile, &stop).await;
    stop.cancel();
    result
}

#[allow(clippy::too_many_lines)] // one linear script of phases reads best in one place
async fn run_inner(args: &ScaleArgs, nofile: u64, stop: &CancellationToken) -> anyhow::Result<()> {
    let n = args.chargers;
    let poll = Duration::from_millis(args.poll_ms);
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_owned(),
    };
    let map = Arc::new(devicemap::resolve(&args.map, &[]).map_err(|d| anyhow::anyhow!("{d}"))?);
    let limit_reg = map
        .control
        .current_limit
        .as_ref()
        .map(|l| map.register(l.register).clone())
        .with_context(|| format!("map {} has no current-limit register", args.map))?;

    out!(
        "bench scale: {n} wallboxes ({}), poll {}, window {} s",
        args.map,
        ms(poll),
        args.window
    );
    out!("open files limit: {nofile} (harness, inherited by the gateway)");

    // The central system.
    let pki = TestPki::generate(&["localhost", "127.0.0.1"]).context("generating certificates")?;
    let ca_file = pki.write_ca(&dir).context("writing the CA")?;
    let ids: Vec<String> = (0..n).map(charger_id).collect();
    let csms = Csms::start(CsmsOptions {
        tls: Some(pki),
        passwords: ids.iter().map(|id| (id.clone(), password(id))).collect(),
        reject_unknown: true,
        ..CsmsOptions::default()
    })
    .await
    .context("starting the central system")?;

    // The wallboxes, one listener each.
    let opts = crate::sim::run::options(
        &crate::sim::SimArgs {
            set: vec!["energy=1250000".to_owned()],
            ..crate::sim::SimArgs::default()
        },
        &map,
    )?;
    let mut wallboxes = Vec::with_capacity(n);
    for id in &ids {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding a wallbox listener")?;
        let addr = listener.local_addr()?;
        let sim = SimHandle::new(SimDevice::new(Arc::clone(&map), opts.clone())?);
        let watch = Arc::new(LimitWatch {
            reg: limit_reg.clone(),
            events: Mutex::new(Vec::new()),
        });
        tokio::spawn(serve_wallbox(
            listener,
            map.modbus.unit,
            sim.clone(),
            Arc::clone(&watch),
            stop.clone(),
        ));
        wallboxes.push(Wallbox {
            id: id.clone(),
            addr,
            sim,
            watch,
        });
    }
    let config = write_config(
        &dir,
        &csms.url(),
        &ca_file,
        &args.map,
        args.poll_ms,
        &wallboxes,
    )?;

    // 1. Start the gateway.
    let exe = match &args.gateway {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("locating this executable")?,
    };
    let log = std::fs::File::create(dir.join("gateway.log"))?;
    let started_utc = Utc::now();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&exe)
        .arg("run")
        .arg("-c")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let pid = child.id().context("the gateway exited at once")?;
    let result = measure(args, &csms, &wallboxes, pid, started, started_utc, poll).await;
    terminate(&mut child, pid).await;
    csms.shutdown();
    if args.keep.is_none() {
        drop(tmp);
    } else {
        out!("kept: {}", dir.display());
    }
    result
}

async fn terminate(child: &mut tokio::process::Child, pid: u32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[allow(clippy::too_many_lines)]
async fn measure(
    args: &ScaleArgs,
    csms: &CsmsHandle,
    wallboxes: &[Wallbox],
    pid: u32,
    started: Instant,
    started_utc: DateTime<Utc>,
    poll: Duration,
) -> anyhow::Result<()> {
    let n = wallboxes.len();
    let window = Duration::from_secs(args.window);
    let mut rows = Vec::new();
    if let Some(limit) = procfs::open_files_limit(pid) {
        out!("gateway open files limit: {limit}");
    }

    // 1. Boot.
    let booted = until(BOOT_DEADLINE, || {
        chargers_with(&csms.timeline(), "BootNotification").len() >= n
    })
    .await;
    let boots = chargers_with(&csms.timeline(), "BootNotification");
    if !booted {
        bail!(
            "only {} of {n} chargers sent BootNotification within {} s",
            boots.len(),
            BOOT_DEADLINE.as_secs()
        );
    }
    let last_boot = boots
        .values()
        .filter_map(|at| duration_between(started_utc, *at))
        .max()
        .unwrap_or_default();
    out!("all {n} BootNotifications in after {} ms", ms(last_boot));
    row(
        &mut rows,
        "all BootNotifications accepted, from process start",
        format!("{:.2} s", last_boot.as_secs_f64()),
        "<= 10 s",
    );
    let after_boot = sample(pid)?;

    // MeterValueSampleInterval 10 s on every charger.
    let sem = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for w in wallboxes {
        let (csms, id, sem) = (csms.clone(), w.id.clone(), Arc::clone(&sem));
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            csms.call(
                &id,
                "ChangeConfiguration",
                json!({ "key": "MeterValueSampleInterval", "value": "10" }),
            )
            .await
            .is_ok_and(|v| v["status"] == "Accepted")
        });
    }
    let configured = tasks.join_all().await.into_iter().filter(|ok| *ok).count();
    out!("MeterValueSampleInterval=10 accepted by {configured} of {n}");

    // 2. Idle: polling, no EV.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = measure_window(pid, window).await?;
    out!(
        "idle window: gateway CPU {:.1}% of one core, RSS {} MiB (harness {:.1}%)",
        idle.cpu_percent,
        procfs::mib(idle.rss),
        idle.harness_cpu_percent
    );

    // 3. Plug in, spread over SPREAD.
    let mark = csms.mark();
    let mut plugged_at: HashMap<String, DateTime<Utc>> = HashMap::new();
    let step = SPREAD / u32::try_from(n).unwrap_or(u32::MAX);
    let t = tokio::time::Instant::now();
    for (i, w) in wallboxes.iter().enumerate() {
        tokio::time::sleep_until(t + step * u32::try_from(i).unwrap_or(0)).await;
        w.sim.plug();
        plugged_at.insert(w.id.clone(), Utc::now());
    }
    let all_status = until(STRAGGLERS, || {
        let tl = csms.timeline();
        let after: HashSet<&str> = tl[mark.min(tl.len())..]
            .iter()
            .filter(|e| e.event.is_call("StatusNotification"))
            .map(|e| e.event.charger())
            .collect();
        after.len() >= n
    })
    .await;
    let timeline = csms.timeline();
    let mut status_latency = Vec::with_capacity(n);
    for e in &timeline[mark.min(timeline.len())..] {
        if let CsmsEvent::Call {
            charger, action, ..
        } = &e.event
            && action == "StatusNotification"
            && let Some(plug) = plugged_at.remove(charger)
            && let Some(d) = duration_between(plug, e.at)
        {
            status_latency.push(d);
        }
    }
    if !all_status {
        out!(
            "warning: {} chargers sent no StatusNotification after plug-in",
            plugged_at.len()
        );
    }
    let status = summarize(&status_latency);
    out!("plug-in -> StatusNotification: {}", latency_text(status));
    row(
        &mut rows,
        "EV plugged in -> StatusNotification",
        latency_text(status),
        &format!("p99 <= {} ms", ms(poll + Duration::from_millis(100))),
    );

    // 4. Charging, MeterValues every 10 s.
    let charging = until(STRAGGLERS, || {
        chargers_with(&csms.timeline()[mark..], "StartTransaction").len() >= n
    })
    .await;
    if !charging {
        out!("warning: not every charger started a transaction");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mv_mark = csms.mark();
    let busy = measure_window(pid, window).await?;
    let meter_values = csms.timeline()[mv_mark..]
        .iter()
        .filter(|e| e.event.is_call("MeterValues"))
        .count();
    #[allow(clippy::cast_precision_loss)]
    let mv_rate = meter_values as f64 / busy.wall.as_secs_f64();
    out!(
        "charging window: gateway CPU {:.1}% of one core, RSS {} MiB, {mv_rate:.1} MeterValues/s (harness {:.1}%)",
        busy.cpu_percent,
        procfs::mib(busy.rss),
        busy.harness_cpu_percent
    );

    // 5. SetChargingProfile -> register written -> read back.
    let mut limit_samples: Vec<LimitLatency> = Vec::new();
    let mut failed_calls = 0usize;
    for round in 0..args.rounds {
        let amps = if round % 2 == 0 { 10.0 } else { 8.0 };
        let mut calls = tokio::task::JoinSet::new();
        let t = tokio::time::Instant::now();
        for (i, w) in wallboxes.iter().enumerate() {
            let (csms, id, watch) = (csms.clone(), w.id.clone(), Arc::clone(&w.watch));
            let at = t + step * u32::try_from(i).unwrap_or(0);
            calls.spawn(async move {
                tokio::time::sleep_until(at).await;
                let t0 = Instant::now();
                let reply = csms.call(&id, "SetChargingProfile", profile(amps)).await;
                let replied = t0.elapsed();
                let ok = reply.is_ok_and(|v| v["status"] == "Accepted");
                // Wait for the write and the read-back, bounded.
                let end = Instant::now() + STRAGGLERS;
                loop {
                    let (w, r) = limit_times(&watch.events(), t0, amps);
                    if r.is_some() || Instant::now() >= end {
                        return (ok, (replied, w.map(|w| w - t0), r.map(|r| r - t0)));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        }
        for (ok, sample) in calls.join_all().await {
            if !ok {
                failed_calls += 1;
            }
            limit_samples.push(sample);
        }
    }
    let replies: Vec<Duration> = limit_samples.iter().map(|s| s.0).collect();
    let written: Vec<Duration> = limit_samples.iter().filter_map(|s| s.1).collect();
    let read_back: Vec<Duration> = limit_samples.iter().filter_map(|s| s.2).collect();
    let missing = limit_samples.len() - read_back.len();
    out!(
        "SetChargingProfile: {} calls, {failed_calls} not accepted, {missing} without read-back",
        limit_samples.len()
    );
    out!("  reply:            {}", latency_text(summarize(&replies)));
    out!("  register written: {}", latency_text(summarize(&written)));
    out!(
        "  read back:        {}",
        latency_text(summarize(&read_back))
    );
    row(
        &mut rows,
        "SetChargingProfile -> CallResult",
        latency_text(summarize(&replies)),
        "",
    );
    row(
        &mut rows,
        "SetChargingProfile -> limit register written",
        latency_text(summarize(&written)),
        "",
    );
    row(
        &mut rows,
        "SetChargingProfile -> written value read back (verified)",
        latency_text(summarize(&read_back)),
        "p99 <= 100 ms",
    );

    let end = sample(pid)?;
    row(
        &mut rows,
        "gateway CPU, polling only (no EV)",
        format!("{:.1}% of one core", idle.cpu_percent),
        "",
    );
    row(
        &mut rows,
        "gateway CPU, all charging, MeterValues every 10 s",
        format!(
            "{:.1}% of one core ({mv_rate:.0} MeterValues/s)",
            busy.cpu_percent
        ),
        "<= 50%",
    );
    row(
        &mut rows,
        "gateway resident memory (after boot / charging / end / peak)",
        format!(
            "{} / {} / {} / {} MiB",
            procfs::mib(after_boot.rss),
            procfs::mib(busy.rss),
            procfs::mib(end.rss),
            procfs::mib(end.rss_peak)
        ),
        "<= 150 MB",
    );
    #[allow(clippy::cast_precision_loss)]
    let per_charger = end.rss as f64 / n as f64 / 1024.0;
    row(
        &mut rows,
        "resident memory per charger (end RSS / N)",
        format!("{per_charger:.0} KiB"),
        "",
    );
    row(&mut rows, "gateway threads", end.threads.to_string(), "");
    row(
        &mut rows,
        "load generators (this process) CPU, charging window",
        format!("{:.1}% of one core", busy.harness_cpu_percent),
        "",
    );
    out!("");
    out!(
        "| figure (N = {n}, poll {} ms) | measured | target |",
        args.poll_ms
    );
    out!("|---|---|---|");
    for r in rows {
        out!("| {} | {} | {} |", r.figure, r.value, r.target);
    }
    out!("total run time {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> LimitWatch {
        let map = devicemap::resolve("alfen-eve-single", &[]).expect("built-in map");
        let reg = map
            .control
            .current_limit
            .as_ref()
            .map(|l| map.register(l.register).clone())
            .expect("a limit register");
        LimitWatch {
            reg,
            events: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn a_multi_register_write_of_the_limit_is_decoded() {
        let w = watch();
        // FC 16 at 1210, 2 registers, 4 bytes: f32 10.0 = 0x4120_0000.
        let at = Instant::now();
        w.observe(&[16, 0x04, 0xBA, 0, 2, 4, 0x41, 0x20, 0, 0], at);
        assert_eq!(w.events(), vec![LimitEvent::Write { at, value: 10.0 }]);
    }

    #[test]
    fn reads_count_only_when_they_cover_the_limit() {
        let w = watch();
        let at = Instant::now();
        w.observe(&[3, 0x04, 0xB0, 0, 16], at); // 1200..1215 covers 1210..1211
        w.observe(&[3, 0x01, 0x2C, 0, 10], at); // 300..309 does not
        w.observe(&[3, 0x04, 0xBA, 0, 1], at); // half of the f32 is not a read-back
        w.observe(&[16], at); // garbage is ignored
        assert_eq!(w.events(), vec![LimitEvent::Read { at }]);
    }

    #[test]
    fn latency_pairs_the_write_with_the_next_read() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let events = vec![
            LimitEvent::Read { at: t0 + ms(1) },
            LimitEvent::Write {
                at: t0 + ms(2),
                value: 16.0,
            },
            LimitEvent::Write {
                at: t0 + ms(5),
                value: 10.0,
            },
            LimitEvent::Read { at: t0 + ms(9) },
        ];
        assert_eq!(
            limit_times(&events, t0, 10.0),
            (Some(t0 + ms(5)), Some(t0 + ms(9)))
        );
        assert_eq!(limit_times(&events, t0, 8.0), (None, None));
    }
}
