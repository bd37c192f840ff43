//! Opening the WebSocket to the central system (OCPP-J §3): subprotocol, Basic Auth, TLS,
//! size limits. One attempt; the session decides when to try again.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// The WebSocket subprotocol of OCPP 1.6J (OCPP-J §3.1.2).
pub const SUBPROTOCOL: &str = "ocpp1.6";

/// The largest message or frame accepted; anything larger drops the connection. OCPP 1.6
/// messages are small; a central system that sends more is broken or hostile.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// An open WebSocket to the central system.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection attempt failed (logged, then backed off).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the central system refused the upgrade with HTTP {0}{hint}", hint = status_hint(*.0))]
    Refused(u16),
    #[error("the central system did not agree to subprotocol {SUBPROTOCOL}")]
    Subprotocol,
    #[error("TLS configuration: {0}")]
    Tls(#[from] super::tls::TlsError),
    #[error("{0}")]
    WebSocket(String),
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (check the charger's password)",
        404 => " (check the charger id and csms.url)",
        _ => "",
    }
}

/// Whether a session's `last_error` (the text of a failed attempt) is the central system
/// refusing the credentials with HTTP 401. Used to roll back a new `AuthorizationKey`; kept
/// next to the message it recognises.
#[must_use]
pub fn is_auth_refusal(last_error: Option<&str>) -> bool {
    last_error.is_some_and(|e| e.contains("refused the upgrade with HTTP 401"))
}

impl From<tungstenite::Error> for ConnectError {
    fn from(e: tungstenite::Error) -> Self {
        match e {
            tungstenite::Error::Http(resp) => ConnectError::Refused(resp.status().as_u16()),
            tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::SecWebSocketSubProtocolError(_),
            ) => ConnectError::Subprotocol,
            other => ConnectError::WebSocket(other.to_string()),
        }
    }
}

/// Initial size of a connection's WebSocket read buffer. tungstenite's default is 128 KiB,
/// and it zero-fills the whole buffer before each read, so every connection kept 128 KiB
/// resident: 125 MiB for 1,000 chargers. OCPP messages are a few hundred bytes; the buffer
/// still grows for a longer frame (up to [`MAX_MESSAGE_SIZE`]).
const READ_BUFFER_SIZE: usize = 4 * 1024;

pub(crate) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE))
        .read_buffer_size(READ_BUFFER_SIZE)
}

/// Opens the WebSocket: `url` is the full URL (charger id included). Sends subprotocol
/// `ocpp1.6` and, with a password, `Authorization: Basic base64(id:password)` (SWP §3.1; the
/// header is marked sensitive). `tls` is required for `wss://`. The whole attempt (TCP, TLS,
/// upgrade) is bounded by `limit`.
pub(crate) async fn open(
    url: &str,
    charger_id: &str,
    password: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
    limit: Duration,
) -> Result<Ws, ConnectError> {
    let mut request = url.into_client_request()?;
    let headers = request.headers_mut();
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    if let Some(password) = password {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{charger_id}:{password}"));
        let mut value = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|e| ConnectError::WebSocket(e.to_string()))?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    let connector = match tls {
        Some(tls) => Connector::Rustls(tls),
        None => Connector::Plain,
    };
    let (mut ws, response) = tokio::time::timeout(
        limit,
        tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(ws_config()),
            true,
            Some(connector),
        ),
    )
    .await
    .map_err(|_| ConnectError::Timeout(limit))??;
    // tungstenite already fails a missing subprotocol; check the value too, because only
    // `ocpp1.6` makes this an OCPP 1.6J connection (OCPP-J §3.1.2).
    let agreed = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    if agreed != Some(SUBPROTOCOL) {
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        return Err(ConnectError::Subprotocol);
    }
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_401_counts_as_refused_credentials() {
        let e = ConnectError::Refused(401).to_string();
        assert!(is_auth_refusal(Some(&e)));
        assert!(!is_auth_refusal(Some(
            &ConnectError::Refused(404).to_string()
        )));
        assert!(!is_auth_refusal(Some("connection reset")));
        assert!(!is_auth_refusal(None));
    }

    #[test]
    fn refused_upgrades_say_what_to_check() {
        assert!(
            ConnectError::Refused(401)
                .to_string()
                .contains("check the charger's password")
        );
        assert!(
            ConnectError::Refused(404)
                .to_string()
                .contains("charger id")
        );
    }
}
