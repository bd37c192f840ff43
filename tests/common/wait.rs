//! Polling a condition until it holds or a deadline passes: the one `eventually` loop every
//! integration rig uses for what the gateway should do "soon".

use std::time::Duration;

/// Calls `f` every `poll` until it returns `Some`; `None` once `timeout` has passed without.
/// `f` is always tried at least once.
pub async fn poll_until<T>(
    timeout: Duration,
    poll: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(poll).await;
    }
}

/// Calls `f` every `poll` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T>(
    timeout: Duration,
    poll: Duration,
    what: &str,
    f: impl FnMut() -> Option<T>,
) -> T {
    poll_until(timeout, poll, f)
        .await
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}
