//! A simulated RS-485 line that takes as long as a real one: two pseudo-terminals joined by
//! relay threads that hold every chunk of bytes for its time on the wire.
//!
//! A pty pair ([`crate::modbus::PtyPair`]) delivers bytes at once, whatever the baud rate,
//! so wire time cannot be measured on it. Here the line is half-duplex and paced:
//! a chunk of `n` characters occupies the line for `n × 11 bits / baud` after the line is
//! free, and arrives on the other side when its last character would. A reply from the
//! device side starts no earlier than t3.5 after the request ended, as a conforming slave
//! must wait (Modbus over Serial Line v1.02 §2.5.1.1). The master's gaps are not enforced
//! but recorded, so the gateway's own inter-frame timing can be checked.
//!
//! The relays are plain threads sleeping with `nanosleep`, not tokio timers, so their own
//! timing is accurate to tens of microseconds and does not depend on the runtime under test.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::modbus::pty::open_raw;
use crate::modbus::rtu_frame_silence;

/// Bits per RTU character: start, 8 data, parity (or second stop), stop (§2.5.1).
pub const BITS_PER_CHARACTER: u32 = 11;

/// Who sent a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The master (the gateway) to the devices.
    ToDevice,
    /// A device to the master.
    ToMaster,
}

/// One transmission on the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmission {
    /// Who sent it.
    pub direction: Direction,
    /// Characters.
    pub bytes: usize,
    /// When its first character went on the line.
    pub start: Instant,
    /// When its last character ended.
    pub end: Instant,
    /// Silence on the line before it (`None` for the first transmission); zero when the
    /// sender started while the line was still busy.
    pub gap_before: Option<Duration>,
}

/// The timing model of a half-duplex line (pure).
#[derive(Debug)]
pub struct LineModel {
    char_time: Duration,
    turnaround: Duration,
    free_at: Option<Instant>,
    last: Option<Direction>,
    log: Vec<Transmission>,
    late: Vec<Duration>,
}

impl LineModel {
    /// A line at `baud`; a device replies t3.5 after the request at the earliest.
    #[must_use]
    pub fn new(baud: u32) -> Self {
        LineModel {
            char_time: char_time(baud),
            turnaround: rtu_frame_silence(baud),
            free_at: None,
            last: None,
            log: Vec::new(),
            late: Vec::new(),
        }
    }

    /// A chunk of `bytes` characters handed to the line at `arrived`: returns when its last
    /// character has been received on the other side.
    pub fn transmit(&mut self, direction: Direction, bytes: usize, arrived: Instant) -> Instant {
        let mut start = arrived;
        let mut gap = None;
        if let Some(free) = self.free_at {
            let turning =
                self.last == Some(Direction::ToDevice) && direction == Direction::ToMaster;
            let earliest = if turning {
                free + self.turnaround
            } else {
                free
            };
            start = start.max(earliest);
            gap = Some(arrived.saturating_duration_since(free));
        }
        let chars = u32::try_from(bytes).unwrap_or(u32::MAX);
        let end = start + self.char_time * chars;
        self.free_at = Some(end);
        // A chunk that continues the previous one in the same direction without a pause is
        // one frame read in two pieces, not a new frame.
        let continues =
            self.last == Some(direction) && self.log.last().is_some_and(|t| arrived <= t.end);
        self.last = Some(direction);
        match self.log.last_mut() {
            Some(prev) if continues => {
                prev.bytes += bytes;
                prev.end = end;
            }
            _ => self.log.push(Transmission {
                direction,
                bytes,
                start,
                end,
                gap_before: gap,
            }),
        }
        end
    }

    /// The transmissions so far, emptied.
    pub fn take_log(&mut self) -> Vec<Transmission> {
        std::mem::take(&mut self.log)
    }

    /// Records how late a relay handed a chunk over, past the time the model gave it (the
    /// simulated line's own error, which counts against the gateway in a measurement).
    pub fn record_late(&mut self, late: Duration) {
        self.late.push(late);
    }

    /// The lateness records so far, emptied.
    pub fn take_late(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.late)
    }
}

/// The time one character takes at `baud`.
#[must_use]
pub fn char_time(baud: u32) -> Duration {
    if baud == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(u64::from(BITS_PER_CHARACTER) * 1_000_000_000 / u64::from(baud))
}

/// The paced line: open the master end (`master_path`) with the gateway's bus and the device
/// end (`device_path`) with the simulator. The relays stop when the value is dropped.
#[derive(Debug)]
pub struct PacedLine {
    /// Serial device path for the master (the bus under test).
    pub master_path: String,
    /// Serial device path for the simulated devices.
    pub device_path: String,
    model: Arc<Mutex<LineModel>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    _slaves: [OwnedFd; 2],
}

impl PacedLine {
    /// Opens two ptys and starts the relays at `baud`.
    ///
    /// # Errors
    /// The system refused a pty, or a thread could not be started.
    pub fn open(baud: u32) -> io::Result<PacedLine> {
        let (master_m, slave_m, master_path) = open_raw()?;
        let (master_d, slave_d, device_path) = open_raw()?;
        let model = Arc::new(Mutex::new(LineModel::new(baud)));
        let stop = Arc::new(AtomicBool::new(false));
        let to_device = relay(
            master_m.try_clone()?,
            master_d.try_clone()?,
            Direction::ToDevice,
            Arc::clone(&model),
            Arc::clone(&stop),
        )?;
        let to_master = relay(
            master_d,
            master_m,
            Direction::ToMaster,
            Arc::clone(&model),
            Arc::clone(&stop),
        )?;
        Ok(PacedLine {
            master_path,
            device_path,
            model,
            stop,
            threads: vec![to_device, to_master],
            _slaves: [slave_m, slave_d],
        })
    }

    /// The transmissions since the last call.
    #[must_use]
    pub fn take_log(&self) -> Vec<Transmission> {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_log()
    }

    /// How late each chunk was handed over since the last call (see [`LineModel::record_late`]).
    #[must_use]
    pub fn take_late(&self) -> Vec<Duration> {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_late()
    }
}

impl Drop for PacedLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn relay(
    from: OwnedFd,
    to: OwnedFd,
    direction: Direction,
    model: Arc<Mutex<LineModel>>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("line-{direction:?}"))
        .spawn(move || {
            // The default 50 µs timer slack would make every hand-over that late.
            let _ = nix::sys::prctl::set_timerslack(1);
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::SeqCst) {
                let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(50u16)) {
                    Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                    Ok(_) => {}
                    Err(_) => return,
                }
                let n = match nix::unistd::read(&from, &mut buf) {
                    Ok(0) | Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                    Ok(n) => n,
                    // EIO: no one has the slave open at the moment; look again later.
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let arrived = Instant::now();
                let deliver = model
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .transmit(direction, n, arrived);
                let now = Instant::now();
                if deliver > now {
                    std::thread::sleep(deliver - now);
                }
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    match nix::unistd::write(&to, rest) {
                        Ok(w) => rest = &rest[w..],
                        Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {
                            std::thread::sleep(Duration::from_micros(100));
                        }
                        Err(_) => break,
                    }
                }
                let late = Instant::now().saturating_duration_since(deliver);
                model
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record_late(late);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_is_eleven_bits() {
        assert_eq!(char_time(19_200), Duration::from_nanos(572_916));
        assert_eq!(char_time(115_200), Duration::from_nanos(95_486));
        assert_eq!(char_time(0), Duration::ZERO);
    }

    #[test]
    fn a_request_and_its_reply_take_frame_times_and_one_turnaround() {
        let mut line = LineModel::new(19_200);
        let t0 = Instant::now();
        let req_end = line.transmit(Direction::ToDevice, 8, t0);
        assert_eq!(req_end, t0 + char_time(19_200) * 8);
        // The device answers at once; the line holds the reply until t3.5 has passed.
        let reply_end = line.transmit(Direction::ToMaster, 33, req_end);
        assert_eq!(
            reply_end,
            req_end + rtu_frame_silence(19_200) + char_time(19_200) * 33
        );
        // The master waits 5 ms before the next request: that is the recorded gap.
        let next = reply_end + Duration::from_millis(5);
        line.transmit(Direction::ToDevice, 8, next);
        let log = line.take_log();
        assert_eq!(log.len(), 3);
        assert_eq!(log[0].gap_before, None);
        assert_eq!(log[2].gap_before, Some(Duration::from_millis(5)));
        assert!(line.take_log().is_empty());
    }

    #[test]
    fn a_frame_read_in_two_chunks_is_one_transmission() {
        let mut line = LineModel::new(9_600);
        let t0 = Instant::now();
        let end = line.transmit(Direction::ToDevice, 4, t0);
        line.transmit(Direction::ToDevice, 4, t0 + Duration::from_micros(10));
        let log = line.take_log();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].bytes, 8);
        assert_eq!(log[0].end, end + char_time(9_600) * 4);
    }

    #[test]
    fn a_master_that_talks_over_the_line_gets_a_zero_gap() {
        let mut line = LineModel::new(19_200);
        let t0 = Instant::now();
        line.transmit(Direction::ToMaster, 20, t0);
        line.transmit(Direction::ToDevice, 8, t0);
        let log = line.take_log();
        assert_eq!(log[1].gap_before, Some(Duration::ZERO));
        assert!(log[1].start >= log[0].end);
    }
}
