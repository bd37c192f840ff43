//! End to end: a central system that refuses the gateway (wrong password -> HTTP 401, or a
//! server that drops every connection) is retried with backoff, never in a hot loop
//! (behaviour.md §Connection), and the gateway keeps running.

mod common;
mod e2e_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chargebridge::sim::csms::CsmsEvent;
use e2e_support::{ChargerSpec, Rig, RigSpec};

/// How long the attempts are counted.
const WATCH: Duration = Duration::from_secs(8);
/// With ~1 s doubling backoff there are about 4 attempts in 8 s (1 + 1 + 2 + 4 s); a hot loop
/// makes hundreds.
const MAX_ATTEMPTS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_retried_with_backoff() {
    let id = "E2E-REFUSED";
    let mut spec = RigSpec::new(vec![ChargerSpec::tcp(id, 1)]);
    spec.csms_passwords = Some(HashMap::from([(
        id.to_owned(),
        "not-the-gateways-password".to_owned(),
    )]));
    let rig = Rig::start(spec).await;

    // Count from the first refusal on, so start-up time does not matter.
    rig.csms
        .wait_for(
            |e| matches!(e, CsmsEvent::Rejected { status: 401, .. }),
            e2e_support::SOON,
        )
        .await
        .unwrap_or_else(|| panic!("no HTTP 401 refusal\n{}", rig.timeline()));
    let first = rig.csms.mark();
    tokio::time::sleep(WATCH).await;
    let events = rig.csms.events();
    let refusals = events
        .iter()
        .skip(first - 1)
        .filter(|e| matches!(e, CsmsEvent::Rejected { charger, status: 401 } if charger == id))
        .count();
    assert!(
        (2..=MAX_ATTEMPTS).contains(&refusals),
        "{refusals} attempts in {WATCH:?}: retried, but with backoff\n{}",
        rig.timeline()
    );
    assert!(
        !events.iter().any(|e| e.is_call("BootNotification")),
        "nothing got through"
    );
    assert!(!rig.gateway_ended(), "the gateway keeps running (no panic)");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_drops_every_connection_is_retried_with_backoff() {
    // A plain TCP listener that closes each connection at once: no TLS, no upgrade.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });

    let mut spec = RigSpec::new(vec![ChargerSpec::tcp("E2E-DROPPED", 1)]);
    spec.url_override = Some(format!("wss://localhost:{port}/ocpp"));
    let rig = Rig::start(spec).await;

    e2e_support::eventually("a first connection attempt", || {
        (accepted.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let before = accepted.load(Ordering::SeqCst);
    tokio::time::sleep(WATCH).await;
    let attempts = accepted.load(Ordering::SeqCst) - before;
    assert!(
        (1..=MAX_ATTEMPTS).contains(&attempts),
        "{attempts} connection attempts in {WATCH:?}: retried, but with backoff"
    );
    assert!(!rig.gateway_ended(), "the gateway keeps running (no panic)");
    rig.stop().await;
    server.abort();
    let _ = server.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_does_not_stop_the_gateway() {
    // A port that was free a moment ago: connections are refused outright.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut spec = RigSpec::new(vec![ChargerSpec::tcp("E2E-NOBODY", 1)]);
    spec.url_override = Some(format!("wss://localhost:{port}/ocpp"));
    let rig = Rig::start(spec).await;
    // The wallbox side keeps working while the central system is unreachable: the wallbox
    // is polled and the limit held at off.
    e2e_support::eventually("the wallbox is polled and held at off", || {
        let s = rig.wallbox("E2E-NOBODY").snapshot();
        (s.requests > 5 && s.limit_raw == [0]).then_some(())
    })
    .await;
    // Free vend: a plug-in raises the limit at once, also while offline (behaviour.md
    // §Transactions).
    rig.wallbox("E2E-NOBODY").plug();
    e2e_support::eventually("16 A offered offline after plug-in", || {
        (rig.wallbox("E2E-NOBODY").snapshot().limit_raw == [160]).then_some(())
    })
    .await;
    assert!(!rig.gateway_ended(), "the gateway keeps running (no panic)");
    rig.stop().await;
}
