//! The simulator over real Modbus TCP sockets, with tokio-modbus as the master.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

mod common;

use std::time::Duration;

use chargebridge::devicemap::Iec61851State;
use chargebridge::sim::{RunningSim, SimArgs, SimHandle, spawn};
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;
use tokio_util::sync::CancellationToken;

struct Rig {
    sim: RunningSim,
    stop: CancellationToken,
    ctx: Context,
    handle: SimHandle,
}

async fn rig(units: Vec<u8>, unit: u8) -> Rig {
    let stop = CancellationToken::new();
    let args = SimArgs {
        map: "heidelberg-test".into(),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        units,
        ..SimArgs::default()
    };
    let sim = spawn(args, common::test_map(), stop.clone()).await.unwrap();
    let ctx = tcp::connect_slave(sim.tcp_addr.unwrap(), Slave(unit))
        .await
        .unwrap();
    let handle = sim.units[0].1.clone();
    Rig {
        sim,
        stop,
        ctx,
        handle,
    }
}

impl Rig {
    async fn input(&mut self, addr: u16, n: u16) -> Vec<u16> {
        self.ctx
            .read_input_registers(addr, n)
            .await
            .unwrap()
            .unwrap()
    }

    async fn state(&mut self) -> u16 {
        self.input(5, 1).await[0]
    }

    async fn write(&mut self, addr: u16, value: u16) {
        self.ctx
            .write_multiple_registers(addr, &[value])
            .await
            .unwrap()
            .unwrap();
    }

    async fn finish(self) {
        drop(self.ctx);
        self.stop.cancel();
        self.sim.wait().await.unwrap();
    }
}

#[tokio::test]
async fn plug_offer_and_unplug_show_up_in_the_heidelberg_registers() {
    let mut r = rig(vec![], 1).await;
    assert_eq!(r.state().await, 2, "no EV: A");
    r.handle.plug();
    assert_eq!(r.state().await, 4, "plugged, no limit: B1");
    r.write(261, 160).await;
    assert_eq!(r.state().await, 7, "16 A offered: C2");
    // Currents (0.1 A), temperature, voltages.
    assert_eq!(r.input(6, 7).await, vec![160, 160, 160, 0, 230, 230, 230]);
    let power = r.input(14, 1).await[0];
    assert_eq!(f64::from(power), 16.0 * 230.0 * 3.0);
    let snap = r.handle.snapshot();
    assert_eq!(snap.state, Iec61851State::C2);
    assert_eq!(snap.limit_raw, vec![160]);
    let write = snap.last_write.unwrap();
    assert_eq!((write.function, write.address), (16, 261));
    r.ctx
        .write_single_register(261, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.input(6, 1).await, vec![100]);
    r.handle.unplug();
    assert_eq!(r.state().await, 2);
    assert_eq!(r.input(14, 1).await, vec![0]);
    r.finish().await;
}

#[tokio::test]
async fn energy_register_holds_the_integral_of_power() {
    let mut r = rig(vec![], 1).await;
    r.handle.plug();
    r.write(261, 160).await;
    let before = r.handle.snapshot().energy_wh;
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(1800)).await;
    let words = r.input(17, 2).await;
    let wh = (u32::from(words[0]) << 16) | u32::from(words[1]);
    // Half an hour at 11040 W; `before` covers the instants between the write and the pause.
    let expected = before + 11040.0 / 2.0;
    assert!(
        (f64::from(wh) - expected).abs() <= 1.0,
        "{wh} Wh vs {expected}"
    );
    tokio::time::advance(Duration::from_secs(1800)).await;
    let words = r.input(17, 2).await;
    let later = (u32::from(words[0]) << 16) | u32::from(words[1]);
    assert!(
        (f64::from(later) - (expected + 5520.0)).abs() <= 1.0,
        "{later}"
    );
    tokio::time::resume();
    r.finish().await;
}

#[tokio::test]
async fn watchdog_silence_falls_back_to_the_failsafe_current_until_the_limit_is_rewritten() {
    let mut r = rig(vec![], 1).await;
    r.handle.plug();
    r.write(257, 2000).await; // watchdog 2 s
    r.write(262, 60).await; // failsafe 6 A
    r.write(261, 160).await;
    tokio::time::pause();
    // Keep-alive reads every 500 ms (watchdog / 4) keep the limit in force.
    for _ in 0..8 {
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(r.input(6, 1).await, vec![160]);
    }
    tokio::time::advance(Duration::from_millis(2100)).await;
    let snap = r.handle.snapshot();
    assert!(snap.failsafe_active);
    assert_eq!((snap.offered_a, snap.current_a), (6.0, 6.0));
    assert_eq!(
        r.input(6, 1).await,
        vec![60],
        "reading alone does not restore the limit"
    );
    r.write(261, 160).await;
    assert_eq!(r.input(6, 1).await, vec![160]);
    tokio::time::resume();
    r.finish().await;
}

#[tokio::test]
async fn undeclared_addresses_and_unknown_units_get_exceptions() {
    let mut r = rig(vec![], 1).await;
    // Inside a block, gaps read 0 (address 13 is undeclared).
    assert_eq!(r.input(12, 3).await, vec![230, 0, 0]);
    assert_eq!(
        r.ctx.read_input_registers(1000, 2).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        r.ctx.write_single_register(259, 1).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        r.ctx.read_input_registers(4, 200).await.unwrap(),
        Err(ExceptionCode::IllegalDataValue)
    );
    assert_eq!(
        r.ctx.read_coils(0, 1).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    r.ctx.set_slave(Slave(9));
    assert_eq!(
        r.ctx.read_input_registers(5, 1).await.unwrap(),
        Err(ExceptionCode::GatewayTargetDevice)
    );
    r.finish().await;
}

#[tokio::test]
async fn several_units_on_one_endpoint_are_independent() {
    let mut r = rig(vec![1, 2], 2).await;
    let unit2 = r.sim.units[1].1.clone();
    unit2.plug();
    assert_eq!(r.state().await, 4);
    r.ctx.set_slave(Slave(1));
    assert_eq!(r.state().await, 2);
    r.finish().await;
}

#[tokio::test]
async fn a_silent_device_does_not_answer() {
    let mut r = rig(vec![], 1).await;
    r.handle.set_silent(true);
    let reply =
        tokio::time::timeout(Duration::from_millis(300), r.ctx.read_input_registers(5, 1)).await;
    assert!(reply.is_err(), "expected no answer, got {reply:?}");
    assert_eq!(r.handle.snapshot().requests, 0);
    r.finish().await;
}

#[tokio::test]
async fn a_peer_sending_garbage_is_dropped_and_others_are_still_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut r = rig(vec![], 1).await;
    let mut junk = tokio::net::TcpStream::connect(r.sim.tcp_addr.unwrap())
        .await
        .unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), junk.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert_eq!(r.state().await, 2);
    r.finish().await;
}
