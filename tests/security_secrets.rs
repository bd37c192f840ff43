//! A whole gateway session (central system over TLS, simulated wallbox, gateway; trace-level
//! logging of chargebridge and its dependencies captured) in which the central system changes
//! the AuthorizationKey twice: once to a key it then accepts, once to a key it refuses with
//! HTTP 401 (rolled back). Afterwards neither the configured password, nor either key, nor
//! their Basic Auth tokens appear in any log line or answer (its own test binary: it installs
//! the global subscriber). The gateway also warns that the configuration and password files
//! are readable by every user.

mod common;
mod e2e_support;

use base64::Engine as _;
use chargebridge::sim::csms::CsmsEvent;
use common::log_capture::LogCapture;
use e2e_support::{ChargerSpec, Rig, RigSpec, SOON};
use serde_json::json;

const ID: &str = "SEC-0001";
const ACCEPTED_KEY: &str = "00112233445566778899aabbccddeeff01234567";
const REFUSED_KEY: &str = "ffeeddccbbaa99887766554433221100";

async fn connected_again(rig: &Rig, since: usize) {
    rig.csms
        .wait_for_since(
            since,
            |e| matches!(e, CsmsEvent::Connected { charger } if charger == ID),
            SOON,
        )
        .await
        .unwrap_or_else(|| panic!("no reconnect\n{}", rig.timeline()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_passwords_never_reach_logs_or_answers_through_a_whole_session() {
    let capture = LogCapture::install();

    let rig = Rig::start(RigSpec::new(vec![ChargerSpec::tcp(ID, 1)])).await;
    rig.expect_call(0, ID, "BootNotification", |_| true, "boot")
        .await;

    // 1. A new key the central system takes over: the gateway reconnects with it.
    let mark = rig.csms.mark();
    rig.csms.set_password(ID, ACCEPTED_KEY);
    rig.configure(ID, "AuthorizationKey", ACCEPTED_KEY).await;
    connected_again(&rig, mark).await;
    assert!(
        !rig.csms.events()[mark..]
            .iter()
            .any(|e| matches!(e, CsmsEvent::Rejected { .. })),
        "the new key was used at once\n{}",
        rig.timeline()
    );

    // 2. A key the central system does not take (it still expects the first one): refused with
    //    401, rolled back, and the next connection uses the previous key again.
    let mark = rig.csms.mark();
    rig.configure(ID, "AuthorizationKey", REFUSED_KEY).await;
    rig.csms
        .wait_for_since(
            mark,
            |e| matches!(e, CsmsEvent::Rejected { status: 401, .. }),
            SOON,
        )
        .await
        .unwrap_or_else(|| panic!("the refused key was not tried\n{}", rig.timeline()));
    let refused = rig.csms.mark();
    connected_again(&rig, refused).await;

    // 3. Nothing reads the key back.
    let config = rig
        .csms
        .call(ID, "GetConfiguration", json!({}))
        .await
        .expect("GetConfiguration");
    let asked = rig
        .csms
        .call(
            ID,
            "GetConfiguration",
            json!({ "key": ["AuthorizationKey"] }),
        )
        .await
        .expect("GetConfiguration AuthorizationKey");
    let timeline = rig.timeline();
    let wire = rig.csms.received(ID).join("\n");
    rig.stop().await;

    let logs = capture.text();
    assert!(
        logs.contains("AuthorizationKey changed") && logs.contains("refused the new credentials"),
        "the changes are logged (without values)"
    );
    // The rig writes its configuration and password file with the default umask (0644): the
    // gateway says so at start, naming the files but not their contents.
    for what in ["the configuration file", "a password_file"] {
        assert!(
            logs.lines().any(|l| l.contains("WARN")
                && l.contains(what)
                && l.contains("readable by every user")),
            "no warning about {what}"
        );
    }
    let password = e2e_support::password(ID);
    let mut secrets = vec![password.clone(), ACCEPTED_KEY.into(), REFUSED_KEY.into()];
    for p in [&password, &ACCEPTED_KEY.to_owned(), &REFUSED_KEY.to_owned()] {
        secrets.push(base64::engine::general_purpose::STANDARD.encode(format!("{ID}:{p}")));
    }
    for (what, text) in [
        ("logs", &logs),
        ("GetConfiguration", &config.to_string()),
        ("GetConfiguration AuthorizationKey", &asked.to_string()),
        ("frames sent by the gateway", &wire),
        ("CSMS timeline", &timeline),
    ] {
        for secret in &secrets {
            assert!(
                !text.to_lowercase().contains(&secret.to_lowercase()),
                "a secret in the {what}"
            );
        }
    }
}
