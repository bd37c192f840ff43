//! Modbus TCP server for simulated wallboxes (MBAP framing, Modbus Messaging on TCP/IP
//! Implementation Guide V1.0b §3.1.3).

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::accept::serve_units;
use super::device::Exception;
use super::handle::SimHandle;
use super::pdu;

/// Connections served at once; real wallboxes allow a handful (Alfen: 2), a simulator
/// serving many units in one process needs more, a runaway client should not get more.
pub const MAX_CONNECTIONS: usize = 256;

/// MBAP header: transaction id, protocol id, length, unit id.
const MBAP_LEN: usize = 7;

/// Serves `units` on `listener` until `shutdown`; each connection gets its own task, and all
/// of them have ended when this returns.
///
/// A request for a unit id nobody serves is answered with exception 0B (gateway target
/// device failed to respond); a silent device does not answer at all.
///
/// # Errors
/// Accepting failed in a way that is not about one connection.
pub async fn serve_tcp(
    listener: TcpListener,
    units: Vec<(u8, SimHandle)>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_units(
        listener,
        units,
        MAX_CONNECTIONS,
        shutdown,
        "Modbus TCP",
        connection,
    )
    .await
}

async fn connection(
    mut stream: TcpStream,
    units: Arc<[(u8, SimHandle)]>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut header = [0u8; MBAP_LEN];
    let mut body = [0u8; 256];
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = stream.read_exact(&mut header) => match r {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            },
        }
        let protocol = u16::from_be_bytes([header[2], header[3]]);
        let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
        // The length counts the unit id and the PDU; a PDU is 1..=253 bytes (§4.1 of the
        // application protocol). Anything else is not Modbus: drop the connection.
        if protocol != 0 || !(2..=254).contains(&length) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a Modbus TCP frame",
            ));
        }
        let request = &mut body[..length - 1];
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = stream.read_exact(request) => { r?; }
        }
        let unit = header[6];
        let response = match units.iter().find(|(u, _)| *u == unit) {
            Some((_, handle)) => {
                let now = Instant::now();
                match handle.with(|d| (!d.is_silent()).then(|| pdu::respond(d, request, now))) {
                    Some(r) => r,
                    None => continue,
                }
            }
            None => pdu::exception(
                request.first().copied().unwrap_or(0),
                Exception::GatewayTargetFailed,
            ),
        };
        let Ok(len) = u16::try_from(response.len() + 1) else {
            continue;
        };
        let mut out = Vec::with_capacity(MBAP_LEN + response.len());
        out.extend_from_slice(&header[..4]);
        out.extend_from_slice(&len.to_be_bytes());
        out.push(unit);
        out.extend_from_slice(&response);
        stream.write_all(&out).await?;
    }
}
