//! The control socket: a TCP line protocol to drive running simulated wallboxes.
//!
//! One command per line (see [`SimCommand::parse`]), answered with one line: `ok`,
//! `error: …`, or for `status` the wallbox's [`SimSnapshot`](super::SimSnapshot) as JSON. With
//! several units, a leading unit number picks one (`2 plug`); otherwise the first is meant.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::accept::serve_units;
use super::handle::SimHandle;
use super::script::SimCommand;

/// Control connections served at once.
const MAX_CONNECTIONS: usize = 16;
/// Longest command line accepted; a peer sending more is disconnected.
const MAX_LINE: usize = 1024;
/// How long a refused peer's remaining input is read and discarded before closing.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves the control protocol on `listener` until `shutdown`.
///
/// # Errors
/// Accepting failed for a reason that is not about one connection.
pub async fn serve_control(
    listener: TcpListener,
    units: Vec<(u8, SimHandle)>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_units(
        listener,
        units,
        MAX_CONNECTIONS,
        shutdown,
        "control",
        connection,
    )
    .await
}

/// Executes one control line and returns the reply (without newline).
#[must_use]
pub fn execute(units: &[(u8, SimHandle)], line: &str) -> String {
    let line = line.trim();
    let (handle, command) = match line.split_once(char::is_whitespace) {
        Some((first, rest)) if first.parse::<u8>().is_ok() => {
            let unit = first.parse::<u8>().unwrap_or_default();
            match units.iter().find(|(u, _)| *u == unit) {
                Some((_, h)) => (h, rest.trim()),
                None => return format!("error: no unit {unit} here"),
            }
        }
        _ => match units.first() {
            Some((_, h)) => (h, line),
            None => return "error: no units".to_owned(),
        },
    };
    if command.eq_ignore_ascii_case("status") {
        return serde_json::to_string(&handle.snapshot()).unwrap_or_else(|e| format!("error: {e}"));
    }
    match SimCommand::parse(command).and_then(|c| c.apply(handle)) {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("error: {e}"),
    }
}

async fn connection(
    mut stream: TcpStream,
    units: Arc<[(u8, SimHandle)]>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = stream.read(&mut chunk) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&chunk[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            if text.trim().is_empty() {
                continue;
            }
            let mut reply = execute(&units, &text);
            reply.push('\n');
            stream.write_all(reply.as_bytes()).await?;
        }
        if pending.len() > MAX_LINE {
            stream.write_all(b"error: line too long\n").await?;
            stream.shutdown().await?;
            // Closing with unread input would reset the connection and could destroy the
            // reply before the peer reads it: discard what is in flight first, briefly.
            let drain = async { while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {} };
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = tokio::time::timeout(DRAIN, drain) => {}
            }
            return Ok(());
        }
    }
}
