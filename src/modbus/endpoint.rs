//! Where a bus is connected, and opening a connection to it.

use std::fmt;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_modbus::client::Context;
use tokio_serial::SerialPort as _;

use crate::devicemap::{Parity, SerialSettings};

use super::timing::rtu_frame_silence;

/// One physical connection: an RS-485 port (Modbus RTU) or a Modbus TCP `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A serial port spoken to with Modbus RTU framing.
    Serial {
        /// Device path, e.g. `/dev/ttyUSB0`.
        path: String,
        /// Line settings.
        settings: SerialSettings,
    },
    /// A Modbus TCP server (MBAP framing).
    Tcp {
        /// `host:port`; the host may be a name, resolved at each connect.
        addr: String,
    },
}

impl Endpoint {
    /// The RTU inter-frame silence for serial endpoints; `None` for TCP, where frames are
    /// delimited by the MBAP header.
    #[must_use]
    pub fn frame_silence(&self) -> Option<Duration> {
        match self {
            Endpoint::Serial { settings, .. } => Some(rtu_frame_silence(settings.baud)),
            Endpoint::Tcp { .. } => None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Serial { path, settings } => {
                let parity = match settings.parity {
                    Parity::None => 'N',
                    Parity::Even => 'E',
                    Parity::Odd => 'O',
                };
                write!(
                    f,
                    "{path} {} {}{parity}{}",
                    settings.baud, settings.data_bits, settings.stop_bits
                )
            }
            Endpoint::Tcp { addr } => write!(f, "tcp://{addr}"),
        }
    }
}

/// Open a client context on `endpoint`. The error text says what failed and on what.
pub(crate) async fn open(
    endpoint: &Endpoint,
    connect_timeout: Duration,
) -> Result<Context, String> {
    match endpoint {
        Endpoint::Tcp { addr } => {
            let stream = tokio::time::timeout(connect_timeout, connect_tcp(addr))
                .await
                .map_err(|_| {
                    format!("connecting to {addr} took longer than {connect_timeout:?}")
                })??;
            // Requests are small and strictly request/response: do not let Nagle hold them.
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(%addr, %err, "could not set TCP_NODELAY");
            }
            Ok(tokio_modbus::client::tcp::attach(stream))
        }
        Endpoint::Serial { path, settings } => {
            let port = open_serial(path, settings)?;
            Ok(tokio_modbus::client::rtu::attach(port))
        }
    }
}

async fn connect_tcp(addr: &str) -> Result<TcpStream, String> {
    let candidates = tokio::net::lookup_host(addr)
        .await
        .map_err(|err| format!("cannot resolve {addr:?} (expected host:port): {err}"))?;
    let mut last = format!("{addr:?} resolved to no address");
    for candidate in candidates {
        match TcpStream::connect(candidate).await {
            Ok(stream) => return Ok(stream),
            Err(err) => last = format!("cannot connect to {candidate}: {err}"),
        }
    }
    Err(last)
}

fn open_serial(
    path: &str,
    settings: &SerialSettings,
) -> Result<tokio_serial::SerialStream, String> {
    let data_bits = match settings.data_bits {
        7 => tokio_serial::DataBits::Seven,
        8 => tokio_serial::DataBits::Eight,
        other => return Err(format!("{path}: data bits must be 7 or 8, not {other}")),
    };
    let stop_bits = match settings.stop_bits {
        1 => tokio_serial::StopBits::One,
        2 => tokio_serial::StopBits::Two,
        other => return Err(format!("{path}: stop bits must be 1 or 2, not {other}")),
    };
    let parity = match settings.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let builder = tokio_serial::new(path, settings.baud)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .parity(parity)
        .flow_control(tokio_serial::FlowControl::None);
    let port = tokio_serial::SerialStream::open(&builder)
        .map_err(|err| format!("cannot open serial port {path}: {err}"))?;
    // Bytes that arrived while the port was closed (a late reply, line noise) must not be
    // parsed as the reply to the next request.
    if let Err(err) = port.clear(tokio_serial::ClearBuffer::Input) {
        tracing::debug!(%path, %err, "could not flush the serial input buffer");
    }
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_display_like_installers_write_them() {
        let serial = Endpoint::Serial {
            path: "/dev/ttyUSB0".into(),
            settings: SerialSettings {
                baud: 19200,
                parity: Parity::Even,
                data_bits: 8,
                stop_bits: 1,
            },
        };
        assert_eq!(serial.to_string(), "/dev/ttyUSB0 19200 8E1");
        let tcp = Endpoint::Tcp {
            addr: "192.0.2.1:502".into(),
        };
        assert_eq!(tcp.to_string(), "tcp://192.0.2.1:502");
        assert_eq!(tcp.frame_silence(), None);
        assert!(serial.frame_silence().is_some());
    }

    #[tokio::test]
    async fn bad_serial_settings_are_refused_with_a_clear_message() {
        let endpoint = Endpoint::Serial {
            path: "/dev/null".into(),
            settings: SerialSettings {
                baud: 9600,
                parity: Parity::None,
                data_bits: 9,
                stop_bits: 1,
            },
        };
        let err = open(&endpoint, Duration::from_secs(1)).await.err();
        assert_eq!(
            err.as_deref(),
            Some("/dev/null: data bits must be 7 or 8, not 9")
        );
    }

    #[tokio::test]
    async fn a_missing_serial_port_is_a_clear_error() {
        let endpoint = Endpoint::Serial {
            path: "/dev/does-not-exist-chargebridge".into(),
            settings: SerialSettings {
                baud: 9600,
                parity: Parity::None,
                data_bits: 8,
                stop_bits: 1,
            },
        };
        let err = open(&endpoint, Duration::from_secs(1))
            .await
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("cannot open serial port /dev/does-not-exist-chargebridge"),
            "{err}"
        );
    }
}
