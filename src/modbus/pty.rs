//! An in-process pseudo-terminal pair: two serial device paths wired to each other, like
//! `socat -d -d pty,raw,echo=0 pty,raw,echo=0`, for the demo and the tests.
//!
//! Two ptys are opened; a relay task copies every byte read from one master to the other
//! master, both ways. Whatever is written to path `a` can be read from path `b` and back.
//! The slave ends are kept open by the pair so the paths stay valid (and buffered bytes
//! survive) while a user closes and reopens them.

use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use tokio::net::unix::pipe;
use tokio::task::AbortHandle;

/// Two connected pseudo-terminals; the relay stops when the value is dropped.
#[derive(Debug)]
pub struct PtyPair {
    /// Path of the first end, e.g. `/dev/pts/3`.
    pub a: String,
    /// Path of the second end.
    pub b: String,
    _slave_a: OwnedFd,
    _slave_b: OwnedFd,
    relay: AbortHandle,
}

impl PtyPair {
    /// Open the pair and start the relay. Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// No runtime, or the system refused a pty (none left, permissions).
    pub fn open() -> io::Result<PtyPair> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|err| io::Error::other(format!("PtyPair needs a Tokio runtime: {err}")))?;
        let (master_a, slave_a, a) = open_one()?;
        let (master_b, slave_b, b) = open_one()?;
        // Each master is read through one descriptor and written through a duplicate, so the
        // two directions wait for readiness independently (a full buffer on one side does
        // not stall the other direction).
        let _guard = runtime.enter();
        let (read_a, write_a) = split(master_a)?;
        let (read_b, write_b) = split(master_b)?;
        let relay = runtime.spawn(async move {
            let (ab, ba) = tokio::join!(copy(read_a, write_b), copy(read_b, write_a));
            for result in [ab, ba] {
                if let Err(err) = result {
                    tracing::debug!(%err, "pty relay stopped");
                }
            }
        });
        Ok(PtyPair {
            a,
            b,
            _slave_a: slave_a,
            _slave_b: slave_b,
            relay: relay.abort_handle(),
        })
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        // The relay task owns the masters; aborting it closes them.
        self.relay.abort();
    }
}

/// One pty: (non-blocking master, slave in raw mode, slave path).
fn open_one() -> io::Result<(OwnedFd, OwnedFd, String)> {
    let (master, slave, path) = open_raw()?;
    let flags = OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL)?);
    fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok((master, slave, path))
}

/// Opens one pty with its slave end in raw mode: (blocking master, slave, slave path).
///
/// Raw, no echo: bytes pass through unchanged and nothing is sent back (socat `raw,echo=0`).
/// Users reopening the slave (tokio-serial) set their own termios on top. The master is left
/// blocking for callers that relay on threads; [`PtyPair`] makes its own non-blocking.
///
/// # Errors
/// The system refused a pty (none left, permissions), or its path is not UTF-8.
pub fn open_raw() -> io::Result<(OwnedFd, OwnedFd, String)> {
    let pty = nix::pty::openpty(None, None)?;
    let mut termios = tcgetattr(&pty.slave)?;
    cfmakeraw(&mut termios);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &termios)?;
    let path = nix::unistd::ttyname(&pty.slave)?;
    let path = path
        .to_str()
        .ok_or_else(|| io::Error::other(format!("pty path {path:?} is not UTF-8")))?
        .to_owned();
    Ok((pty.master, pty.slave, path))
}

/// A non-blocking pty master as an async reader and an async writer.
///
/// tokio's pipe types are plain readiness-driven byte streams over a non-blocking file
/// descriptor, which is what a pty master is; they give safe async I/O without `unsafe`.
fn split(master: OwnedFd) -> io::Result<(pipe::Receiver, pipe::Sender)> {
    let writer = master.try_clone()?;
    Ok((
        pipe::Receiver::from_owned_fd_unchecked(master)?,
        pipe::Sender::from_owned_fd_unchecked(writer)?,
    ))
}

/// Copy bytes from one master to the other until end of file or an error.
async fn copy(mut from: pipe::Receiver, mut to: pipe::Sender) -> io::Result<u64> {
    tokio::io::copy(&mut from, &mut to).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    fn open(path: &str, parity: tokio_serial::Parity) -> tokio_serial::SerialStream {
        let builder = tokio_serial::new(path, 19200).parity(parity);
        match tokio_serial::SerialStream::open(&builder) {
            Ok(port) => port,
            Err(err) => panic!("cannot open {path}: {err}"),
        }
    }

    #[tokio::test]
    async fn bytes_written_on_one_end_arrive_on_the_other_both_ways() -> io::Result<()> {
        let pair = PtyPair::open()?;
        assert_ne!(pair.a, pair.b);
        let mut a = open(&pair.a, tokio_serial::Parity::Even);
        let mut b = open(&pair.b, tokio_serial::Parity::None);
        let frame: Vec<u8> = (0..=255).collect();
        a.write_all(&frame).await?;
        let mut got = vec![0; frame.len()];
        tokio::time::timeout(Duration::from_secs(5), b.read_exact(&mut got)).await??;
        assert_eq!(got, frame);
        b.write_all(b"\r\n\x03\x11").await?;
        let mut got = [0; 4];
        tokio::time::timeout(Duration::from_secs(5), a.read_exact(&mut got)).await??;
        assert_eq!(&got, b"\r\n\x03\x11");
        Ok(())
    }

    #[tokio::test]
    async fn an_end_can_be_closed_and_reopened() -> io::Result<()> {
        let pair = PtyPair::open()?;
        let b = open(&pair.b, tokio_serial::Parity::None);
        drop(open(&pair.a, tokio_serial::Parity::None));
        let mut a = open(&pair.a, tokio_serial::Parity::Odd);
        let mut b = b;
        b.write_all(b"hi").await?;
        let mut got = [0; 2];
        tokio::time::timeout(Duration::from_secs(5), a.read_exact(&mut got)).await??;
        assert_eq!(&got, b"hi");
        Ok(())
    }

    #[test]
    fn opening_outside_a_runtime_is_an_error_not_a_panic() {
        assert!(PtyPair::open().is_err());
    }
}
