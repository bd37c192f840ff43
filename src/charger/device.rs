//! The wallbox side of a charger: polls the device map's registers over a bus handle, writes
//! `init`, the failsafe current and the current limit, and keeps remote control alive.
//!
//! Runs as its own task so that a slow RS-485 line never delays OCPP replies; it reports to
//! the charger task over a channel and takes the desired limit from a `watch`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::machine::Identity;
use super::reading::Reading;
use crate::devicemap::plan::{self, ReadBlock};
use crate::devicemap::{
    DeviceMap, IdentityValue, KeepaliveAction, KeepaliveInterval, PollClass, RegisterImage,
    SLOW_POLL_EVERY, Table, TimeUnit, Value, codec,
};
use crate::modbus::{BusError, BusHandle, DeviceTiming};
use crate::telemetry::{ChargerTelemetry, ModbusOp};

/// What the device task reports.
#[derive(Clone, Debug)]
pub enum DeviceEvent {
    /// The identity registers were read after the device (re)appeared.
    Identity(Identity),
    /// One poll cycle's reading.
    Sample(Reading),
    /// A poll cycle failed.
    PollFailed(String),
    /// The limit was written (A; `None` = off) and, where readable, read back equal.
    LimitWritten(Option<f64>),
}

/// Everything the device task needs.
#[derive(Clone, Debug)]
pub struct DeviceLink {
    /// Charger id (for logs).
    pub charger: String,
    /// The device map.
    pub map: Arc<DeviceMap>,
    /// The bus the wallbox is on.
    pub bus: BusHandle,
    /// Modbus unit id.
    pub unit: u8,
    /// Timing of this device.
    pub timing: DeviceTiming,
    /// Poll period.
    pub poll_interval: Duration,
    /// Installer limit (A); caps every write.
    pub max_current: f64,
    /// Written to the map's failsafe register at (re)connect.
    pub failsafe_current: Option<f64>,
    /// Phases the wallbox is wired with (W <-> A for a map's `power_limit`).
    pub phases: u8,
    /// Nominal phase voltage (W <-> A for a map's `power_limit`).
    pub voltage: f64,
    /// Where Modbus requests, reachability and written limits are reported.
    pub telemetry: ChargerTelemetry,
}

/// The blocks of one poll cycle for each combination of classes, with blocks that the device
/// refused split into smaller ones (kept for later cycles).
#[derive(Debug)]
struct Plans {
    by_classes: HashMap<Vec<PollClass>, Vec<ReadBlock>>,
}

impl Plans {
    fn blocks(&mut self, map: &DeviceMap, classes: &[PollClass]) -> Vec<ReadBlock> {
        self.by_classes
            .entry(classes.to_vec())
            .or_insert_with(|| plan::plan(map, classes))
            .clone()
    }

    fn replace(&mut self, classes: &[PollClass], old: &ReadBlock, new: &[ReadBlock]) {
        if let Some(blocks) = self.by_classes.get_mut(classes)
            && let Some(pos) = blocks.iter().position(|b| b == old)
        {
            blocks.splice(pos..=pos, new.iter().cloned());
        }
    }
}

struct Device {
    link: DeviceLink,
    image: RegisterImage,
    plans: Plans,
    present: bool,
    cycle: u64,
    written: Option<Option<f64>>,
    written_at: Option<Instant>,
    last_request: Option<Instant>,
    /// The last keep-alive write: a write keep-alive (a heartbeat register) is due by its own
    /// clock, since ordinary polling does not count for such devices.
    last_keepalive_write: Option<Instant>,
    shutdown: CancellationToken,
}

/// Runs until `shutdown`.
pub async fn run_device(
    link: DeviceLink,
    mut limit: watch::Receiver<Option<f64>>,
    events: mpsc::Sender<DeviceEvent>,
    shutdown: CancellationToken,
) {
    let mut poll = tokio::time::interval(link.poll_interval.max(Duration::from_millis(100)));
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut dev = Device {
        link,
        image: RegisterImage::default(),
        plans: Plans {
            by_classes: HashMap::new(),
        },
        present: false,
        cycle: 0,
        written: None,
        written_at: None,
        last_request: None,
        last_keepalive_write: None,
        shutdown: shutdown.clone(),
    };
    loop {
        let keepalive_at = dev.keepalive_due();
        let refresh_at = dev.refresh_due();
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            _ = poll.tick() => {
                let events_ok = dev.poll_cycle(&events).await;
                if !events_ok { break; }
                let want = *limit.borrow_and_update();
                if dev.present && dev.written != Some(want) {
                    dev.write_limit(want, &events).await;
                }
            }
            Ok(()) = limit.changed() => {
                let want = *limit.borrow_and_update();
                if dev.present {
                    dev.write_limit(want, &events).await;
                }
            }
            () = sleep_until_opt(keepalive_at) => dev.keepalive().await,
            () = sleep_until_opt(refresh_at) => {
                let want = *limit.borrow();
                dev.write_limit(want, &events).await;
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Device {
    fn map(&self) -> &DeviceMap {
        &self.link.map
    }

    /// Reads one cycle's blocks; returns false when the charger task is gone.
    async fn poll_cycle(&mut self, events: &mpsc::Sender<DeviceEvent>) -> bool {
        let mut classes = vec![PollClass::Always];
        if self.cycle.is_multiple_of(SLOW_POLL_EVERY) || !self.present {
            classes.push(PollClass::Slow);
        }
        if !self.present {
            classes.push(PollClass::Once);
        }
        self.cycle += 1;
        let map = Arc::clone(&self.link.map);
        let blocks = self.plans.blocks(&map, &classes);
        for block in &blocks {
            if let Err(e) = self.read_block(&classes, block).await {
                self.link.telemetry.poll_done(false);
                self.present = false;
                self.written = None;
                return events
                    .send(DeviceEvent::PollFailed(e.to_string()))
                    .await
                    .is_ok();
            }
        }
        if !self.present {
            self.present = true;
            tracing::info!(charger = %self.link.charger, "wallbox answers on Modbus");
            self.on_appeared().await;
            let identity = self.identity();
            if events.send(DeviceEvent::Identity(identity)).await.is_err() {
                return false;
            }
        }
        self.link.telemetry.poll_done(true);
        events
            .send(DeviceEvent::Sample(Reading::from_image(&map, &self.image)))
            .await
            .is_ok()
    }

    /// One read on the bus, timed and counted for the metrics.
    async fn read(&mut self, table: Table, address: u16, count: u16) -> Result<Vec<u16>, BusError> {
        self.last_request = Some(Instant::now());
        let l = &self.link;
        let started = Instant::now();
        let result = l.bus.read(l.unit, &l.timing, table, address, count).await;
        l.telemetry
            .modbus_request(ModbusOp::Read(table), started.elapsed(), &result);
        result
    }

    /// Reads a block; a block the device refuses with an exception is split (down to single
    /// registers) so that one unsupported register never blinds the gateway to the rest.
    async fn read_block(
        &mut self,
        classes: &[PollClass],
        block: &ReadBlock,
    ) -> Result<(), BusError> {
        let result = self.read(block.table, block.start, block.count).await;
        let l = &self.link;
        match result {
            Ok(words) => {
                self.image.insert_block(block.table, block.start, &words);
                Ok(())
            }
            Err(BusError::Exception(code)) => {
                let map = Arc::clone(&l.map);
                let parts = plan::split(block, &map);
                if parts.len() <= 1 {
                    tracing::debug!(charger = %l.charger, ?block, code, "register refused by the device");
                    for reg in map.registers.iter().filter(|r| {
                        r.table == block.table
                            && r.address >= block.start
                            && u32::from(r.address)
                                < u32::from(block.start) + u32::from(block.count)
                    }) {
                        self.image.forget(reg);
                    }
                    return Ok(());
                }
                tracing::info!(charger = %l.charger, ?block, code, "block read refused; splitting it");
                self.plans.replace(classes, block, &parts);
                for part in &parts {
                    Box::pin(self.read_block(classes, part)).await?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Logs a failed write unless the gateway is shutting down (the bus is gone then).
    fn warn(&self, what: &str, error: &str) {
        if !self.shutdown.is_cancelled() {
            tracing::warn!(charger = %self.link.charger, "{what} failed: {error}");
        }
    }

    async fn write_value(&mut self, register: usize, value: f64) -> Result<(), String> {
        let map = Arc::clone(&self.link.map);
        let reg = map.register(register);
        let words = codec::encode(reg, &Value::Number(value)).map_err(|e| e.to_string())?;
        let l = &self.link;
        self.last_request = Some(Instant::now());
        let started = Instant::now();
        let result = l
            .bus
            .write(
                l.unit,
                &l.timing,
                reg.table,
                reg.address,
                &words,
                map.modbus.write_function,
            )
            .await;
        l.telemetry
            .modbus_request(ModbusOp::Write(reg.table), started.elapsed(), &result);
        result.map_err(|e| format!("writing {}: {e}", reg.name))
    }

    /// `init` writes and the failsafe current, whenever the device (re)appears.
    async fn on_appeared(&mut self) {
        let map = Arc::clone(&self.link.map);
        for w in &map.init {
            if let Err(e) = self.write_value(w.register, w.value).await {
                self.warn("init write", &e);
            }
        }
        if let (Some(reg), Some(amps)) = (map.control.failsafe_current, self.link.failsafe_current)
            && let Err(e) = self.write_value(reg, amps.min(self.link.max_current)).await
        {
            self.warn("failsafe current write", &e);
        }
        self.written = None;
    }

    fn identity(&self) -> Identity {
        let value = |v: &Option<IdentityValue>| match v {
            None => None,
            Some(IdentityValue::Literal(s)) => Some(s.clone()),
            Some(IdentityValue::Register { register, format }) => {
                let text = self.image.value(self.map(), *register)?.to_string();
                Some(match format {
                    Some(f) => f.replacen("{}", &text, 1),
                    None => text,
                })
            }
        };
        Identity {
            firmware: value(&self.map().identity.firmware),
            serial: value(&self.map().identity.serial),
        }
    }

    /// Writes the limit (and the enable flag), then reads the limit back to verify it.
    async fn write_limit(&mut self, want: Option<f64>, events: &mpsc::Sender<DeviceEvent>) {
        let map = Arc::clone(&self.link.map);
        let mut ok = true;
        if let Some(cl) = &map.control.current_limit {
            let max = self.link.max_current.min(cl.max);
            let value = match want {
                Some(a) if a >= cl.min => (a.min(max) * 10.0).round() / 10.0,
                _ => cl.off_value,
            };
            match self.write_value(cl.register, value).await {
                Ok(()) => ok &= self.verify(cl.register, value).await,
                Err(e) => {
                    self.warn("limit write", &e);
                    ok = false;
                }
            }
        }
        if let Some(pl) = &map.control.power_limit {
            let l = &self.link;
            let value = pl.watts(want, l.max_current, l.phases, l.voltage);
            match self.write_value(pl.register, value).await {
                Ok(()) => ok &= self.verify(pl.register, value).await,
                Err(e) => {
                    self.warn("power limit write", &e);
                    ok = false;
                }
            }
        }
        if let Some(en) = &map.control.enable {
            let value = if want.is_some() {
                en.on_value
            } else {
                en.off_value
            };
            if let Err(e) = self.write_value(en.register, value).await {
                self.warn("enable write", &e);
                ok = false;
            }
        }
        if ok {
            tracing::info!(charger = %self.link.charger, limit = ?want, "limit written");
            self.link
                .telemetry
                .limit_written(want.map(|a| a.min(self.link.max_current)));
            self.written = Some(want);
            self.written_at = Some(Instant::now());
            let _ = events.send(DeviceEvent::LimitWritten(want)).await;
        }
    }

    /// Reads a written holding register back; true if it holds the value (or cannot be read).
    async fn verify(&mut self, register: usize, value: f64) -> bool {
        let map = Arc::clone(&self.link.map);
        let reg = map.register(register);
        if reg.poll == PollClass::Never {
            // Write-only: reading it back may be refused or even drop the connection.
            return true;
        }
        let result = self.read(reg.table, reg.address, reg.words).await;
        let l = &self.link;
        match result {
            Ok(words) => {
                let read = codec::decode(reg, &words)
                    .ok()
                    .flatten()
                    .and_then(|v| v.as_f64());
                let same = read.is_some_and(|r| (r - value).abs() < reg.scale.abs() / 2.0 + 1e-9);
                if !same {
                    tracing::warn!(charger = %l.charger, register = %reg.name, ?read, value, "limit read back differs");
                }
                same
            }
            // Write-only registers (e.g. ABB's limit) cannot be verified.
            Err(BusError::Exception(_)) => true,
            Err(e) => {
                tracing::warn!(charger = %l.charger, "limit read-back failed: {e}");
                false
            }
        }
    }

    fn keepalive_interval(&self) -> Option<Duration> {
        let ka = self.map().keepalive.as_ref()?;
        let d = match &ka.interval {
            KeepaliveInterval::Every(d) => *d,
            KeepaliveInterval::FromRegister {
                register,
                unit,
                divide,
            } => {
                let v = self.image.number(self.map(), *register)?;
                if v <= 0.0 {
                    return None; // watchdog off
                }
                let secs = match unit {
                    TimeUnit::Ms => v / 1000.0,
                    TimeUnit::S => v,
                } / f64::from((*divide).max(1));
                Duration::from_secs_f64(secs.clamp(0.1, 86_400.0))
            }
        };
        Some(d)
    }

    fn keepalive_due(&self) -> Option<Instant> {
        if !self.present {
            return None;
        }
        let every = self.keepalive_interval()?;
        let last = match self.map().keepalive.as_ref().map(|k| &k.action) {
            Some(KeepaliveAction::Write(_) | KeepaliveAction::Copy { .. }) => {
                self.last_keepalive_write
            }
            _ => self.last_request,
        };
        Some(last.map_or_else(Instant::now, |t| t + every))
    }

    async fn keepalive(&mut self) {
        let Some(ka) = self.map().keepalive.clone() else {
            return;
        };
        let result = match ka.action {
            KeepaliveAction::Read(register) => {
                let map = Arc::clone(&self.link.map);
                let reg = map.register(register);
                self.read(reg.table, reg.address, reg.words)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            KeepaliveAction::Write(w) => {
                self.last_keepalive_write = Some(Instant::now());
                self.write_value(w.register, w.value).await
            }
            KeepaliveAction::Copy { register, from } => {
                self.last_keepalive_write = Some(Instant::now());
                match self.image.number(self.map(), from) {
                    Some(v) if v > 0.0 => self.write_value(register, v).await,
                    // Unread, or 0 (the device's watchdog is off): nothing to keep alive.
                    _ => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(charger = %self.link.charger, "keep-alive failed: {e}");
        }
    }

    fn refresh_due(&self) -> Option<Instant> {
        let every = self.map().control.refresh?;
        let at = self.written_at?;
        self.present.then_some(at + every)
    }
}
