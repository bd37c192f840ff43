//! The HTTP endpoints (interfaces.md §4): `/metrics`, `/status`, `/status.json`, `/healthz`.
//!
//! Read-only views of [`Telemetry`]. The listen address is loopback unless the configuration
//! says `http.allow_remote: true` (validated by the config loader). The status page is one
//! self-contained HTML document (no scripts, styles inline, no external assets) that reloads
//! itself, so it works on an installer's laptop without internet access.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{ChargerView, StatusSnapshot, Telemetry};

/// Seconds between reloads of the status page.
pub const STATUS_REFRESH_SECS: u32 = 5;

/// The content type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Starting the HTTP server failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for /metrics and /status: {source} (change `http.listen`)")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Binds the listen address.
///
/// # Errors
/// The address is in use or not available on this host.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// The routes, for [`serve`] or a test.
pub fn router(telemetry: Telemetry) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/status", get(status_page))
        .route("/status.json", get(status_json))
        .route("/healthz", get(healthz))
        .with_state(telemetry)
}

/// Serves the endpoints on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, telemetry: Telemetry, shutdown: CancellationToken) {
    let app = router(telemetry);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::warn!("HTTP server stopped: {e}");
    }
}

async fn index() -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, "/status")],
        "see /status\n",
    )
        .into_response()
}

async fn metrics(State(t): State<Telemetry>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        t.render_metrics(),
    )
        .into_response()
}

async fn status_json(State(t): State<Telemetry>) -> Response {
    match serde_json::to_string_pretty(&t.snapshot()) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn healthz(State(t): State<Telemetry>) -> Response {
    let snap = t.snapshot();
    let down = snap.unreachable();
    let body = if down.is_empty() {
        format!("ok: {} charger(s), all reachable\n", snap.chargers.len())
    } else {
        format!("ok: unreachable: {}\n", down.join(", "))
    };
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn status_page(State(t): State<Telemetry>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render_status(&t.snapshot()),
    )
        .into_response()
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn opt(v: Option<&str>) -> String {
    v.map_or_else(|| "—".to_owned(), esc)
}

fn num(v: Option<f64>, unit: &str, decimals: usize) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.decimals$} {unit}"))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1em;color:#222;background:#fafafa}\
h1{font-size:1.3em}h2{font-size:1.1em;margin:0 0 .4em}\
.c{background:#fff;border:1px solid #ccc;border-radius:6px;padding:.8em;margin:.8em 0}\
table{border-collapse:collapse}td,th{padding:.15em .8em .15em 0;text-align:left;vertical-align:top}\
.ok{color:#176c2a;font-weight:600}.bad{color:#b00020;font-weight:600}.dim{color:#777}\
small{color:#555}";

/// The HTML status page.
#[must_use]
pub fn render_status(s: &StatusSnapshot) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{STATUS_REFRESH_SECS}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>chargebridge status</title><style>{STYLE}</style></head><body>\
         <h1>chargebridge {version}</h1>\
         <p><small>{n} charger(s) · started {started} · page generated {now} · refreshes every {STATUS_REFRESH_SECS} s · \
         <a href=\"/status.json\">status.json</a> · <a href=\"/metrics\">metrics</a></small></p>",
        version = esc(&s.version),
        n = s.chargers.len(),
        started = s.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        now = s.generated_at.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    if s.chargers.is_empty() {
        h.push_str("<p>No chargers configured.</p>");
    }
    for c in &s.chargers {
        charger_card(&mut h, c);
    }
    if !s.buses.is_empty() {
        h.push_str(
            "<div class=\"c\"><h2>Buses</h2><table><tr><th>bus</th><th>answered</th>\
             <th>exceptions</th><th>timeouts</th><th>transport errors</th><th>busy</th><th>last error</th></tr>",
        );
        for b in &s.buses {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1} s</td><td>{}</td></tr>",
                esc(&b.name),
                b.ok,
                b.exceptions,
                b.timeouts,
                b.transport_errors,
                b.busy_seconds,
                opt(b.last_error.as_deref())
            );
        }
        h.push_str("</table></div>");
    }
    h.push_str("</body></html>\n");
    h
}

fn yes_no(ok: bool, yes: &str, no: &str) -> String {
    if ok {
        format!("<span class=\"ok\">{yes}</span>")
    } else {
        format!("<span class=\"bad\">{no}</span>")
    }
}

fn charger_card(h: &mut String, c: &ChargerView) {
    let ocpp = if c.ocpp_connected {
        format!(
            "{}{}",
            yes_no(true, "connected", ""),
            if c.boot_accepted {
                ", boot accepted"
            } else {
                ", boot pending"
            }
        )
    } else {
        format!(
            "{}{}",
            yes_no(false, "", "disconnected"),
            c.ocpp_last_error
                .as_deref()
                .or(c.last_disconnect.as_deref())
                .map(|r| format!(" <small>({})</small>", esc(r)))
                .unwrap_or_default()
        )
    };
    let limit = match c.current_limit_a {
        None => "—".to_owned(),
        Some(a) if a <= 0.0 => "off".to_owned(),
        Some(a) => format!("{a:.1} A"),
    };
    let limit_source = c
        .limit_source
        .as_deref()
        .map(|s| format!(" <small>({})</small>", esc(s)))
        .unwrap_or_default();
    let m = &c.modbus;
    let rate = m
        .success_rate
        .map_or_else(|| "—".to_owned(), |r| format!("{:.1} %", r * 100.0));
    let status = match (&c.status, &c.error_code) {
        (Some(s), Some(e)) if e != "NoError" => format!("{} ({})", esc(s), esc(e)),
        (Some(s), _) => esc(s),
        (None, _) => "—".to_owned(),
    };
    let _ = write!(
        h,
        "<div class=\"c\" id=\"charger-{id}\"><h2>{id} <small class=\"dim\">{device} · {bus}</small></h2><table>\
         <tr><th>OCPP</th><td>{ocpp}; outbox {outbox}; reconnects {reconnects}; attempts {attempts}{since}</td></tr>\
         <tr><th>Status</th><td class=\"status\">{status}</td></tr>\
         <tr><th>IEC 61851</th><td>{iec} <small>raw {raw}</small></td></tr>\
         <tr><th>Transaction</th><td>{tx}</td></tr>\
         <tr><th>Power</th><td>{power}</td></tr>\
         <tr><th>Energy</th><td>{energy}</td></tr>\
         <tr><th>Current limit</th><td>{limit}{limit_source}</td></tr>\
         <tr><th>Modbus</th><td>{reach}; {ok}/{req} ok ({rate}); latency last {last}, mean {mean}</td></tr>\
         <tr><th>Last Modbus error</th><td>{err}{err_at}</td></tr>",
        id = esc(&c.id),
        device = esc(&c.device),
        bus = esc(&c.bus),
        outbox = c.outbox,
        reconnects = c.reconnects,
        attempts = c.ocpp_attempts,
        since = c
            .ocpp_since
            .map(|t| format!(" <small>since {}</small>", t.format("%H:%M:%S")))
            .unwrap_or_default(),
        iec = opt(c.iec_state.as_deref()),
        raw = opt(c.raw_status.as_deref()),
        tx = match (c.in_transaction, c.transaction_id) {
            (true, Some(id)) => format!("running, id {id}"),
            (true, None) => "running (id not yet assigned)".to_owned(),
            (false, _) => "none".to_owned(),
        },
        power = num(c.power_w, "W", 0),
        energy = num(c.energy_wh, "Wh", 0),
        reach = yes_no(c.reachable, "reachable", "unreachable"),
        ok = m.ok,
        req = m.requests,
        last = num(m.last_latency_ms, "ms", 1),
        mean = num(m.mean_latency_ms, "ms", 1),
        err = opt(m.last_error.as_deref()),
        err_at = m
            .last_error_at
            .map(|t| format!(" <small>{}</small>", t.format("%H:%M:%S")))
            .unwrap_or_default(),
    );
    h.push_str("<tr><th>Last OCPP messages</th><td>");
    if c.last_messages.is_empty() {
        h.push('—');
    }
    for msg in c.last_messages.iter().take(10) {
        let arrow = if msg.direction == crate::telemetry::SENT {
            "→"
        } else {
            "←"
        };
        let _ = write!(
            h,
            "<div><small>{}</small> {arrow} {} <small>{}</small></div>",
            msg.at.format("%H:%M:%S"),
            esc(msg.action),
            esc(&msg.result)
        );
    }
    h.push_str("</td></tr></table></div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn the_page_lists_every_charger_and_refreshes_itself() -> Result<(), Box<dyn std::error::Error>>
    {
        let t = Telemetry::new()?;
        let a = t.charger("CB-<1>", "rs485-1", "Acme Box");
        let _b = t.charger("CB-2", "10.0.0.2:502", "Acme Box");
        a.poll_done(true);
        a.limit_written(Some(10.0));
        let page = render_status(&t.snapshot());
        assert!(page.contains("CB-&lt;1&gt;"));
        assert!(!page.contains("CB-<1>"));
        assert!(page.contains("CB-2"));
        assert!(page.contains("http-equiv=\"refresh\""));
        assert!(page.contains("10.0 A"));
        assert!(!page.contains("src=\"http"), "no external assets");
        Ok(())
    }
}
