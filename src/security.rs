//! OCPP 1.6 security whitepaper (SWP, edition 2) rules that are pure logic: the
//! `AuthorizationKey` and `SecurityProfile` configuration keys, the pending-change/rollback
//! bookkeeping around them, and the "secret readable by others" check.
//!
//! # The Basic Auth password after a `ChangeConfiguration AuthorizationKey`
//!
//! SWP §3.1 (A00.FR.203/204): the key is 16 to 20 bytes, written as up to 40 hexadecimal
//! digits. The older OCPP-J 1.6 §6.2.2 example base64-encodes the *raw* key bytes, the
//! whitepaper's header template uses the key *as written*. chargebridge sends the key as
//! written (the hex string), which is what mainstream central systems compare: they store the
//! value they sent and check the header against that text. Raw bytes may not even be valid in
//! an HTTP header value decoded as text. A central system that wants the raw form is not
//! supported (see the report of issue 6).
//!
//! # Pending changes
//!
//! A new key (or a raised profile) is persisted and applied after the reply: the session
//! reconnects with it (SWP A05 / use case "Update Charge Point Password"). Until that
//! connection succeeds the previous credentials are kept here; if the central system refuses
//! the new ones with HTTP 401, the previous ones are restored and persisted again (A05.FR.06:
//! "SHOULD fall back to the previous settings").

use std::path::Path;

use crate::config::Secret;

/// `AuthorizationKey` (SWP §3.1): write-only, the Basic Auth password of profiles 1 and 2.
pub const AUTHORIZATION_KEY: &str = "AuthorizationKey";
/// `SecurityProfile` (SWP §3.1): the profile in use; can only be raised.
pub const SECURITY_PROFILE: &str = "SecurityProfile";
/// `CpoName` (SWP §5): the organisation name in the charge point certificate (profile 3).
pub const CPO_NAME: &str = "CpoName";

/// Shortest `AuthorizationKey`, in bytes (SWP A00.FR.205).
pub const KEY_MIN_BYTES: usize = 16;
/// Longest `AuthorizationKey`, in bytes (SWP A00.FR.204).
pub const KEY_MAX_BYTES: usize = 20;

/// Why a value is not an acceptable `AuthorizationKey`. Never contains the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A character other than 0-9, a-f, A-F.
    #[error("the key is not written as hexadecimal digits")]
    NotHex,
    /// An odd number of digits does not make whole bytes.
    #[error("the key has an odd number of hexadecimal digits")]
    OddLength,
    /// Outside 16..=20 bytes.
    #[error("the key is {0} bytes; 16 to 20 bytes (32 to 40 hex digits) are allowed")]
    Length(usize),
}

/// Checks a new `AuthorizationKey`: 32 to 40 hexadecimal digits (16 to 20 bytes).
///
/// # Errors
/// What is wrong with it; the message never contains the value.
pub fn check_authorization_key(value: &str) -> Result<(), KeyError> {
    if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::NotHex);
    }
    if !value.len().is_multiple_of(2) {
        return Err(KeyError::OddLength);
    }
    let bytes = value.len() / 2;
    if !(KEY_MIN_BYTES..=KEY_MAX_BYTES).contains(&bytes) {
        return Err(KeyError::Length(bytes));
    }
    Ok(())
}

/// Why a `SecurityProfile` change is rejected (SWP A05.FR.02..04, A00.FR.005).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// Not 0..=3.
    #[error("not a security profile (0..=3)")]
    Invalid,
    /// Equal to or below the profile in use: lowering is forbidden.
    #[error("profile {requested} is not above the current profile {current}")]
    NotHigher {
        /// What was asked for.
        requested: u8,
        /// What is in use.
        current: u8,
    },
    /// Profile 3 needs a charge point certificate (`client_cert`/`client_key`).
    #[error("profile 3 needs a client certificate (client_cert and client_key)")]
    NoClientCertificate,
    /// Profiles 2 and 3 need TLS; the configured URL is `ws://`.
    #[error("profile {0} needs TLS but csms.url is ws://; change the configuration instead")]
    NoTls(u8),
    /// Profiles 1 and 2 need a Basic Auth password.
    #[error("profile {0} needs an AuthorizationKey (password)")]
    NoPassword(u8),
}

/// What the gateway was configured with, for the security keys of one charger.
#[derive(Clone, Debug, Default)]
pub struct SecurityConfig {
    /// `csms.security_profile`.
    pub profile: u8,
    /// Whether `csms.url` is `wss://`.
    pub tls: bool,
    /// Whether a client certificate and key are configured.
    pub client_cert: bool,
    /// The configured Basic Auth password (`password`/`password_file`).
    pub password: Option<Secret>,
}

/// Credentials as they were before a change that is not yet confirmed.
#[derive(Clone, Debug)]
struct Pending {
    key: Option<Secret>,
    profile: u8,
}

/// The security state of one charge point: configuration, the key and profile in effect, and
/// a change waiting for its first connection.
#[derive(Clone, Debug, Default)]
pub struct SecurityState {
    config: SecurityConfig,
    /// The key written by the central system (persisted); overrides the configured password.
    key: Option<Secret>,
    profile: u8,
    pending: Option<Pending>,
    /// New credentials the session has not been given yet.
    changed: bool,
    configured: bool,
}

impl SecurityState {
    /// The state from the configuration, with a key and profile restored from the store
    /// (`stored_profile` only counts when above the configured one: profiles only go up).
    #[must_use]
    pub fn new(config: SecurityConfig, stored_key: Option<Secret>, stored_profile: u8) -> Self {
        let profile = config.profile.max(stored_profile);
        Self {
            config,
            key: stored_key,
            profile,
            pending: None,
            changed: false,
            configured: true,
        }
    }

    /// Whether [`SecurityState::new`] was used (a machine built without it leaves the session's
    /// password alone).
    #[must_use]
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// The profile in effect.
    #[must_use]
    pub fn profile(&self) -> u8 {
        self.profile
    }

    /// The key written by the central system, if any.
    #[must_use]
    pub fn key(&self) -> Option<&Secret> {
        self.key.as_ref()
    }

    /// The Basic Auth password to send: none with profile 3 (client certificate), else the
    /// key written over OCPP, else the configured password.
    #[must_use]
    pub fn password(&self) -> Option<Secret> {
        if self.profile >= 3 {
            return None;
        }
        self.key.clone().or_else(|| self.config.password.clone())
    }

    /// Accepts a new `AuthorizationKey` (already checked): remembers the previous credentials
    /// until the next connection confirms or refuses the new ones.
    pub fn set_key(&mut self, key: Secret) {
        self.remember();
        self.key = Some(key);
        self.changed = true;
    }

    /// Checks and applies a `SecurityProfile` change (SWP A05).
    ///
    /// # Errors
    /// Why the change is Rejected.
    pub fn raise_profile(&mut self, value: &str) -> Result<u8, ProfileError> {
        let requested: u8 = value
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= 3)
            .ok_or(ProfileError::Invalid)?;
        if requested <= self.profile {
            return Err(ProfileError::NotHigher {
                requested,
                current: self.profile,
            });
        }
        if requested >= 2 && !self.config.tls {
            return Err(ProfileError::NoTls(requested));
        }
        if requested == 3 && !self.config.client_cert {
            return Err(ProfileError::NoClientCertificate);
        }
        if requested < 3 && self.password().is_none() {
            return Err(ProfileError::NoPassword(requested));
        }
        self.remember();
        self.profile = requested;
        self.changed = true;
        Ok(requested)
    }

    fn remember(&mut self) {
        // A second change before the first was tried keeps the last *working* credentials.
        if self.pending.is_none() {
            self.pending = Some(Pending {
                key: self.key.clone(),
                profile: self.profile,
            });
        }
    }

    /// Whether a change waits for its first connection.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// `Some(password)` once after a change (or rollback): the session must use it and
    /// reconnect.
    pub fn take_changed(&mut self) -> Option<Option<Secret>> {
        std::mem::take(&mut self.changed).then(|| self.password())
    }

    /// The connection with the new credentials succeeded: they are final.
    pub fn confirm(&mut self) -> bool {
        self.pending.take().is_some()
    }

    /// The central system refused the new credentials (HTTP 401): back to the previous ones.
    /// Returns the `(key, profile)` to persist, or `None` when nothing was pending.
    pub fn roll_back(&mut self) -> Option<(Option<Secret>, u8)> {
        let previous = self.pending.take()?;
        self.key = previous.key;
        self.profile = previous.profile;
        self.changed = true;
        Some((self.key.clone(), self.profile))
    }
}

/// The `AuthorizationKey` and `SecurityProfile` a previous run stored (`StoreOp::Key`), from
/// the saved key list. An empty or invalid stored key counts as none (the configured password
/// applies); a missing profile as 0.
#[must_use]
pub fn saved_credentials(keys: &[(String, String)]) -> (Option<Secret>, u8) {
    let mut key = None;
    let mut profile = 0;
    for (name, value) in keys {
        if name.eq_ignore_ascii_case(AUTHORIZATION_KEY) {
            key = check_authorization_key(value)
                .is_ok()
                .then(|| Secret::new(value.clone()));
        } else if name.eq_ignore_ascii_case(SECURITY_PROFILE) {
            profile = value.trim().parse().unwrap_or(0).min(3);
        }
    }
    (key, profile)
}

/// Whether a file's permission bits let every user read it (`mode & 0o004`).
#[must_use]
pub fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

/// Logs a warning when a file holding secrets (the configuration, a password file, a client
/// key) is readable by every user on the machine. Returns whether it warned.
pub fn warn_if_readable_by_others(path: &Path, what: &str) -> bool {
    let open = readable_by_others(path);
    if open {
        tracing::warn!(
            file = %path.display(),
            "{what} is readable by every user (mode o+r); restrict it with `chmod o-r`"
        );
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(profile: u8, tls: bool, cert: bool) -> SecurityState {
        SecurityState::new(
            SecurityConfig {
                profile,
                tls,
                client_cert: cert,
                password: Some(Secret::new("configured-password")),
            },
            None,
            0,
        )
    }

    #[test]
    fn key_length_rules_of_the_whitepaper() {
        assert_eq!(check_authorization_key(&"ab".repeat(16)), Ok(()));
        assert_eq!(check_authorization_key(&"AB".repeat(20)), Ok(()));
        assert_eq!(
            check_authorization_key(&"ab".repeat(15)),
            Err(KeyError::Length(15))
        );
        assert_eq!(
            check_authorization_key(&"ab".repeat(21)),
            Err(KeyError::Length(21))
        );
        assert_eq!(
            check_authorization_key(&format!("{}a", "ab".repeat(16))),
            Err(KeyError::OddLength)
        );
        assert_eq!(
            check_authorization_key(&"zz".repeat(16)),
            Err(KeyError::NotHex)
        );
        assert_eq!(check_authorization_key(""), Err(KeyError::Length(0)));
    }

    #[test]
    fn key_errors_never_contain_the_value() {
        let value = "secretsecretsecretsecret!";
        let e = check_authorization_key(value).unwrap_err();
        assert!(!e.to_string().contains(value));
    }

    #[test]
    fn a_new_key_replaces_the_password_and_rolls_back_on_refusal() {
        let mut s = state(2, true, false);
        assert_eq!(s.password().unwrap().expose(), "configured-password");
        s.set_key(Secret::new("00".repeat(16)));
        assert!(s.is_pending());
        let sent = s.take_changed().unwrap().unwrap();
        assert_eq!(sent.expose(), "00".repeat(16));
        assert!(s.take_changed().is_none(), "only once");
        assert_eq!(s.roll_back(), Some((None, 2)));
        assert_eq!(s.password().unwrap().expose(), "configured-password");
        assert!(s.take_changed().is_some());
        assert!(s.roll_back().is_none());
    }

    #[test]
    fn a_confirmed_key_stays() {
        let mut s = state(2, true, false);
        s.set_key(Secret::new("11".repeat(20)));
        assert!(s.confirm());
        assert!(s.roll_back().is_none());
        assert_eq!(s.password().unwrap().expose(), "11".repeat(20));
    }

    #[test]
    fn two_changes_roll_back_to_the_last_working_key() {
        let mut s = state(2, true, false);
        s.set_key(Secret::new("11".repeat(20)));
        s.set_key(Secret::new("22".repeat(20)));
        s.roll_back();
        assert_eq!(s.password().unwrap().expose(), "configured-password");
    }

    #[test]
    fn profiles_only_go_up_and_need_what_they_use() {
        let mut s = state(2, true, false);
        assert_eq!(
            s.raise_profile("2"),
            Err(ProfileError::NotHigher {
                requested: 2,
                current: 2
            })
        );
        assert_eq!(
            s.raise_profile("1"),
            Err(ProfileError::NotHigher {
                requested: 1,
                current: 2
            })
        );
        assert_eq!(s.raise_profile("3"), Err(ProfileError::NoClientCertificate));
        assert_eq!(s.raise_profile("4"), Err(ProfileError::Invalid));
        assert_eq!(s.raise_profile("x"), Err(ProfileError::Invalid));
        assert!(!s.is_pending(), "a rejected change changes nothing");

        let mut s = state(2, true, true);
        assert_eq!(s.raise_profile("3"), Ok(3));
        assert!(s.password().is_none(), "profile 3 sends no Basic Auth");
        assert_eq!(s.roll_back().map(|(_, p)| p), Some(2));

        let mut s = state(1, false, false);
        assert_eq!(s.raise_profile("2"), Err(ProfileError::NoTls(2)));
    }

    #[test]
    fn a_stored_profile_never_lowers_the_configured_one() {
        let s = SecurityState::new(
            SecurityConfig {
                profile: 3,
                tls: true,
                client_cert: true,
                password: None,
            },
            None,
            2,
        );
        assert_eq!(s.profile(), 3);
    }

    #[test]
    fn stored_credentials_are_read_back() {
        let keys = vec![
            ("AuthorizationKey".to_owned(), "ab".repeat(16)),
            ("SecurityProfile".to_owned(), "3".to_owned()),
        ];
        let (key, profile) = saved_credentials(&keys);
        assert_eq!(key.unwrap().expose(), "ab".repeat(16));
        assert_eq!(profile, 3);
        let rolled_back = vec![("AuthorizationKey".to_owned(), String::new())];
        assert_eq!(saved_credentials(&rolled_back), (None, 0));
    }

    #[test]
    fn world_readable_files_are_noticed() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(!readable_by_others(&path));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(readable_by_others(&path));
        assert!(!readable_by_others(&dir.path().join("missing")));
    }
}
