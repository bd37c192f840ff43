//! Driving the simulator from outside: the control socket and timed scripts.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

mod common;

use std::time::Duration;

use chargebridge::devicemap::Iec61851State;
use chargebridge::sim::{SimArgs, SimHandle, spawn};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn args() -> SimArgs {
    SimArgs {
        map: "heidelberg-test".into(),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        control: Some("127.0.0.1:0".parse().unwrap()),
        ..SimArgs::default()
    }
}

struct Control {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Control {
    async fn send(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let mut reply = String::new();
        self.reader.read_line(&mut reply).await.unwrap();
        reply.trim_end().to_owned()
    }

    async fn status(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.send("status").await).unwrap()
    }
}

#[tokio::test]
async fn control_socket_plugs_faults_and_reports_json() {
    let stop = CancellationToken::new();
    let sim = spawn(
        SimArgs {
            units: vec![1, 2],
            ..args()
        },
        common::test_map(),
        stop.clone(),
    )
    .await
    .unwrap();
    let (r, w) = TcpStream::connect(sim.control_addr.unwrap())
        .await
        .unwrap()
        .into_split();
    let mut c = Control {
        reader: BufReader::new(r),
        writer: w,
    };
    assert_eq!(c.status().await["state"], "A");
    assert_eq!(c.send("plug").await, "ok");
    let s = c.status().await;
    assert_eq!(
        (s["state"].as_str(), s["plugged"].as_bool()),
        (Some("B1"), Some(true))
    );
    assert_eq!(c.send("fault E").await, "ok");
    assert_eq!(c.status().await["state"], "E");
    assert_eq!(c.status().await["status_raw"], serde_json::json!([9]));
    assert_eq!(c.send("clear").await, "ok");
    assert_eq!(c.send("evmax 10").await, "ok");
    assert_eq!(c.status().await["ev_max_current_a"], 10.0);
    assert_eq!(c.send("set temperature 31.5").await, "ok");
    assert_eq!(sim.units[0].1.snapshot().state, Iec61851State::B1);
    // A unit number in front picks another wallbox on the same simulator.
    assert_eq!(c.send("2 plug").await, "ok");
    assert!(c.send("2 status").await.contains("\"plugged\":true"));
    assert!(sim.units[1].1.snapshot().plugged);
    assert!(c.send("9 plug").await.starts_with("error: no unit 9"));
    assert!(c.send("jump").await.starts_with("error: unknown command"));
    assert!(c.send("set nosuchregister 1").await.starts_with("error:"));
    stop.cancel();
    sim.wait().await.unwrap();
}

#[tokio::test]
async fn an_overlong_control_line_closes_the_connection() {
    let stop = CancellationToken::new();
    let sim = spawn(args(), common::test_map(), stop.clone())
        .await
        .unwrap();
    let mut s = TcpStream::connect(sim.control_addr.unwrap()).await.unwrap();
    s.write_all(&[b'x'; 4096]).await.unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert_eq!(line.trim_end(), "error: line too long");
    line.clear();
    assert_eq!(reader.read_line(&mut line).await.unwrap(), 0, "closed");
    stop.cancel();
    sim.wait().await.unwrap();
}

/// Waits until `secs` after `start`, lets due tasks run, and checks the state.
async fn state_at(h: &SimHandle, start: Instant, secs: u64, state: Iec61851State) {
    tokio::time::sleep_until(start + Duration::from_secs(secs)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(h.snapshot().state, state, "at {secs} s");
}

#[tokio::test(start_paused = true)]
async fn a_script_runs_on_time() {
    let stop = CancellationToken::new();
    let start = Instant::now();
    let sim = spawn(
        SimArgs {
            script: Some("plug@2s,unplug@30s,fault@40s,clear@45s".into()),
            ..args()
        },
        common::test_map(),
        stop.clone(),
    )
    .await
    .unwrap();
    let h = sim.units[0].1.clone();
    state_at(&h, start, 1, Iec61851State::A).await;
    state_at(&h, start, 3, Iec61851State::B1).await;
    state_at(&h, start, 31, Iec61851State::A).await;
    state_at(&h, start, 41, Iec61851State::F).await;
    state_at(&h, start, 46, Iec61851State::A).await;
    stop.cancel();
    sim.wait().await.unwrap();
}

#[tokio::test]
async fn bad_arguments_are_refused_before_anything_starts() {
    let stop = CancellationToken::new();
    let both = SimArgs {
        serial: Some("/dev/null".into()),
        ..args()
    };
    let e = spawn(both, common::test_map(), stop.clone())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("exactly one of --tcp"), "{e}");
    let script = SimArgs {
        script: Some("plug@2s,dance@3s".into()),
        ..args()
    };
    let e = spawn(script, common::test_map(), stop.clone())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("dance"), "{e}");
    let set = SimArgs {
        set: vec!["layout_version".into()],
        ..args()
    };
    assert!(spawn(set, common::test_map(), stop.clone()).await.is_err());
    let unknown = SimArgs {
        set: vec!["serial=1".into()],
        ..args()
    };
    let e = spawn(unknown, common::test_map(), stop).await.unwrap_err();
    assert!(
        format!("{e:#}").contains("no register named `serial`"),
        "{e:#}"
    );
}
