//! The OCPP security keys on the charge point state machine (SWP §3.1, use cases A01 and A05):
//! AuthorizationKey is write-only, checked, persisted, applied with a reconnect and rolled back
//! when refused; SecurityProfile only goes up.

use chargebridge::charger::keys::ConfigKeys;
use chargebridge::charger::{AuthMode, Charger, ChargerSettings};
use chargebridge::config::Secret;
use chargebridge::security::{SecurityConfig, SecurityState, saved_credentials};
use chargebridge::store::StoreOp;
use chrono::Utc;
use serde_json::{Value, json};

const CONFIGURED: &str = "configured-password-1";

fn charger(profile: u8, client_cert: bool) -> Charger {
    let settings = ChargerSettings {
        id: "CB-SEC".into(),
        vendor: "Heidelberg".into(),
        model: "Energy Control".into(),
        auth: AuthMode::Free,
        id_tag: "CB-SEC".into(),
        max_current: 16.0,
        min_current: 6.0,
        phases: 3,
        voltage: 230.0,
    };
    let keys = ConfigKeys::new(vec!["Energy.Active.Import.Register".into()]);
    let mut c = Charger::new(settings, keys, Utc::now());
    c.set_security(SecurityState::new(
        SecurityConfig {
            profile,
            tls: true,
            client_cert,
            password: Some(Secret::new(CONFIGURED)),
        },
        None,
        0,
    ));
    c
}

fn change(c: &mut Charger, key: &str, value: &str) -> String {
    let reply = c
        .handle_call(
            Utc::now(),
            "ChangeConfiguration",
            &json!({ "key": key, "value": value }),
        )
        .expect("ChangeConfiguration is answered");
    reply["status"]
        .as_str()
        .expect("a status string")
        .to_owned()
}

fn get_all(c: &mut Charger) -> Value {
    c.handle_call(Utc::now(), "GetConfiguration", &json!({}))
        .expect("GetConfiguration is answered")
}

fn stored_keys(ops: &[StoreOp]) -> Vec<(String, String)> {
    ops.iter()
        .filter_map(|op| match op {
            StoreOp::Key { key, value } => Some((key.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_valid_key_is_accepted_persisted_and_applied_with_a_reconnect() {
    let mut c = charger(2, false);
    let key = "0123456789abcdef0123456789ABCDEF01234567";
    assert_eq!(change(&mut c, "AuthorizationKey", key), "Accepted");
    let stored = stored_keys(&c.take_store_ops());
    assert!(stored.contains(&("AuthorizationKey".to_owned(), key.to_owned())));
    let password = c.take_new_credentials().expect("new credentials");
    assert_eq!(
        password.unwrap().expose(),
        key,
        "the header carries the hex string"
    );
    assert!(c.take_reconnect(), "applied with a reconnect");
    assert!(c.credentials_pending());
    c.credentials_confirmed();
    assert!(!c.credentials_pending());
    assert_eq!(c.basic_auth_password().unwrap().expose(), key);
    // A restart reads the stored key back.
    let (restored, _) = saved_credentials(&stored);
    assert_eq!(restored.unwrap().expose(), key);
}

#[test]
fn the_key_is_never_returned_by_get_configuration() {
    let mut c = charger(2, false);
    let key = "ab".repeat(20);
    assert_eq!(change(&mut c, "AuthorizationKey", &key), "Accepted");
    let all = get_all(&mut c);
    let text = all.to_string();
    assert!(!text.contains(&key), "{text}");
    assert!(
        !text.contains("AuthorizationKey"),
        "omitted, not listed: {text}"
    );
    let asked = c
        .handle_call(
            Utc::now(),
            "GetConfiguration",
            &json!({ "key": ["AuthorizationKey"] }),
        )
        .unwrap();
    assert!(!asked.to_string().contains(&key), "{asked}");
    assert!(
        asked.get("unknownKey").is_none(),
        "it is known, just not readable: {asked}"
    );
    // SecurityProfile is reported with the value in effect.
    let profile = all["configurationKey"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == "SecurityProfile")
        .cloned()
        .unwrap();
    assert_eq!(profile["value"], "2");
}

#[test]
fn keys_outside_the_whitepaper_length_rules_are_rejected_and_change_nothing() {
    let mut c = charger(2, false);
    for bad in [
        "ab".repeat(15),                 // 15 bytes
        "ab".repeat(21),                 // 21 bytes
        format!("{}a", "ab".repeat(16)), // odd number of digits
        "xy".repeat(16),                 // not hex
        String::new(),
    ] {
        assert_eq!(
            change(&mut c, "AuthorizationKey", &bad),
            "Rejected",
            "{bad}"
        );
    }
    assert!(stored_keys(&c.take_store_ops()).is_empty());
    assert!(c.take_new_credentials().is_none());
    assert!(!c.take_reconnect());
    assert_eq!(c.basic_auth_password().unwrap().expose(), CONFIGURED);
}

#[test]
fn a_refused_key_rolls_back_to_the_previous_password() {
    let mut c = charger(2, false);
    let key = "cd".repeat(16);
    assert_eq!(change(&mut c, "AuthorizationKey", &key), "Accepted");
    let _ = c.take_store_ops();
    let _ = c.take_new_credentials();
    let _ = c.take_reconnect();
    c.credentials_refused();
    assert_eq!(c.basic_auth_password().unwrap().expose(), CONFIGURED);
    assert_eq!(
        c.take_new_credentials().unwrap().unwrap().expose(),
        CONFIGURED
    );
    assert!(c.take_reconnect());
    let stored = stored_keys(&c.take_store_ops());
    // The stored key is cleared, so a restart uses the configured password again.
    assert!(stored.contains(&("AuthorizationKey".to_owned(), String::new())));
    assert_eq!(saved_credentials(&stored).0, None);
    // A second refusal (nothing pending) changes nothing.
    c.credentials_refused();
    assert!(c.take_new_credentials().is_none());
}

#[test]
fn security_profile_only_goes_up_and_three_needs_a_client_certificate() {
    let mut c = charger(2, false);
    assert_eq!(change(&mut c, "SecurityProfile", "1"), "Rejected");
    assert_eq!(change(&mut c, "SecurityProfile", "2"), "Rejected");
    assert_eq!(change(&mut c, "SecurityProfile", "3"), "Rejected");
    assert_eq!(change(&mut c, "SecurityProfile", "banana"), "Rejected");
    assert!(!c.take_reconnect());

    let mut c = charger(2, true);
    assert_eq!(change(&mut c, "SecurityProfile", "3"), "Accepted");
    assert!(c.take_reconnect());
    assert_eq!(
        c.take_new_credentials(),
        Some(None),
        "profile 3 sends no Basic Auth"
    );
    let stored = stored_keys(&c.take_store_ops());
    assert!(stored.contains(&("SecurityProfile".to_owned(), "3".to_owned())));
    assert_eq!(change(&mut c, "SecurityProfile", "2"), "Rejected");
}

#[test]
fn cpo_name_is_stored() {
    let mut c = charger(3, true);
    assert_eq!(change(&mut c, "CpoName", "Example CPO"), "Accepted");
    let all = get_all(&mut c).to_string();
    assert!(all.contains("Example CPO"), "{all}");
}
