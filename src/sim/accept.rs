//! The accept loop the simulator's TCP servers share (Modbus TCP, control socket, central
//! system): a bounded number of connections, each in its own task, all of them ended when the
//! loop returns.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handle::SimHandle;

/// How long to wait after a transient accept error before accepting again.
const TRANSIENT_PAUSE: Duration = Duration::from_millis(50);

/// Accepts connections on `listener` until `shutdown` and runs `handler` for each in its own
/// task, at most `max_connections` at once; `what` names the server in log lines.
///
/// The handler gets the stream, the peer address and a token that is cancelled when the loop
/// ends (told to or failed): it should return soon after. A connection over the limit is
/// closed at once. When this returns, every connection task has ended.
///
/// `handler` itself runs in the accept loop, so it only sets up (counts, clones state); the
/// connection's work belongs in the future it returns.
///
/// # Errors
/// Accepting failed for a reason that is not about one connection (see [`is_transient`]).
pub async fn serve_bounded<H, F>(
    listener: TcpListener,
    max_connections: usize,
    shutdown: CancellationToken,
    what: &'static str,
    handler: H,
) -> io::Result<()>
where
    H: Fn(TcpStream, SocketAddr, CancellationToken) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let tracker = TaskTracker::new();
    // Connections stop with the server, whether it was told to or failed.
    let connections = shutdown.child_token();
    let slots = Arc::new(Semaphore::new(max_connections));
    let result = loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Dropping the stream at once is the answer to one connection too many: a
                // runaway client must not exhaust descriptors or memory.
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    tracing::warn!(%peer, server = what, "too many connections: refused");
                    continue;
                };
                let connection = handler(stream, peer, connections.clone());
                tracker.spawn(async move {
                    connection.await;
                    drop(permit);
                });
            }
            // Per-connection failures (a peer reset before accept) must not stop the server.
            Err(e) if is_transient(&e) => {
                tracing::debug!(error = %e, server = what, "accept failed");
                // Out of descriptors lasts until connections close: do not spin meanwhile.
                tokio::time::sleep(TRANSIENT_PAUSE).await;
            }
            Err(e) => break Err(e),
        }
    };
    tracker.close();
    connections.cancel();
    tracker.wait().await;
    result
}

/// [`serve_bounded`] for the simulator's servers, whose connections all serve the same
/// simulated `units`: `connection` serves one; its error only ends that connection (logged at
/// debug, as a peer going away is normal).
///
/// # Errors
/// As [`serve_bounded`].
pub async fn serve_units<C, F>(
    listener: TcpListener,
    units: Vec<(u8, SimHandle)>,
    max_connections: usize,
    shutdown: CancellationToken,
    what: &'static str,
    connection: C,
) -> io::Result<()>
where
    C: Fn(TcpStream, Arc<[(u8, SimHandle)]>, CancellationToken) -> F,
    F: Future<Output = io::Result<()>> + Send + 'static,
{
    let units: Arc<[(u8, SimHandle)]> = units.into();
    serve_bounded(
        listener,
        max_connections,
        shutdown,
        what,
        move |stream, peer, stop| {
            let served = connection(stream, Arc::clone(&units), stop);
            async move {
                if let Err(e) = served.await {
                    tracing::debug!(%peer, error = %e, server = what, "connection closed");
                }
            }
        },
    )
    .await
}

/// Whether an accept error is about one connection or a passing shortage, so that accepting
/// should go on: aborted or reset before accept, interrupted, would block, or out of file
/// descriptors (EMFILE) until some connection closes.
#[must_use]
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(nix::libc::EMFILE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        (l, addr)
    }

    /// A handler that greets the peer, then holds the connection until told to stop, and
    /// counts the connections that have fully ended.
    fn greeter(
        ended: Arc<AtomicUsize>,
    ) -> impl Fn(
        TcpStream,
        SocketAddr,
        CancellationToken,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        move |mut stream, _peer, stop| {
            let ended = Arc::clone(&ended);
            Box::pin(async move {
                let _ = stream.write_all(b"hi").await;
                stop.cancelled().await;
                // Work after the cancellation: the loop must wait for it before returning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                ended.fetch_add(1, Ordering::SeqCst);
            })
        }
    }

    #[tokio::test]
    async fn a_connection_over_the_limit_is_closed_at_once() {
        let (l, addr) = listener().await;
        let stop = CancellationToken::new();
        let ended = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn(serve_bounded(l, 1, stop.clone(), "test", greeter(ended)));

        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut greeting = [0u8; 2];
        first.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"hi");

        // The only slot is taken: the second connection gets no greeting, only the close.
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 2];
        let read = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf)).await;
        // A reset instead of an orderly close is a close as well.
        let n = read
            .expect("the extra connection was left open")
            .unwrap_or(0);
        assert_eq!(n, 0, "the extra connection was served");

        stop.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_returns_after_the_connection_tasks_have_ended() {
        let (l, addr) = listener().await;
        let stop = CancellationToken::new();
        let ended = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn(serve_bounded(
            l,
            4,
            stop.clone(),
            "test",
            greeter(Arc::clone(&ended)),
        ));
        let mut peers = Vec::new();
        for _ in 0..3 {
            let mut peer = TcpStream::connect(addr).await.unwrap();
            let mut greeting = [0u8; 2];
            peer.read_exact(&mut greeting).await.unwrap();
            peers.push(peer);
        }
        assert_eq!(ended.load(Ordering::SeqCst), 0);

        stop.cancel();
        server.await.unwrap().unwrap();
        assert_eq!(
            ended.load(Ordering::SeqCst),
            3,
            "returned before its connections ended"
        );
    }

    #[test]
    fn only_per_connection_and_passing_errors_are_transient() {
        let kind = |k| io::Error::from(k);
        assert!(is_transient(&kind(io::ErrorKind::ConnectionAborted)));
        assert!(is_transient(&kind(io::ErrorKind::ConnectionReset)));
        assert!(is_transient(&io::Error::from_raw_os_error(
            nix::libc::EMFILE
        )));
        assert!(!is_transient(&kind(io::ErrorKind::InvalidInput)));
        assert!(!is_transient(&io::Error::from_raw_os_error(
            nix::libc::EBADF
        )));
    }
}
