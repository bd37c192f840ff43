//! The bus task speaking Modbus RTU over an in-process pty pair to a tokio-modbus RTU server.

mod modbus_support;

use std::time::{Duration, Instant};

use chargebridge::devicemap::{Parity, SerialSettings, Table, WriteFunction};
use chargebridge::modbus::{BusError, PtyPair};
use modbus_support::{rtu_bus as bus, rtu_rig, timing};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SETTINGS_8E1: SerialSettings = SerialSettings {
    baud: 19_200,
    parity: Parity::Even,
    data_bits: 8,
    stop_bits: 1,
};

#[tokio::test]
async fn two_units_on_one_line_are_read_and_written() -> TestResult {
    let (device, _line, bus) = rtu_rig(SETTINGS_8E1)?;
    let t = timing(1000, 0);
    assert_eq!(
        bus.read(1, &t, Table::Holding, 4, 2).await?,
        vec![1004, 1005]
    );
    assert_eq!(
        bus.read(2, &t, Table::Input, 4, 2).await?,
        vec![12004, 12005]
    );
    assert_eq!(bus.read(2, &t, Table::Coil, 0, 3).await?, vec![0, 1, 0]);
    bus.write(1, &t, Table::Holding, 261, &[100], WriteFunction::Single)
        .await?;
    bus.write(2, &t, Table::Holding, 261, &[160], WriteFunction::Multiple)
        .await?;
    bus.write(2, &t, Table::Coil, 0, &[1], WriteFunction::Single)
        .await?;
    assert_eq!(bus.read(1, &t, Table::Holding, 261, 1).await?, vec![100]);
    assert_eq!(bus.read(2, &t, Table::Holding, 261, 1).await?, vec![160]);
    assert_eq!(bus.read(2, &t, Table::Coil, 0, 1).await?, vec![1]);
    let seen: Vec<(u8, u8)> = device.seen().iter().map(|s| (s.unit, s.function)).collect();
    assert_eq!(
        seen,
        vec![
            (1, 3),
            (2, 4),
            (2, 1),
            (1, 6),
            (2, 16),
            (2, 5),
            (1, 3),
            (2, 3),
            (2, 1)
        ]
    );
    assert_eq!(
        bus.stats().connects,
        1,
        "one port open for every unit on the line"
    );
    Ok(())
}

#[tokio::test]
async fn line_settings_8e1_8n2_and_8o1_open_and_work() -> TestResult {
    let settings = [
        SETTINGS_8E1,
        SerialSettings {
            baud: 9600,
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 2,
        },
        SerialSettings {
            baud: 115_200,
            parity: Parity::Odd,
            data_bits: 8,
            stop_bits: 1,
        },
    ];
    for settings in settings {
        let (_device, _line, bus) = rtu_rig(settings)?;
        let result = bus
            .handle
            .read(3, &timing(1000, 0), Table::Holding, 0, 1)
            .await;
        assert_eq!(result, Ok(vec![3000]), "{settings:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_silent_unit_times_out_while_the_other_unit_is_served() -> TestResult {
    let (device, _line, bus) = rtu_rig(SETTINGS_8E1)?;
    device.make_silent(3);
    let t = timing(150, 1);

    let silent = {
        let handle = bus.handle.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..2 {
                let started = Instant::now();
                let result = handle.read(3, &t, Table::Holding, 0, 1).await;
                results.push((result, started.elapsed()));
            }
            results
        })
    };
    let served = {
        let handle = bus.handle.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            for address in 0..10u16 {
                results.push((
                    address,
                    handle.read(1, &t, Table::Holding, address, 1).await,
                ));
            }
            results
        })
    };
    for (result, elapsed) in silent.await? {
        assert_eq!(result, Err(BusError::Timeout));
        // two attempts of 150 ms, plus queueing behind the other unit's requests
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }
    for (address, result) in served.await? {
        assert_eq!(result, Ok(vec![1000 + address]));
    }
    let stats = bus.handle.stats();
    assert_eq!((stats.timeouts, stats.ok), (4, 10));
    // every timeout reopened the port
    assert_eq!(stats.connects, 5);
    Ok(())
}

#[tokio::test]
async fn an_exception_over_rtu_is_returned_with_its_code() -> TestResult {
    let (device, _line, bus) = rtu_rig(SETTINGS_8E1)?;
    let result = bus
        .handle
        .read(
            1,
            &timing(1000, 2),
            Table::Holding,
            modbus_support::FIRST_BAD_ADDRESS,
            1,
        )
        .await;
    assert_eq!(result, Err(BusError::Exception(2)));
    assert_eq!(device.seen().len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_port_that_does_not_exist_is_a_transport_error_naming_it() -> TestResult {
    let bus = bus("/dev/chargebridge-no-such-port", SETTINGS_8E1);
    let Err(BusError::Transport(text)) = bus
        .handle
        .read(1, &timing(100, 0), Table::Holding, 0, 1)
        .await
    else {
        panic!("expected a transport error");
    };
    assert!(text.contains("/dev/chargebridge-no-such-port"), "{text}");
    Ok(())
}

#[tokio::test]
async fn consecutive_frames_keep_the_inter_frame_silence() -> TestResult {
    // At 300 baud t3.5 is 3.5 x 11 bits = 128 ms, long enough to measure on a pty (which
    // itself ignores the baud rate and delivers at once).
    let settings = SerialSettings {
        baud: 300,
        ..SETTINGS_8E1
    };
    let (_device, _line, bus) = rtu_rig(settings)?;
    let started = Instant::now();
    for address in 0..4 {
        bus.handle
            .read(1, &timing(1000, 0), Table::Holding, address, 1)
            .await?;
    }
    // one silence after opening the port, one before each following frame
    assert!(
        started.elapsed() >= Duration::from_millis(4 * 128),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

/// CRC of Modbus over Serial Line v1.02 §6.2.2, for the hand-made replies below.
fn crc16(bytes: &[u8]) -> [u8; 2] {
    let mut crc: u16 = 0xFFFF;
    for byte in bytes {
        crc ^= u16::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc.to_le_bytes()
}

#[tokio::test]
async fn garbage_on_the_line_is_survived_by_reopening_and_retrying() -> TestResult {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let pty = PtyPair::open()?;
    let mut peer = tokio_serial::SerialStream::open(&tokio_serial::new(&pty.b, 19_200))?;
    let responder = tokio::spawn(async move {
        let mut request = [0u8; 8];
        // first request: a reply with a broken checksum followed by noise
        peer.read_exact(&mut request).await?;
        peer.write_all(&[0x01, 0x03, 0x02, 0x12, 0x34, 0xDE, 0xAD, 0x00, 0xFF])
            .await?;
        // second request (the retry): a proper reply
        peer.read_exact(&mut request).await?;
        let mut reply = vec![0x01, 0x03, 0x02, 0x12, 0x34];
        reply.extend_from_slice(&crc16(&reply));
        peer.write_all(&reply).await?;
        std::io::Result::Ok(request)
    });
    let bus = bus(&pty.a, SETTINGS_8E1);
    let result = bus
        .handle
        .read(1, &timing(300, 1), Table::Holding, 0x10, 1)
        .await;
    assert_eq!(result, Ok(vec![0x1234]));
    let retry = responder.await??;
    let mut expected = vec![0x01, 0x03, 0x00, 0x10, 0x00, 0x01];
    expected.extend_from_slice(&crc16(&expected));
    assert_eq!(retry.to_vec(), expected, "the retry is the same request");
    let stats = bus.handle.stats();
    assert_eq!(stats.ok, 1);
    assert_eq!(stats.timeouts + stats.transport_errors, 1);
    assert_eq!(stats.connects, 2, "the port was reopened after the garbage");
    Ok(())
}
