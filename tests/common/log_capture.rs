//! Everything the process logs, captured for the tests that check no secret reaches a log
//! line. Installing it sets the global subscriber, so such a test is its own test binary.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

/// The captured log output (shared by every clone).
#[derive(Clone, Debug, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Installs the global subscriber at trace level, without colours, writing into the
    /// returned capture. `init` also forwards `log` records (tungstenite, rustls) into
    /// tracing, so the dependencies' log lines are captured too.
    pub fn install() -> LogCapture {
        let capture = LogCapture::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        capture
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}
