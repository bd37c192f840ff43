//! The simulator as Modbus RTU slaves on a pty pair, with tokio-modbus as the master.
//!
//! With `socat` installed the line is a socat pty pair opened by path, as an installer would
//! use it; without it, a pty pair from `tokio_serial::SerialStream::pair` carries the same
//! bytes (and the test that needs a path is skipped with a note).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chargebridge::devicemap::{Parity, SerialSettings};
use chargebridge::sim::rtu::{crc16, frame, open_serial, serve_rtu_stream};
use chargebridge::sim::{SimArgs, SimDevice, SimHandle, SimOptions, spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_modbus::prelude::*;
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;

const NO_ANSWER: Duration = Duration::from_millis(300);

/// A socat pty pair; socat is killed when this is dropped.
struct Socat {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
}

async fn socat_pair() -> Option<Socat> {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let child = tokio::process::Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    for _ in 0..500 {
        if a.exists() && b.exists() {
            return Some(Socat {
                _child: child,
                _dir: dir,
                a,
                b,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn settings(parity: Parity) -> SerialSettings {
    SerialSettings {
        baud: 19200,
        parity,
        data_bits: 8,
        stop_bits: 1,
    }
}

/// Two wallboxes (units 1 and 2) served on one end of a line; the other end is returned.
struct Line {
    master: SerialStream,
    units: Vec<(u8, SimHandle)>,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    _socat: Option<Socat>,
}

async fn line() -> Line {
    let units: Vec<(u8, SimHandle)> = [1u8, 2]
        .into_iter()
        .map(|u| {
            let map = std::sync::Arc::new(common::test_map());
            (
                u,
                SimHandle::new(SimDevice::new(map, SimOptions::default()).unwrap()),
            )
        })
        .collect();
    let socat = socat_pair().await;
    let (slave_side, master, socat) = match socat {
        // The wallbox side keeps 8E1 like a real Heidelberg; ptys ignore parity, and the
        // master opens its end 8N1 (architecture.md, Tests).
        Some(s) => (
            open_serial(&s.a, settings(Parity::Even)).unwrap(),
            open_serial(&s.b, settings(Parity::None)).unwrap(),
            Some(s),
        ),
        None => {
            eprintln!("socat not installed: using a plain pty pair");
            let (m, s) = SerialStream::pair().unwrap();
            (s, m, None)
        }
    };
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve_rtu_stream(
        slave_side,
        19200,
        units.clone(),
        stop.clone(),
    ));
    Line {
        master,
        units,
        stop,
        server,
        _socat: socat,
    }
}

impl Line {
    async fn finish(self) {
        self.stop.cancel();
        self.server.await.unwrap().unwrap();
    }
}

/// Reads exactly `n` bytes, or `None` if the line stays quiet.
async fn reply(port: &mut SerialStream, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(NO_ANSWER, port.read_exact(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf)
}

#[tokio::test]
async fn two_units_share_a_line_and_unknown_units_get_no_answer() {
    let l = line().await;
    let (units, stop, server) = (l.units.clone(), l.stop.clone(), l.server);
    let mut ctx = rtu::attach_slave(l.master, Slave(1));
    assert_eq!(ctx.read_input_registers(5, 1).await.unwrap(), Ok(vec![2]));
    units[1].1.plug();
    ctx.set_slave(Slave(2));
    assert_eq!(ctx.read_input_registers(5, 1).await.unwrap(), Ok(vec![4]));
    ctx.write_multiple_registers(261, &[160])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ctx.read_input_registers(5, 1).await.unwrap(), Ok(vec![7]));
    assert_eq!(
        ctx.read_input_registers(6, 3).await.unwrap(),
        Ok(vec![160, 160, 160])
    );
    // Unit 3 is nobody: silence, as on a real RS-485 line.
    ctx.set_slave(Slave(3));
    let silent = tokio::time::timeout(NO_ANSWER, ctx.read_input_registers(5, 1)).await;
    assert!(silent.is_err(), "unit 3 answered: {silent:?}");
    // The line is still in step afterwards.
    ctx.set_slave(Slave(1));
    assert_eq!(ctx.read_input_registers(5, 1).await.unwrap(), Ok(vec![2]));
    assert_eq!(
        ctx.read_input_registers(1000, 1).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(units[0].1.snapshot().requests, 3);
    // Stop the server before closing the master's end, whose hang-up it would see as an error.
    stop.cancel();
    server.await.unwrap().unwrap();
    drop(ctx);
}

#[tokio::test]
async fn garbled_split_and_broadcast_frames() {
    let mut l = line().await;
    let request = frame(1, &[0x04, 0x00, 0x05, 0x00, 0x01]);
    // Noise, then a request split across two writes.
    l.master.write_all(&[0x01, 0x10, 0xFF]).await.unwrap();
    l.master.write_all(&request[..3]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    l.master.write_all(&request[3..]).await.unwrap();
    let answer = reply(&mut l.master, 7)
        .await
        .expect("no answer after noise");
    assert_eq!(&answer[..5], &[0x01, 0x04, 0x02, 0x00, 0x02]);
    assert_eq!(crc16(&answer[..5]).to_le_bytes(), [answer[5], answer[6]]);
    // A wrong CRC is dropped silently.
    let mut bad = request.clone();
    bad[6] ^= 0x55;
    l.master.write_all(&bad).await.unwrap();
    assert_eq!(reply(&mut l.master, 1).await, None);
    // A broadcast write (unit 0) reaches every unit and is answered by none.
    let write = frame(0, &[0x10, 0x01, 0x05, 0x00, 0x01, 0x02, 0x00, 0xA0]);
    l.master.write_all(&write).await.unwrap();
    assert_eq!(reply(&mut l.master, 1).await, None);
    for (_, h) in &l.units {
        assert_eq!(h.snapshot().limit_raw, vec![160]);
    }
    // And an ordinary request still works.
    l.master.write_all(&request).await.unwrap();
    assert!(reply(&mut l.master, 7).await.is_some());
    l.finish().await;
}

#[tokio::test]
async fn sim_subcommand_serves_a_serial_path() {
    let Some(socat) = socat_pair().await else {
        eprintln!("skipped: socat not installed");
        return;
    };
    let stop = CancellationToken::new();
    let args = SimArgs {
        map: "heidelberg-test".into(),
        serial: Some(socat.a.clone()),
        units: vec![7],
        script: Some("plug@0s".into()),
        ..SimArgs::default()
    };
    let sim = spawn(args, common::test_map(), stop.clone()).await.unwrap();
    let port = open_serial(Path::new(&socat.b), settings(Parity::None)).unwrap();
    let mut ctx = rtu::attach_slave(port, Slave(7));
    let mut state = vec![];
    for _ in 0..50 {
        state = ctx.read_input_registers(5, 1).await.unwrap().unwrap();
        if state == [4] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, vec![4], "the script plugged the EV");
    stop.cancel();
    sim.wait().await.unwrap();
    drop(ctx);
}
