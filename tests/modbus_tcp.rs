//! The bus task against a tokio-modbus TCP server on loopback.

mod modbus_support;

use std::time::{Duration, Instant};

use chargebridge::devicemap::{Table, WriteFunction};
use chargebridge::modbus::BusError;
use modbus_support::{
    FIRST_BAD_ADDRESS, Seen, TestDevice, start_tcp, tcp_bus as bus, tcp_rig, timing,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[tokio::test]
async fn reads_every_table() -> TestResult {
    let (device, _server, bus) = tcp_rig().await?;
    let t = timing(1000, 0);
    assert_eq!(
        bus.read(1, &t, Table::Holding, 100, 3).await?,
        vec![1100, 1101, 1102]
    );
    assert_eq!(
        bus.read(1, &t, Table::Input, 100, 2).await?,
        vec![11100, 11101]
    );
    assert_eq!(
        bus.read(1, &t, Table::Coil, 0, 5).await?,
        vec![0, 1, 0, 1, 0]
    );
    assert_eq!(bus.read(1, &t, Table::Discrete, 0, 3).await?, vec![1, 0, 1]);
    // the unit id travels in the MBAP header
    assert_eq!(bus.read(7, &t, Table::Holding, 1, 1).await?, vec![7001]);
    let functions: Vec<u8> = device.seen().iter().map(|s| s.function).collect();
    assert_eq!(functions, vec![3, 4, 1, 2, 3]);
    assert_eq!(bus.name(), "tcp-test");
    let stats = bus.stats();
    assert_eq!(stats.ok, 5);
    assert_eq!(stats.connects, 1);
    assert!(stats.busy > Duration::ZERO);
    assert_eq!(stats.last_error, None);
    Ok(())
}

#[tokio::test]
async fn writes_use_the_function_code_the_map_asks_for() -> TestResult {
    let (device, _server, bus) = tcp_rig().await?;
    let t = timing(1000, 0);
    bus.write(1, &t, Table::Holding, 10, &[160], WriteFunction::Single)
        .await?;
    bus.write(1, &t, Table::Holding, 11, &[60], WriteFunction::Multiple)
        .await?;
    bus.write(1, &t, Table::Holding, 12, &[1, 2], WriteFunction::Single)
        .await?;
    bus.write(1, &t, Table::Coil, 4, &[1], WriteFunction::Single)
        .await?;
    bus.write(1, &t, Table::Coil, 5, &[1, 0, 1], WriteFunction::Multiple)
        .await?;
    let seen: Vec<(u8, u16, Vec<u16>)> = device
        .seen()
        .into_iter()
        .map(|s| (s.function, s.address, s.values))
        .collect();
    assert_eq!(
        seen,
        vec![
            (6, 10, vec![160]),
            (16, 11, vec![60]),
            (16, 12, vec![1, 2]),
            (5, 4, vec![1]),
            (15, 5, vec![1, 0, 1]),
        ]
    );
    assert_eq!(
        bus.read(1, &t, Table::Holding, 10, 4).await?,
        vec![160, 60, 1, 2]
    );
    assert_eq!(bus.read(1, &t, Table::Coil, 4, 4).await?, vec![1, 1, 0, 1]);
    Ok(())
}

#[tokio::test]
async fn exceptions_come_back_at_once_without_retry_or_reconnect() -> TestResult {
    let (device, _server, bus) = tcp_rig().await?;
    let t = timing(1000, 3);
    let result = bus.read(1, &t, Table::Holding, FIRST_BAD_ADDRESS, 2).await;
    assert_eq!(result, Err(BusError::Exception(2)));
    assert_eq!(device.seen().len(), 1, "an exception is not retried");
    // the connection is still good
    assert_eq!(bus.read(1, &t, Table::Holding, 3, 1).await?, vec![1003]);
    assert_eq!(device.connections(), 1);
    let stats = bus.stats();
    assert_eq!((stats.exceptions, stats.ok), (1, 1));
    assert!(
        stats
            .last_error
            .unwrap_or_default()
            .contains("illegal data address"),
        "the last error names the exception"
    );
    Ok(())
}

#[tokio::test]
async fn requests_a_device_must_reject_never_reach_the_wire() -> TestResult {
    let (device, _server, bus) = tcp_rig().await?;
    let t = timing(1000, 0);
    assert_eq!(
        bus.read(1, &t, Table::Holding, 0, 0).await,
        Err(BusError::Exception(3))
    );
    assert_eq!(
        bus.read(1, &t, Table::Input, 0, 126).await,
        Err(BusError::Exception(3))
    );
    let write = bus
        .write(1, &t, Table::Input, 0, &[1], WriteFunction::Multiple)
        .await;
    assert_eq!(write, Err(BusError::Exception(1)));
    assert!(device.seen().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_late_reply_is_never_taken_for_the_next_answer() -> TestResult {
    let (device, _server, bus) = tcp_rig().await?;
    let t = timing(200, 0);
    device.delay_next(Duration::from_millis(700));
    let started = Instant::now();
    let result = bus.read(1, &t, Table::Holding, 5, 1).await;
    let waited = started.elapsed();
    assert_eq!(result, Err(BusError::Timeout));
    assert!(
        waited >= Duration::from_millis(200),
        "gave up after {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(700),
        "waited for the late reply: {waited:?}"
    );
    // The late reply (1005) is still on its way on the old connection; this request must
    // get its own answer, on a new connection.
    assert_eq!(bus.read(1, &t, Table::Holding, 6, 1).await?, vec![1006]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(bus.read(1, &t, Table::Holding, 8, 1).await?, vec![1008]);
    assert_eq!(device.connections(), 2);
    let stats = bus.stats();
    assert_eq!((stats.timeouts, stats.ok, stats.connects), (1, 2, 2));
    Ok(())
}

#[tokio::test]
async fn timeouts_are_retried_as_often_as_the_map_says() -> TestResult {
    let (device, _server, bus) = tcp_rig().await?;
    device.make_silent(4);
    let result = bus.read(4, &timing(100, 2), Table::Holding, 0, 1).await;
    assert_eq!(result, Err(BusError::Timeout));
    assert_eq!(device.seen().len(), 3, "one attempt and two retries");
    assert_eq!(device.connections(), 3, "every retry on a fresh connection");
    assert_eq!(bus.stats().timeouts, 3);
    Ok(())
}

#[tokio::test]
async fn a_unit_that_keeps_timing_out_is_skipped_for_a_while() -> TestResult {
    let (device, _server, bus) = tcp_rig().await?;
    device.make_silent(9);
    let t = timing(50, 0);
    for _ in 0..3 {
        assert_eq!(
            bus.read(9, &t, Table::Holding, 0, 1).await,
            Err(BusError::Timeout)
        );
    }
    assert_eq!(device.seen().len(), 3);
    // in backoff: fails at once, nothing on the wire
    assert_eq!(
        bus.read(9, &t, Table::Holding, 0, 1).await,
        Err(BusError::Timeout)
    );
    assert_eq!(device.seen().len(), 3);
    assert_eq!(bus.stats().skipped, 1);
    // other units are served as before
    assert_eq!(bus.read(1, &t, Table::Holding, 0, 1).await?, vec![1000]);
    Ok(())
}

#[tokio::test]
async fn a_dead_endpoint_fails_with_transport_and_is_reconnected_later() -> TestResult {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    let bus = bus(&addr.to_string());
    let bus = &bus.handle;
    let t = timing(500, 2);
    let Err(BusError::Transport(text)) = bus.read(1, &t, Table::Holding, 0, 1).await else {
        panic!("expected a transport error");
    };
    assert!(text.contains(&addr.to_string()), "{text}");
    // straight away: not even tried again (backoff), and said so
    let Err(BusError::Transport(text)) = bus.read(1, &t, Table::Holding, 0, 1).await else {
        panic!("expected a transport error");
    };
    assert!(text.contains("next connect attempt"), "{text}");
    assert_eq!(bus.stats().connects, 0);

    let device = TestDevice::default();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let _server = modbus_support::serve_tcp(&device, listener);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bus.read(1, &t, Table::Holding, 2, 1).await?, vec![1002]);
    assert_eq!(bus.stats().connects, 1);
    Ok(())
}

#[tokio::test]
async fn concurrent_chargers_each_get_their_own_answers() -> TestResult {
    let (device, _server, bus) = tcp_rig().await?;
    let t = timing(1000, 0);
    let mut tasks = Vec::new();
    for unit in 1..=4u8 {
        let handle = bus.handle.clone();
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for address in 0..20u16 {
                results.push(handle.read(unit, &t, Table::Holding, address, 1).await);
            }
            (unit, results)
        }));
    }
    for task in tasks {
        let (unit, results) = task.await?;
        for (address, result) in results.into_iter().enumerate() {
            let expected = u16::from(unit) * 1000 + u16::try_from(address)?;
            assert_eq!(result, Ok(vec![expected]));
        }
    }
    // served one at a time and interleaved, not one charger after the other
    let units: Vec<u8> = device.seen().iter().map(|s: &Seen| s.unit).collect();
    assert_eq!(units.len(), 80);
    assert!(
        units
            .get(..8)
            .is_some_and(|first| first.iter().any(|u| *u != units[0])),
        "first requests all from one charger: {units:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_request_delay_is_kept_before_every_request() -> TestResult {
    let (_device, _server, bus) = tcp_rig().await?;
    let mut t = timing(1000, 0);
    t.request_delay = Duration::from_millis(50);
    let started = Instant::now();
    for address in 0..4 {
        bus.handle.read(1, &t, Table::Holding, address, 1).await?;
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    Ok(())
}

#[tokio::test]
async fn shutdown_stops_the_bus() -> TestResult {
    let (device, _server, bus) = tcp_rig().await?;
    device.make_silent(1);
    let handle = bus.handle.clone();
    let pending = tokio::spawn(async move {
        handle
            .read(1, &timing(10_000, 0), Table::Holding, 0, 1)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), pending).await??;
    assert_eq!(result, Err(BusError::Closed));
    assert_eq!(
        bus.handle
            .read(1, &timing(100, 0), Table::Holding, 0, 1)
            .await,
        Err(BusError::Closed)
    );
    Ok(())
}

#[tokio::test]
async fn a_connection_the_device_closed_while_idle_is_reopened_without_a_retry() -> TestResult {
    let device = TestDevice::default();
    let (addr, server) = start_tcp(&device).await?;
    let bus = bus(&addr);
    let t = timing(1000, 0);
    assert_eq!(
        bus.handle.read(1, &t, Table::Holding, 0, 1).await?,
        vec![1000]
    );
    // The device drops every connection (restart, idle timeout) and comes back.
    server.stop().await;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let _server = modbus_support::serve_tcp(&device, listener);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // no retries configured, and still served: the dead connection was not the device's fault
    assert_eq!(
        bus.handle.read(1, &t, Table::Holding, 1, 1).await?,
        vec![1001]
    );
    let stats = bus.handle.stats();
    assert_eq!(
        (stats.ok, stats.transport_errors, stats.connects),
        (2, 1, 2)
    );
    Ok(())
}
