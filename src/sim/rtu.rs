//! Modbus RTU slave side: framing (pure) and a server for several units on one serial line.
//!
//! tokio-modbus's RTU server answers every unit id; a real RS-485 slave stays silent for
//! frames addressed to another unit, and several simulated units share one line here, so the
//! framing is done by hand. Section numbers refer to "Modbus over Serial Line V1.02".

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_serial::SerialPortBuilderExt;
use tokio_util::sync::CancellationToken;

use super::handle::SimHandle;
use super::pdu;
use crate::devicemap::{Parity, SerialSettings};

/// Largest RTU frame (§2.5.1.1: 256 bytes).
const MAX_FRAME: usize = 256;

/// Silence after which a partial frame is given up, at least. t3.5 (§2.5.1.1) is under 2 ms
/// at 19200 baud, but a pty relay or a loaded host may pause longer inside one frame; frames
/// are delimited by their length and CRC, so a longer wait only delays recovery from garbage.
const MIN_SILENCE: Duration = Duration::from_millis(50);

/// How long an idle line is waited on before looking again (nothing is pending then).
const IDLE: Duration = Duration::from_secs(3600);

/// CRC-16/MODBUS (§2.5.1.2 and Appendix B): polynomial 0xA001 reflected, initial 0xFFFF;
/// sent low byte first.
#[must_use]
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0xFFFF_u16, |crc, b| crc_step(crc, *b))
}

/// Appends the CRC to `unit + pdu`.
#[must_use]
pub fn frame(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pdu.len() + 3);
    out.push(unit);
    out.extend_from_slice(pdu);
    let crc = crc16(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn crc_ok(frame: &[u8]) -> bool {
    match frame.len().checked_sub(2) {
        Some(n) if n >= 2 => crc16(&frame[..n]).to_le_bytes() == frame[n..],
        _ => false,
    }
}

/// The length of the request frame at the start of a buffer.
enum RequestLen {
    Known(usize),
    NeedMore,
    /// A function code whose request length the slave cannot know: wait for silence.
    Unknown,
}

fn request_len(buf: &[u8]) -> RequestLen {
    match buf.get(1) {
        None => RequestLen::NeedMore,
        // Reads and single writes: unit, fc, 2x2 bytes, CRC.
        Some(1..=6) => RequestLen::Known(8),
        // Multiple writes: unit, fc, address, quantity, byte count, data, CRC.
        Some(15 | 16) => buf.get(6).map_or(RequestLen::NeedMore, |n| {
            RequestLen::Known(9 + usize::from(*n))
        }),
        Some(_) => RequestLen::Unknown,
    }
}

/// Cuts request frames out of the bytes read from a serial line.
#[derive(Debug, Default)]
pub struct RtuFramer {
    buf: Vec<u8>,
}

impl RtuFramer {
    /// Adds bytes as they were read.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether bytes are waiting for the rest of their frame.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next complete frame (`unit + pdu`, CRC checked and removed). Bytes that cannot
    /// start a valid frame are dropped one at a time, which resynchronises after noise.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            match request_len(&self.buf) {
                RequestLen::Known(n) if self.buf.len() >= n => {
                    if crc_ok(&self.buf[..n]) {
                        let frame = self.buf[..n - 2].to_vec();
                        self.buf.drain(..n);
                        return Some(frame);
                    }
                    self.buf.remove(0);
                }
                RequestLen::Known(_) | RequestLen::NeedMore | RequestLen::Unknown => {
                    // A complete frame further on means the bytes before it are noise (or
                    // a frame of unknown length): do not keep the master waiting for them.
                    if let Some(at) = self.later_frame() {
                        if crc_ok(&self.buf[..at]) {
                            let frame = self.buf[..at - 2].to_vec();
                            self.buf.drain(..at);
                            return Some(frame);
                        }
                        self.buf.drain(..at);
                    } else {
                        if self.buf.len() > 2 * MAX_FRAME {
                            // Endless noise: only the last frame's worth can still matter.
                            self.buf.drain(..self.buf.len() - MAX_FRAME);
                        }
                        return None;
                    }
                }
            }
        }
    }

    /// The offset of the first complete, CRC-valid request of known length after the start.
    fn later_frame(&self) -> Option<usize> {
        (1..self.buf.len()).find(|&i| match request_len(&self.buf[i..]) {
            RequestLen::Known(n) => self.buf.len() - i >= n && crc_ok(&self.buf[i..i + n]),
            RequestLen::NeedMore | RequestLen::Unknown => false,
        })
    }

    /// The line went silent (end of frame, §2.5.1.1): returns the frames still decodable from
    /// the buffer, including ones with a function code of unknown length, and drops the rest.
    pub fn on_silence(&mut self) -> Vec<Vec<u8>> {
        let mut frames: Vec<Vec<u8>> = std::iter::from_fn(|| self.next_frame()).collect();
        // `next_frame` found every complete request of known length; what may be left is a
        // request whose function code has no fixed length, delimited only by this silence.
        let mut start = 0;
        while start < self.buf.len() {
            let rest = &self.buf[start..];
            match (request_len(rest), unknown_frame_len(rest)) {
                (RequestLen::Unknown, Some(n)) => {
                    frames.push(rest[..n - 2].to_vec());
                    start += n;
                }
                _ => start += 1,
            }
        }
        self.buf.clear();
        frames
    }
}

fn crc_step(crc: u16, byte: u8) -> u16 {
    (0..8).fold(crc ^ u16::from(byte), |c, _| {
        if c & 1 == 1 {
            (c >> 1) ^ 0xA001
        } else {
            c >> 1
        }
    })
}

/// The length of the shortest CRC-valid frame at the start of `buf`, if any.
fn unknown_frame_len(buf: &[u8]) -> Option<usize> {
    let mut crc = 0xFFFF_u16;
    // At index `k`, `crc` covers `buf[..k]` and `buf[k..k + 2]` would be its CRC.
    for k in 0..buf.len().min(MAX_FRAME - 1) {
        if k >= 2 && buf.get(k..k + 2) == Some(&crc.to_le_bytes()[..]) {
            return Some(k + 2);
        }
        crc = crc_step(crc, buf[k]);
    }
    None
}

/// Silence that ends a frame at `baud`: t3.5, fixed 1.75 ms above 19200 baud (§2.5.1.1),
/// but at least [`MIN_SILENCE`].
fn silence(baud: u32) -> Duration {
    let t35 = if baud > 19_200 || baud == 0 {
        Duration::from_micros(1750)
    } else {
        Duration::from_micros(38_500_000 / u64::from(baud))
    };
    t35.max(MIN_SILENCE)
}

/// The answer to one frame, if any: unknown units and silent devices stay silent; a
/// broadcast (unit 0, §2.1) is applied by every unit and answered by none.
fn answer(units: &[(u8, SimHandle)], request: &[u8]) -> Option<Vec<u8>> {
    let (&unit, pdu_bytes) = request.split_first()?;
    let now = Instant::now();
    if unit == 0 {
        if pdu_bytes.first().is_some_and(|fc| pdu::is_write(*fc)) {
            for (_, handle) in units {
                handle.with(|d| {
                    if !d.is_silent() {
                        let _ = pdu::respond(d, pdu_bytes, now);
                    }
                });
            }
        }
        return None;
    }
    let (_, handle) = units.iter().find(|(u, _)| *u == unit)?;
    let response = handle.with(|d| (!d.is_silent()).then(|| pdu::respond(d, pdu_bytes, now)))?;
    Some(frame(unit, &response))
}

/// Serves `units` on an already opened serial stream (or one end of a pty pair) until
/// `shutdown`, EOF or a read error.
///
/// # Errors
/// The stream's read or write error.
pub async fn serve_rtu_stream<S>(
    mut stream: S,
    baud: u32,
    units: Vec<(u8, SimHandle)>,
    shutdown: CancellationToken,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let gap = silence(baud);
    let mut framer = RtuFramer::default();
    let mut chunk = [0u8; 512];
    loop {
        // Only a partial frame needs the silence timer; an idle line may stay quiet forever.
        let wait = if framer.is_pending() { gap } else { IDLE };
        let read = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(wait, stream.read(&mut chunk)) => r,
        };
        let frames = match read {
            Err(_elapsed) => framer.on_silence(),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => {
                framer.push(&chunk[..n]);
                std::iter::from_fn(|| framer.next_frame()).collect()
            }
            Ok(Err(e)) => return Err(e),
        };
        for request in frames {
            if let Some(reply) = answer(&units, &request) {
                stream.write_all(&reply).await?;
                stream.flush().await?;
            }
        }
    }
}

/// Opens the serial device at `path` with `settings` and serves `units` on it until
/// `shutdown`.
///
/// # Errors
/// Opening the port, or a read/write error on it.
pub async fn serve_rtu(
    path: &Path,
    settings: SerialSettings,
    units: Vec<(u8, SimHandle)>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let stream = open_serial(path, settings)?;
    serve_rtu_stream(stream, settings.baud, units, shutdown).await
}

/// Opens a serial port with the given line settings.
///
/// # Errors
/// The port cannot be opened or configured.
pub fn open_serial(
    path: &Path,
    settings: SerialSettings,
) -> io::Result<tokio_serial::SerialStream> {
    let parity = match settings.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let data_bits = if settings.data_bits == 7 {
        tokio_serial::DataBits::Seven
    } else {
        tokio_serial::DataBits::Eight
    };
    let stop_bits = if settings.stop_bits == 2 {
        tokio_serial::StopBits::Two
    } else {
        tokio_serial::StopBits::One
    };
    let path = path.to_string_lossy();
    tokio_serial::new(path.as_ref(), settings.baud)
        .parity(parity)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .open_native_async()
        .map_err(|e| io::Error::other(format!("cannot open serial port {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_request(unit: u8) -> Vec<u8> {
        frame(unit, &[0x04, 0x00, 0x05, 0x00, 0x01])
    }

    #[test]
    fn crc_matches_the_specification_example() {
        // Modbus over Serial Line V1.02 §6.2.2: 02 07 -> CRC 0x1241, sent 41 12.
        assert_eq!(crc16(&[0x02, 0x07]), 0x1241);
        assert_eq!(frame(2, &[7]), vec![0x02, 0x07, 0x41, 0x12]);
    }

    #[test]
    fn frames_split_across_reads_are_joined() {
        let bytes = read_request(1);
        let mut f = RtuFramer::default();
        f.push(&bytes[..3]);
        assert_eq!(f.next_frame(), None);
        f.push(&bytes[3..]);
        assert_eq!(f.next_frame(), Some(bytes[..6].to_vec()));
        assert!(!f.is_pending());
    }

    #[test]
    fn garbage_before_a_frame_is_skipped() {
        let good = read_request(2);
        let mut f = RtuFramer::default();
        f.push(&[0x01, 0x10, 0xFF, 0x00]);
        f.push(&good);
        assert_eq!(f.next_frame(), Some(good[..6].to_vec()));
    }

    #[test]
    fn a_frame_with_a_bad_crc_is_dropped() {
        let mut bad = read_request(1);
        bad[7] ^= 0xFF;
        let mut f = RtuFramer::default();
        f.push(&bad);
        assert_eq!(f.next_frame(), None);
        assert!(f.on_silence().is_empty());
        assert!(!f.is_pending());
    }

    #[test]
    fn multiple_writes_use_the_byte_count() {
        let bytes = frame(1, &[0x10, 0x01, 0x05, 0x00, 0x01, 0x02, 0x00, 0xA0]);
        let mut f = RtuFramer::default();
        f.push(&bytes[..7]);
        assert_eq!(f.next_frame(), None);
        f.push(&bytes[7..]);
        assert_eq!(f.next_frame(), Some(bytes[..bytes.len() - 2].to_vec()));
    }

    #[test]
    fn unknown_functions_end_at_silence() {
        let bytes = frame(1, &[0x2B, 0x0E, 0x01, 0x00]);
        let mut f = RtuFramer::default();
        f.push(&bytes);
        assert_eq!(f.next_frame(), None);
        assert_eq!(f.on_silence(), vec![bytes[..bytes.len() - 2].to_vec()]);
    }

    #[test]
    fn endless_noise_does_not_grow_the_buffer() {
        let mut f = RtuFramer::default();
        for _ in 0..100 {
            f.push(&[0x55; 100]);
            assert_eq!(f.next_frame(), None);
        }
        assert!(f.buf.len() <= 2 * MAX_FRAME);
    }
}

#[cfg(test)]
mod noise {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_bytes_around_a_frame_never_panic_and_the_frame_survives_silence(
            noise in proptest::collection::vec(any::<u8>(), 0..600),
            split in 0usize..8,
        ) {
            let good = frame(1, &[0x03, 0x01, 0x05, 0x00, 0x01]);
            let mut f = RtuFramer::default();
            f.push(&noise);
            let _ = f.next_frame();
            let _ = f.on_silence();
            f.push(&good[..split]);
            let _ = f.next_frame();
            f.push(&good[split..]);
            let mut frames: Vec<_> = std::iter::from_fn(|| f.next_frame()).collect();
            frames.extend(f.on_silence());
            prop_assert!(frames.contains(&good[..6].to_vec()));
        }
    }
}
