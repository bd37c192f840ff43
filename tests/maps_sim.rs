//! Every shipped device map, driven through the simulator over Modbus TCP by the gateway's own
//! device task: unplugged -> plugged -> limit written and read back -> charging with energy
//! growing -> unplugged, with the IEC 61851 states the gateway derives along the way.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

use std::time::Duration;

use chargebridge::charger::device::{DeviceEvent, DeviceLink, run_device};
use chargebridge::charger::reading::Reading;
use chargebridge::devicemap::{self, DeviceMap, Iec61851State};
use chargebridge::modbus::{DeviceTiming, Endpoint, spawn_bus};
use chargebridge::sim::{SimArgs, SimHandle, spawn};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Every map this test drives; `every_shipped_map_is_driven` keeps it complete.
const DRIVEN: &[&str] = &[
    "abb-terra-ac",
    "alfen-eve-single",
    "bender-cc613",
    "delta-ac-max",
    "evse-wb-din",
    "heidelberg-energy-control",
    "keba-p30-x",
    "mennekes-amtron-compact",
    "phoenix-contact-charx-sec",
    "phoenix-contact-ev-cc",
    "schrack-icharge-cion",
    "vestel-evc04",
    "webasto-next",
];

/// Ten times the mains voltage: the energy registers with a coarse resolution (Vestel counts
/// 0.1 kWh) then move within a few seconds. Nothing here asserts how fast.
const VOLTAGE: f64 = 2300.0;
const LIMIT: f64 = 16.0;
const WAIT: Duration = Duration::from_secs(60);

struct Rig {
    map: DeviceMap,
    sim: SimHandle,
    events: mpsc::Receiver<DeviceEvent>,
    limit: watch::Sender<Option<f64>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    running: chargebridge::sim::RunningSim,
}

async fn rig(name: &str) -> Rig {
    rig_with(name, &[]).await
}

/// A rig whose simulated wallbox starts with `set` (`NAME=VALUE`) register values.
async fn rig_with(name: &str, set: &[&str]) -> Rig {
    let map = devicemap::resolve(name, &[]).unwrap();
    let stop = CancellationToken::new();
    let args = SimArgs {
        map: name.into(),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        voltage: Some(VOLTAGE),
        set: set.iter().map(ToString::to_string).collect(),
        ..SimArgs::default()
    };
    let running = spawn(args, map.clone(), stop.clone()).await.unwrap();
    let sim = running.units[0].1.clone();
    let phases = sim.snapshot().phases;
    let bus = spawn_bus(
        name.into(),
        Endpoint::Tcp {
            addr: running.tcp_addr.unwrap().to_string(),
        },
        stop.clone(),
    );
    let link = DeviceLink {
        charger: name.into(),
        map: std::sync::Arc::new(map.clone()),
        bus,
        unit: map.modbus.unit,
        timing: DeviceTiming::from(&map.modbus),
        poll_interval: Duration::from_millis(200),
        max_current: 32.0,
        failsafe_current: Some(6.0),
        phases,
        voltage: VOLTAGE,
        telemetry: chargebridge::telemetry::Telemetry::new()
            .expect("metrics registry")
            .charger(name, name, &map.name),
    };
    let (limit, limit_rx) = watch::channel(None);
    let (tx, events) = mpsc::channel(64);
    let task = tokio::spawn(run_device(link, limit_rx, tx, stop.clone()));
    Rig {
        map,
        sim,
        events,
        limit,
        stop,
        tasks: vec![task],
        running,
    }
}

impl Rig {
    /// Waits for a sample satisfying `want`; panics with the last sample after [`WAIT`].
    async fn sample(&mut self, what: &str, want: impl Fn(&Reading) -> bool) -> Reading {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = None;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv()).await;
            match ev {
                Ok(Some(DeviceEvent::Sample(r))) => {
                    if want(&r) {
                        return r;
                    }
                    last = Some(r);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!(
                    "{}: no sample with {what}; last: {last:?}; sim: {:?}",
                    self.map.name,
                    self.sim.snapshot()
                ),
            }
        }
    }

    async fn limit_written(&mut self, want: Option<f64>) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(DeviceEvent::LimitWritten(w))) if w == want => return,
                Ok(Some(_)) => {}
                _ => panic!(
                    "{}: the limit {want:?} was not written; sim: {:?}",
                    self.map.name,
                    self.sim.snapshot()
                ),
            }
        }
    }

    async fn finish(self) {
        self.stop.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
        self.running.wait().await.unwrap();
    }
}

fn state(r: &Reading) -> Option<Iec61851State> {
    r.state.clone().and_then(Result::ok)
}

/// The current the wallbox offers for a limit of [`LIMIT`] amperes, per the map.
fn expected_offer(map: &DeviceMap, phases: u8) -> f64 {
    match (&map.control.current_limit, &map.control.power_limit) {
        (Some(l), _) => LIMIT.min(l.max),
        (None, Some(p)) => {
            p.watts(Some(LIMIT), 32.0, phases, VOLTAGE) / (f64::from(phases) * VOLTAGE)
        }
        (None, None) => panic!("{}: no limit to drive", map.name),
    }
}

async fn drive(name: &str) {
    let mut r = rig(name).await;
    let has_energy = r.map.measurand("Energy.Active.Import.Register").is_some();

    // Unplugged: A.
    r.sample("state A", |s| state(s) == Some(Iec61851State::A))
        .await;
    // The device task writes "off" as soon as the box answers: the EV waits plugged.
    r.limit_written(None).await;
    r.sim.plug();
    let plugged = r
        .sample("a plugged, not charging state", |s| {
            state(s).is_some_and(|st| st.plugged() && st != Iec61851State::C2)
        })
        .await;
    assert!(
        matches!(
            state(&plugged),
            Some(Iec61851State::B1 | Iec61851State::B2 | Iec61851State::C1)
        ),
        "{name}: {plugged:?}"
    );

    // A limit: written, read back by the simulator as the wallbox would see it, and charging.
    r.limit.send(Some(LIMIT)).unwrap();
    r.limit_written(Some(LIMIT)).await;
    let snap = r.sim.snapshot();
    let offer = expected_offer(&r.map, snap.phases);
    let limit_a = snap.limit_a.unwrap();
    assert!(
        (limit_a - offer).abs() < 0.01,
        "{name}: limit register reads {limit_a} A, expected {offer} A"
    );
    let charging = r
        .sample("state C2", |s| state(s) == Some(Iec61851State::C2))
        .await;
    let start = charging.energy_wh();
    if has_energy {
        let start = start.unwrap_or_else(|| panic!("{name}: no energy reading: {charging:?}"));
        r.sample("growing energy", |s| {
            s.energy_wh().is_some_and(|e| e > start)
        })
        .await;
    }
    let snap = r.sim.snapshot();
    assert!(
        snap.energy_wh > 0.0,
        "{name}: the simulator charged nothing"
    );
    assert!(snap.current_a > 0.0, "{name}: {snap:?}");

    // Off again: the EV stops drawing.
    r.limit.send(None).unwrap();
    r.limit_written(None).await;
    r.sample("not charging after the limit went off", |s| {
        state(s).is_some_and(|st| st.plugged() && st != Iec61851State::C2)
    })
    .await;
    assert_eq!(r.sim.snapshot().current_a, 0.0, "{name}");

    r.sim.unplug();
    r.sample("state A after unplugging", |s| {
        state(s) == Some(Iec61851State::A)
    })
    .await;
    r.finish().await;
}

#[test]
fn every_shipped_map_is_driven() {
    let mut shipped: Vec<&str> = devicemap::builtin_names();
    shipped.sort_unstable();
    assert_eq!(shipped, DRIVEN, "add new maps to DRIVEN and a test below");
}

macro_rules! drive_tests {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                drive($name).await;
            }
        )*
    };
}

drive_tests! {
    abb_terra_ac => "abb-terra-ac",
    alfen_eve_single => "alfen-eve-single",
    bender_cc613 => "bender-cc613",
    delta_ac_max => "delta-ac-max",
    evse_wb_din => "evse-wb-din",
    heidelberg_energy_control => "heidelberg-energy-control",
    keba_p30_x => "keba-p30-x",
    mennekes_amtron_compact => "mennekes-amtron-compact",
    phoenix_contact_charx_sec => "phoenix-contact-charx-sec",
    phoenix_contact_ev_cc => "phoenix-contact-ev-cc",
    schrack_icharge_cion => "schrack-icharge-cion",
    vestel_evc04 => "vestel-evc04",
    webasto_next => "webasto-next",
}

/// Waits until the simulator's last write went to `register` with `words`.
async fn written(r: &mut Rig, register: &str, words: &[u16]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let w = r.sim.snapshot().last_write;
        if let Some(w) = w
            && w.registers == [register]
        {
            assert_eq!(w.words, words);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat write: {:?}",
            r.sim.snapshot().last_write
        );
        // Keep draining the device task's events so it never blocks on a full channel.
        let _ = tokio::time::timeout(Duration::from_millis(100), r.events.recv()).await;
    }
}

/// A write keep-alive (MENNEKES heartbeat 0x55AA every 5 s) is sent by its own clock even
/// though the gateway polls the box every 200 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mennekes_heartbeat_is_written_while_polling() {
    let mut r = rig("mennekes-amtron-compact").await;
    r.sample("state A", |s| state(s) == Some(Iec61851State::A))
        .await;
    written(&mut r, "heartbeat", &[0x55AA]).await;
    r.finish().await;
}

/// KEBA: the failsafe timeout read from 1602 is rewritten to 5018 as the heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keba_failsafe_timeout_is_rewritten_as_its_heartbeat() {
    let mut r = rig_with("keba-p30-x", &["failsafe_timeout=4"]).await;
    r.sample("state A", |s| state(s) == Some(Iec61851State::A))
        .await;
    written(&mut r, "failsafe_set", &[4]).await;
    r.finish().await;
}
