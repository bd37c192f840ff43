//! `chargebridge bench wire`: Modbus requests per poll cycle of every shipped map, and the
//! wire time of a poll cycle on a line that runs at the baud rate ([`super::line`]) against
//! the theoretical minimum.
//!
//! The bus task under test is the gateway's own ([`crate::modbus::spawn_bus`]) with the map's
//! timing; a poll cycle is the map's every-cycle read plan issued one block after the other,
//! as the device task issues it. The simulator answers on the device end of the line.
//!
//! Theoretical minimum of a cycle of `k` block reads: for each request, the gap before it,
//! the request frame (8 characters), t3.5 of silence before the reply, and the reply frame
//! (5 + 2 × count characters for registers), each character 11 bits at the baud rate. The gap
//! before the first request is zero: cycles start on a bus that has been quiet for longer
//! than the request delay (as between the polls of a wallbox), so the pause the delay asks
//! for has already happened. The gap before each further request is the map's request
//! delay, at least t3.5.
//!
//! The measured time is the caller's: from handing the first request to the bus task until
//! the last reply is back, so it includes everything the gateway adds. The line's relay
//! threads are part of the rig; when one of them is handed a chunk over more than
//! [`RIG_STALL`] late, the cycle is counted as one where the rig stalled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;

use super::line::{Direction, PacedLine, Transmission, char_time};
use super::out;
use super::stats::{ms, summarize};
use crate::devicemap::{self, DeviceMap, Parity, PollClass, ReadBlock, SerialSettings};
use crate::modbus::{BusHandle, DeviceTiming, Endpoint, rtu_frame_silence, spawn_bus};
use crate::sim::{SimArgs, SimHandle};

/// `bench wire` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct WireArgs {
    /// Poll cycles measured per map and baud rate.
    #[arg(long, default_value_t = 30)]
    pub cycles: usize,
    /// Baud rates to measure at.
    #[arg(long, value_delimiter = ',', default_value = "19200,115200")]
    pub baud: Vec<u32>,
    /// Only these maps (default: every shipped RS-485 map).
    #[arg(long, value_delimiter = ',')]
    pub maps: Vec<String>,
    /// Seconds of the shared-line run (three units polled every second), before and after
    /// one of them falls silent; 0 skips it.
    #[arg(long, default_value_t = 60)]
    pub shared_secs: u64,
}

/// Characters of an RTU read request: unit, function, address, count, CRC.
const READ_REQUEST: usize = 8;

/// Characters of the reply to a block read.
fn reply_len(block: &ReadBlock) -> usize {
    let data = if block.table.is_bits() {
        usize::from(block.count).div_ceil(8)
    } else {
        2 * usize::from(block.count)
    };
    // unit, function, byte count, data, CRC
    3 + data + 2
}

/// The theoretical minimum wire time of one poll cycle (see the module docs).
#[must_use]
pub fn min_cycle(blocks: &[ReadBlock], request_delay: Duration, baud: u32) -> Duration {
    let (ct, t35) = (char_time(baud), rtu_frame_silence(baud));
    blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let gap = if i == 0 {
                Duration::ZERO
            } else {
                request_delay.max(t35)
            };
            let chars = u32::try_from(READ_REQUEST + reply_len(b)).unwrap_or(u32::MAX);
            gap + ct * chars + t35
        })
        .sum()
}

fn serial_settings(map: &DeviceMap, baud: u32) -> SerialSettings {
    let base = map.modbus.serial.unwrap_or(SerialSettings {
        baud,
        parity: Parity::Even,
        data_bits: 8,
        stop_bits: 1,
    });
    SerialSettings { baud, ..base }
}

/// A simulator on the device end and the gateway's bus task on the master end.
struct Rig {
    line: PacedLine,
    bus: BusHandle,
    units: Vec<(u8, SimHandle)>,
    stop: CancellationToken,
}

impl Rig {
    async fn start(name: &str, map: &DeviceMap, baud: u32, units: Vec<u8>) -> anyhow::Result<Rig> {
        let line = PacedLine::open(baud).context("opening the paced line")?;
        let stop = CancellationToken::new();
        let sim = crate::sim::spawn(
            SimArgs {
                map: name.to_owned(),
                serial: Some(line.device_path.clone().into()),
                baud: Some(baud),
                units,
                ..SimArgs::default()
            },
            map.clone(),
            stop.clone(),
        )
        .await
        .context("starting the simulator")?;
        let bus = spawn_bus(
            "wire".to_owned(),
            Endpoint::Serial {
                path: line.master_path.clone(),
                settings: serial_settings(map, baud),
            },
            stop.clone(),
        );
        Ok(Rig {
            line,
            bus,
            units: sim.units,
            stop,
        })
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn cycle(
    bus: &BusHandle,
    unit: u8,
    timing: &DeviceTiming,
    blocks: &[ReadBlock],
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    for b in blocks {
        bus.read(unit, timing, b.table, b.start, b.count)
            .await
            .with_context(|| format!("reading {} {}+{}", b.table.as_str(), b.start, b.count))?;
    }
    Ok(t0.elapsed())
}

/// Where one cycle's time beyond the wire went, from the line's log of that cycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Breakdown {
    /// From handing the first request to the bus task until it went on the line: the
    /// gateway's send path and the relay's wake-up.
    to_line: Duration,
    /// Replies that started later than t3.5 after their request: the simulator's part.
    device: Duration,
    /// From the last reply's end on the line until the caller had it: the relay's
    /// hand-over and the gateway's receive path.
    to_caller: Duration,
}

/// The breakdown of a cycle that started at `t0` and ended at `t_end`; `None` when the log
/// does not hold a request and a reply.
fn breakdown(
    log: &[Transmission],
    t0: Instant,
    t_end: Instant,
    turnaround: Duration,
) -> Option<Breakdown> {
    let first = log.iter().find(|t| t.direction == Direction::ToDevice)?;
    let last = log
        .iter()
        .rev()
        .find(|t| t.direction == Direction::ToMaster)?;
    let device = log
        .windows(2)
        .filter(|w| w[0].direction == Direction::ToDevice && w[1].direction == Direction::ToMaster)
        .map(|w| w[1].start.saturating_duration_since(w[0].end + turnaround))
        .sum();
    Some(Breakdown {
        to_line: first.start.saturating_duration_since(t0),
        device,
        to_caller: t_end.saturating_duration_since(last.end),
    })
}

/// Gaps before requests that followed a reply within the same cycle, minus what they had to
/// be (the request delay, at least t3.5): the gateway's own padding.
fn request_gaps(
    log: &[Transmission],
    required: Duration,
    idle: Duration,
) -> Vec<(Duration, Duration)> {
    log.iter()
        .filter(|t| t.direction == Direction::ToDevice)
        .filter_map(|t| t.gap_before)
        // A longer gap is the pause between cycles, not an inter-frame gap.
        .filter(|g| *g < idle)
        .map(|g| (g, g.saturating_sub(required)))
        .collect()
}

/// A relay that hands a chunk over later than this was not scheduled in time: the cycle
/// measured the machine's scheduler, not the gateway. Such cycles are counted ("rig stalled")
/// and shown in p50/p99/max, and left out of the "rig on time" percentile only.
const RIG_STALL: Duration = Duration::from_millis(1);

/// Microseconds, for the relay's lateness.
fn us(d: Duration) -> String {
    format!("{} µs", d.as_micros())
}

/// Runs the wire benchmark and prints its tables.
///
/// # Errors
/// A map that does not load, a pty or simulator that cannot be started, a bus that fails.
pub async fn run(args: WireArgs) -> anyhow::Result<()> {
    requests_per_cycle()?;
    let names: Vec<String> = if args.maps.is_empty() {
        devicemap::builtin_names()
            .into_iter()
            .filter(|n| devicemap::resolve(n, &[]).is_ok_and(|m| m.modbus.serial.is_some()))
            .map(str::to_owned)
            .collect()
    } else {
        args.maps.clone()
    };
    out!("");
    out!(
        "## Wire time per poll cycle (paced pty line, {} cycles each)",
        args.cycles
    );
    out!("");
    out!(
        "| map | baud | requests | request delay | theoretical min | measured p50 | p99 | max | p50 / min | p99 / min | max / min | rig stalled | p99 / min, rig on time | gap padding p50 / max | line relay late p50 / max |"
    );
    out!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for name in &names {
        let map = devicemap::resolve(name, &[]).map_err(|d| anyhow::anyhow!("{d}"))?;
        for &baud in &args.baud {
            rows.push(wire_time(name, &map, baud, args.cycles).await?);
        }
    }
    print_breakdown(&rows);
    if args.shared_secs > 0 {
        shared_line(Duration::from_secs(args.shared_secs)).await?;
    }
    Ok(())
}

fn requests_per_cycle() -> anyhow::Result<()> {
    out!("## Modbus requests per poll cycle (src/devicemap/plan.rs)");
    out!("");
    out!(
        "| map | link | every cycle | every 10th cycle (+ slow) | after connect (+ once) | every-cycle blocks |"
    );
    out!("|---|---|---:|---:|---:|---|");
    for name in devicemap::builtin_names() {
        let map = devicemap::resolve(name, &[]).map_err(|d| anyhow::anyhow!("{name}: {d}"))?;
        let always = devicemap::plan(&map, &[PollClass::Always]);
        let slow = devicemap::plan(&map, &[PollClass::Always, PollClass::Slow]);
        let once = devicemap::plan(&map, &[PollClass::Always, PollClass::Slow, PollClass::Once]);
        let blocks: Vec<String> = always
            .iter()
            .map(|b| format!("{} {}+{}", b.table.as_str(), b.start, b.count))
            .collect();
        out!(
            "| {name} | {} | {} | {} | {} | {} |",
            if map.modbus.serial.is_some() {
                "RTU"
            } else {
                "TCP"
            },
            always.len(),
            slow.len(),
            once.len(),
            blocks.join(", ")
        );
    }
    Ok(())
}

async fn wire_time(
    name: &str,
    map: &DeviceMap,
    baud: u32,
    cycles: usize,
) -> anyhow::Result<WhereItWent> {
    let unit = map.modbus.unit;
    let rig = Rig::start(name, map, baud, vec![unit]).await?;
    let timing = DeviceTiming::from(&map.modbus);
    let blocks = devicemap::plan(map, &[PollClass::Always]);
    // Connect and settle.
    cycle(&rig.bus, unit, &timing, &blocks).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = rig.line.take_log();
    let _ = rig.line.take_late();
    // Longer than the request delay: every cycle starts on a bus that has paused enough.
    let idle = timing.request_delay + Duration::from_millis(150);
    let mut times = Vec::with_capacity(cycles);
    let mut on_time = Vec::with_capacity(cycles);
    let mut late = Vec::new();
    let mut log = Vec::new();
    let mut parts = Vec::with_capacity(cycles);
    for _ in 0..cycles {
        let t0 = Instant::now();
        let time = cycle(&rig.bus, unit, &timing, &blocks).await?;
        let t_end = t0 + time;
        tokio::time::sleep(idle).await;
        // Taken after the pause, so the relay has recorded the cycle's last chunk.
        let cycle_late = rig.line.take_late();
        let cycle_log = rig.line.take_log();
        if cycle_late.iter().all(|l| *l <= RIG_STALL) {
            on_time.push(time);
        }
        parts.extend(breakdown(&cycle_log, t0, t_end, rtu_frame_silence(baud)));
        late.extend(cycle_late);
        log.extend(cycle_log);
        times.push(time);
    }
    let required = timing.request_delay.max(rtu_frame_silence(baud));
    let gaps = request_gaps(&log, required, idle / 2);
    let padding: Vec<Duration> = gaps.iter().map(|g| g.1).collect();
    let min = min_cycle(&blocks, timing.request_delay, baud);
    let Some(s) = summarize(&times) else {
        bail!("no cycles measured");
    };
    let ratio = |d: Duration| d.as_secs_f64() / min.as_secs_f64();
    let stalled = times.len() - on_time.len();
    let on_time_p99 =
        summarize(&on_time).map_or_else(|| "-".to_owned(), |o| format!("{:.3}", ratio(o.p99)));
    let late = summarize(&late).map_or_else(
        || "-".to_owned(),
        |p| format!("{} / {}", us(p.p50), us(p.max)),
    );
    let pad = summarize(&padding).map_or_else(
        || "-".to_owned(),
        |p| format!("{} / {}", ms(p.p50), ms(p.max)),
    );
    out!(
        "| {name} | {baud} | {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {stalled} | {on_time_p99} | {pad} | {late} |",
        blocks.len(),
        ms(timing.request_delay),
        ms(min),
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        ratio(s.p50),
        ratio(s.p99),
        ratio(s.max),
    );
    Ok(WhereItWent {
        map: name.to_owned(),
        baud,
        parts,
    })
}

/// One row of the breakdown table, printed after the wire-time table.
struct WhereItWent {
    map: String,
    baud: u32,
    parts: Vec<Breakdown>,
}

fn print_breakdown(rows: &[WhereItWent]) {
    out!("");
    out!("## Where a cycle's time beyond the wire went (µs, p50 / p99 per cycle)");
    out!("");
    out!(
        "| map | baud | call -> request on the line (gateway) | reply later than t3.5 (simulator) | reply on the line -> caller (gateway) |"
    );
    out!("|---|---:|---:|---:|---:|");
    for row in rows {
        let col = |pick: fn(&Breakdown) -> Duration| {
            let samples: Vec<Duration> = row.parts.iter().map(pick).collect();
            summarize(&samples).map_or_else(
                || "-".to_owned(),
                |p| format!("{} / {}", p.p50.as_micros(), p.p99.as_micros()),
            )
        };
        out!(
            "| {} | {} | {} | {} | {} |",
            row.map,
            row.baud,
            col(|b| b.to_line),
            col(|b| b.device),
            col(|b| b.to_caller)
        );
    }
}

/// Three Heidelberg units on one 19200 line, each polled every second by its own task; then
/// unit 3 falls silent.
async fn shared_line(length: Duration) -> anyhow::Result<()> {
    const NAME: &str = "heidelberg-energy-control";
    let map = devicemap::resolve(NAME, &[]).map_err(|d| anyhow::anyhow!("{d}"))?;
    let baud = map.modbus.serial.map_or(19_200, |s| s.baud);
    let units = vec![1u8, 2, 3];
    let rig = Rig::start(NAME, &map, baud, units.clone()).await?;
    let timing = DeviceTiming::from(&map.modbus);
    let blocks = Arc::new(devicemap::plan(&map, &[PollClass::Always]));
    let min = min_cycle(&blocks, timing.request_delay, baud);
    out!("");
    out!(
        "## One line, three units ({NAME}, {baud} baud, request delay {} ms, timeout {} ms, {} retries), each polled every 1 s",
        ms(timing.request_delay),
        ms(timing.timeout),
        timing.retries
    );
    out!("");
    out!("theoretical minimum of one unit's cycle: {} ms", ms(min));
    out!("");
    out!("| phase | unit | cycles | ok | cycle p50 | p99 | max |");
    out!("|---|---:|---:|---:|---:|---:|---:|");
    let before = rig.bus.stats();
    run_phase("all answer", &rig, &units, &timing, &blocks, length).await;
    let mid = rig.bus.stats();
    if let Some((_, h)) = rig.units.iter().find(|(u, _)| *u == 3) {
        h.set_silent(true);
    }
    let started = Instant::now();
    let silent = run_phase("unit 3 silent", &rig, &units, &timing, &blocks, length).await;
    let elapsed = started.elapsed();
    let after = rig.bus.stats();
    out!("");
    out!(
        "unit 3 silent for {:.0} s: {} attempts timed out on the line ({} ms of line time), {} requests skipped in backoff; {} timeouts while all answered",
        elapsed.as_secs_f64(),
        after.timeouts - mid.timeouts,
        ms(timing.timeout * u32::try_from(after.timeouts - mid.timeouts).unwrap_or(0)),
        after.skipped - mid.skipped,
        mid.timeouts - before.timeouts,
    );
    out!(
        "backoff (src/modbus/health.rs): after {} requests in a row time out, {} s doubling up to {} s, then one probe attempt",
        crate::modbus::health::TIMEOUTS_BEFORE_BACKOFF,
        crate::modbus::health::FIRST_BACKOFF.as_secs(),
        crate::modbus::health::MAX_BACKOFF.as_secs()
    );
    if let Some((since, n, held, max)) = after_backoff(&silent, 3, timing.timeout) {
        out!(
            "once unit 3 was in backoff ({:.1} s after it fell silent): {n} cycles of units 1 and 2, {held} of them held up by a probe of unit 3 (longer than its timeout), slowest {} ms",
            since.saturating_duration_since(started).as_secs_f64(),
            ms(max)
        );
    }
    Ok(())
}

async fn run_phase(
    phase: &str,
    rig: &Rig,
    units: &[u8],
    timing: &DeviceTiming,
    blocks: &Arc<Vec<ReadBlock>>,
    length: Duration,
) -> HashMap<u8, Vec<(Instant, Duration, bool)>> {
    let mut tasks = tokio::task::JoinSet::new();
    for &unit in units {
        let (bus, timing, blocks) = (rig.bus.clone(), *timing, Arc::clone(blocks));
        tasks.spawn(async move {
            let end = tokio::time::Instant::now() + length;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut times = Vec::new();
            loop {
                tick.tick().await;
                if tokio::time::Instant::now() >= end {
                    break;
                }
                let t0 = Instant::now();
                let r = cycle(&bus, unit, &timing, &blocks).await;
                times.push((t0, t0.elapsed(), r.is_ok()));
            }
            (unit, times)
        });
    }
    let results: HashMap<u8, Vec<(Instant, Duration, bool)>> =
        tasks.join_all().await.into_iter().collect();
    for unit in units {
        let Some(cycles) = results.get(unit) else {
            continue;
        };
        let ok = cycles.iter().filter(|c| c.2).count();
        let times: Vec<Duration> = cycles.iter().map(|c| c.1).collect();
        if let Some(s) = summarize(&times) {
            out!(
                "| {phase} | {unit} | {} | {ok} | {} | {} | {} |",
                s.n,
                ms(s.p50),
                ms(s.p99),
                ms(s.max)
            );
        }
    }
    results
}

/// The answering units' cycles once the silent unit is in backoff (its first request that
/// failed faster than one timeout): how many were held up by a probe (longer than the
/// timeout), and the slowest.
fn after_backoff(
    results: &HashMap<u8, Vec<(Instant, Duration, bool)>>,
    silent: u8,
    timeout: Duration,
) -> Option<(Instant, usize, usize, Duration)> {
    let since = results
        .get(&silent)?
        .iter()
        .find(|c| !c.2 && c.1 < timeout)
        .map(|c| c.0)?;
    let others: Vec<Duration> = results
        .iter()
        .filter(|(u, _)| **u != silent)
        .flat_map(|(_, cycles)| cycles.iter().filter(|c| c.0 >= since).map(|c| c.1))
        .collect();
    let held = others.iter().filter(|d| **d >= timeout).count();
    let max = others.iter().max().copied().unwrap_or_default();
    Some((since, others.len(), held, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devicemap::Table;

    #[test]
    fn the_minimum_counts_frames_gaps_and_delays() {
        let block = ReadBlock {
            table: Table::Input,
            start: 5,
            count: 14,
        };
        // 8 + 33 characters at 19200 (572.916 µs each) + t3.5 (2.005 ms); the bus has
        // already paused for the delay before the first request.
        let one = min_cycle(&[block], Duration::from_millis(100), 19_200);
        let per = char_time(19_200) * 41 + rtu_frame_silence(19_200);
        assert_eq!(one, per);
        // The second request waits the delay after the first reply.
        let two = min_cycle(&[block, block], Duration::from_millis(100), 19_200);
        assert_eq!(two, per * 2 + Duration::from_millis(100));
        // Without a delay it still waits t3.5.
        let fast = min_cycle(&[block, block], Duration::ZERO, 115_200);
        let per = char_time(115_200) * 41 + rtu_frame_silence(115_200);
        assert_eq!(fast, per * 2 + rtu_frame_silence(115_200));
    }

    #[test]
    fn the_breakdown_splits_a_cycle_into_gateway_and_device_parts() {
        let t0 = Instant::now();
        let us = Duration::from_micros;
        let t35 = us(1750);
        let tx = |direction, start: Duration, end: Duration| Transmission {
            direction,
            bytes: 8,
            start: t0 + start,
            end: t0 + end,
            gap_before: None,
        };
        let log = [
            // Request on the line 100 µs after the call; the reply 50 µs later than t3.5.
            tx(Direction::ToDevice, us(100), us(800)),
            tx(Direction::ToMaster, us(800) + t35 + us(50), us(3000)),
            // A second request; its reply on time.
            tx(Direction::ToDevice, us(5000), us(5700)),
            tx(Direction::ToMaster, us(5700) + t35, us(9000)),
        ];
        let b = breakdown(&log, t0, t0 + us(9250), t35).expect("a full cycle");
        assert_eq!(
            b,
            Breakdown {
                to_line: us(100),
                device: us(50),
                to_caller: us(250),
            }
        );
        assert_eq!(breakdown(&log[..1], t0, t0 + us(900), t35), None);
    }

    #[test]
    fn a_probe_after_the_backoff_began_is_counted_once_per_held_cycle() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let timeout = s(1);
        let mut results = HashMap::new();
        // Unit 3: a full timeout with retries, then a skip (fast failure) at 5 s.
        results.insert(
            3,
            vec![(t0, s(3), false), (t0 + s(5), Duration::ZERO, false)],
        );
        // Unit 1: held up before the backoff (not counted), once after it, once not.
        results.insert(
            1,
            vec![
                (t0 + s(1), s(3), true),
                (t0 + s(6), Duration::from_millis(1100), true),
                (t0 + s(7), Duration::from_millis(30), true),
            ],
        );
        let (since, n, held, max) = after_backoff(&results, 3, timeout).expect("in backoff");
        assert_eq!(since, t0 + s(5));
        assert_eq!((n, held, max), (2, 1, Duration::from_millis(1100)));
        // A unit that never went into backoff gives no figure.
        results.insert(3, vec![(t0, s(3), false)]);
        assert_eq!(after_backoff(&results, 3, timeout), None);
    }

    #[test]
    fn bit_replies_are_packed() {
        let coils = ReadBlock {
            table: Table::Coil,
            start: 0,
            count: 9,
        };
        assert_eq!(reply_len(&coils), 3 + 2 + 2);
    }
}
