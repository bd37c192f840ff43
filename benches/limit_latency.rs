//! Limit latency: how long from the central system sending SetChargingProfile until the
//! wallbox holds the new limit. Not a test: run `cargo bench --bench limit_latency` and read
//! the table (benches/README.md has the figures and the machine they came from).
//!
//! For each link (Modbus TCP on loopback; Modbus RTU at 19200 8E1 on a pty pair) and each
//! request delay (the Heidelberg map's 100 ms, and 0 ms to show the gateway's own share),
//! `N` TxProfiles alternate between 10 A and 8 A. Three instants per call, measured from just
//! before the CALL is handed to the central system:
//! - `reply`: the CallResult arrives (answer first, act after: behaviour.md).
//! - `write`: the simulator holds the new value in HR 261 (a watcher thread polls the
//!   simulator's registers every 100 µs, so this is late by up to 0.1 ms).
//! - `verified`: the gateway has read the register back and found it equal (its
//!   "limit written" event, caught by a tracing layer).
//!
//! The next call waits a random 0..poll_interval, so calls land at every phase of the poll
//! cycle (a limit that arrives mid-poll waits for the poll's reads to finish).
//!
//! `LIMIT_LATENCY_N` (default 200) sets the number of calls per configuration;
//! `LIMIT_LATENCY_ONLY=TEXT` runs only the rows whose name contains TEXT (e.g. `100 ms`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/smart_support/mod.rs"]
mod smart_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rand::Rng;
use smart_support::{Link, SmartRig, Spec, tx_profile};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

/// Sends the instant of every "limit written" event of the device task.
struct LimitWrittenHook {
    tx: Mutex<mpsc::Sender<Instant>>,
}

struct MessageIs {
    want: &'static str,
    hit: bool,
}

impl Visit for MessageIs {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && format!("{value:?}") == self.want {
            self.hit = true;
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for LimitWrittenHook {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if !event
            .metadata()
            .target()
            .starts_with("chargebridge::charger")
        {
            return;
        }
        let mut v = MessageIs {
            want: "limit written",
            hit: false,
        };
        event.record(&mut v);
        if v.hit
            && let Ok(tx) = self.tx.lock()
        {
            let _ = tx.send(Instant::now());
        }
    }
}

/// Latencies of one configuration, in milliseconds.
#[derive(Default)]
struct Series {
    reply: Vec<f64>,
    write: Vec<f64>,
    verified: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(v: &[f64]) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    format!(
        "{:>7.1} | {:>7.1} | {:>7.1}",
        percentile(&s, 50.0),
        percentile(&s, 99.0),
        s.last().copied().unwrap_or(f64::NAN)
    )
}

/// Watches the limit register from a plain thread; returns the instant it first reads `raw`.
fn watch_register(
    wallbox: chargebridge::sim::SimHandle,
    raw: u16,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Option<Instant>> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if wallbox.snapshot().limit_raw == [raw] {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        None
    })
}

async fn run_config(
    link: Link,
    request_delay: Option<&'static str>,
    n: usize,
    hook: &mpsc::Receiver<Instant>,
) -> Series {
    let mut spec = Spec::new(link);
    spec.request_delay = request_delay;
    let poll = Duration::from_millis(500);
    let rig = SmartRig::start(spec).await;
    let tx = rig.charging().await;
    // Let the start-up writes settle, then forget their events.
    tokio::time::sleep(Duration::from_secs(1)).await;
    while hook.try_recv().is_ok() {}

    let mut series = Series::default();
    for i in 0..n {
        let amps = if i % 2 == 0 { 10.0 } else { 8.0 };
        let raw = if i % 2 == 0 { 100 } else { 80 };
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = watch_register(rig.wallbox.clone(), raw, Arc::clone(&stop));
        let t0 = Instant::now();
        rig.set_profile(1, tx_profile(1, tx, amps)).await;
        let t_reply = Instant::now();
        let verified = tokio::task::block_in_place(|| hook.recv_timeout(Duration::from_secs(30)))
            .expect("the gateway reports the limit written within 30 s");
        // The write precedes its read-back, so the watcher has seen it (or sees it at once).
        let written = tokio::task::block_in_place(|| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !watcher.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            stop.store(true, Ordering::Relaxed);
            watcher.join().ok().flatten()
        })
        .expect("the register holds the new limit");
        let ms = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1000.0;
        series.reply.push(ms(t_reply));
        series.write.push(ms(written));
        series.verified.push(ms(verified));
        let pause = rand::rng().random_range(0..poll.as_millis().max(1));
        #[allow(clippy::cast_possible_truncation)]
        tokio::time::sleep(Duration::from_millis(pause as u64)).await;
        while hook.try_recv().is_ok() {}
    }
    rig.stop().await;
    series
}

fn main() {
    let n: usize = std::env::var("LIMIT_LATENCY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let only = std::env::var("LIMIT_LATENCY_ONLY").unwrap_or_default();
    let (tx, rx) = mpsc::channel();
    let subscriber = Registry::default().with(LimitWrittenHook { tx: Mutex::new(tx) });
    tracing::subscriber::set_global_default(subscriber).expect("install the tracing hook");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let configs: [(&str, Link, Option<&'static str>); 4] = [
        ("Modbus TCP, map delay 100 ms", Link::Tcp, None),
        ("Modbus RTU 19200 8E1, map delay 100 ms", Link::Rtu, None),
        ("Modbus TCP, request_delay 0 ms", Link::Tcp, Some("0ms")),
        (
            "Modbus RTU 19200 8E1, request_delay 0 ms",
            Link::Rtu,
            Some("0ms"),
        ),
    ];
    println!("limit latency, {n} SetChargingProfile calls per row, poll interval 500 ms, ms");
    println!();
    println!(
        "| link | reply p50 | p99 | max | register written p50 | p99 | max | read back p50 | p99 | max |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, link, delay) in configs {
        if !name.contains(only.as_str()) {
            continue;
        }
        let s = runtime.block_on(run_config(link, delay, n, &rx));
        println!(
            "| {name} | {} | {} | {} |",
            summary(&s.reply),
            summary(&s.write),
            summary(&s.verified)
        );
    }
}
