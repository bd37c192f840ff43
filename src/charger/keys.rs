//! OCPP configuration keys of one charge point (OCPP 1.6 chapter 9, with errata).
//!
//! The table says what each key is, whether the central system may change it and how a new
//! value is checked; [`ConfigKeys`] holds the current values. GetConfiguration and
//! ChangeConfiguration are answered from here; the charger reads its behaviour (intervals,
//! measurands) through the typed getters.

use std::collections::BTreeMap;

/// How a key's value is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// `true` / `false` (case-insensitive).
    Bool,
    /// A non-negative integer.
    UInt,
    /// An integer that may be negative in the spec but is rejected when negative here.
    Int,
    /// A comma-separated list of measurands the device map provides.
    Measurands,
    /// Free text.
    Text,
}

/// Who may write a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read-only: ChangeConfiguration is Rejected.
    ReadOnly,
    /// Read-write.
    ReadWrite,
    /// Write-only (SWP §3.1 `AuthorizationKey`): never listed by GetConfiguration, never held
    /// here; the charger's security state keeps the value.
    WriteOnly,
}

/// One row of the key table.
#[derive(Clone, Copy, Debug)]
pub struct KeyDef {
    /// OCPP name.
    pub name: &'static str,
    /// Access.
    pub access: Access,
    /// Value type.
    pub ty: KeyType,
    /// Default value ("" = empty list).
    pub default: &'static str,
}

const fn rw(name: &'static str, ty: KeyType, default: &'static str) -> KeyDef {
    KeyDef {
        name,
        access: Access::ReadWrite,
        ty,
        default,
    }
}

const fn ro(name: &'static str, ty: KeyType, default: &'static str) -> KeyDef {
    KeyDef {
        name,
        access: Access::ReadOnly,
        ty,
        default,
    }
}

const fn wo(name: &'static str) -> KeyDef {
    KeyDef {
        name,
        access: Access::WriteOnly,
        ty: KeyType::Text,
        default: "",
    }
}

/// Names of the keys the charger's behaviour depends on.
pub mod names {
    /// Seconds of inactivity before a Heartbeat.
    pub const HEARTBEAT_INTERVAL: &str = "HeartbeatInterval";
    /// Seconds between sampled meter values during a transaction.
    pub const METER_VALUE_SAMPLE_INTERVAL: &str = "MeterValueSampleInterval";
    /// Measurands of sampled meter values.
    pub const METER_VALUES_SAMPLED_DATA: &str = "MeterValuesSampledData";
    /// Measurands put into StopTransaction.transactionData.
    pub const STOP_TXN_SAMPLED_DATA: &str = "StopTxnSampledData";
    /// Clock-aligned measurands put into StopTransaction.transactionData.
    pub const STOP_TXN_ALIGNED_DATA: &str = "StopTxnAlignedData";
    /// Seconds between clock-aligned meter values (0 = off).
    pub const CLOCK_ALIGNED_DATA_INTERVAL: &str = "ClockAlignedDataInterval";
    /// Measurands of clock-aligned meter values.
    pub const METER_VALUES_ALIGNED_DATA: &str = "MeterValuesAlignedData";
    /// WebSocket ping interval in seconds (0 = off).
    pub const WEB_SOCKET_PING_INTERVAL: &str = "WebSocketPingInterval";
    /// Seconds a CALL may stay unanswered.
    pub const MESSAGE_TIMEOUT: &str = "MessageTimeout";
    /// Attempts for a transaction message answered with CALLERROR.
    pub const TRANSACTION_MESSAGE_ATTEMPTS: &str = "TransactionMessageAttempts";
    /// Seconds between those attempts (multiplied by the attempt number).
    pub const TRANSACTION_MESSAGE_RETRY_INTERVAL: &str = "TransactionMessageRetryInterval";
    /// Seconds from plug-in until a pending remote start is given up.
    pub const CONNECTION_TIME_OUT: &str = "ConnectionTimeOut";
    /// Stop a transaction whose StartTransaction.conf was not Accepted.
    pub const STOP_TRANSACTION_ON_INVALID_ID: &str = "StopTransactionOnInvalidId";
    /// Authorize the idTag of a RemoteStartTransaction first.
    pub const AUTHORIZE_REMOTE_TX_REQUESTS: &str = "AuthorizeRemoteTxRequests";
}

/// Measurands a CSL key may hold at most (`<Key>MaxLength`).
pub const MEASURANDS_MAX_LENGTH: usize = 8;

/// The Core, SmartCharging and RemoteTrigger keys this gateway implements.
pub const KEYS: &[KeyDef] = &[
    rw("AllowOfflineTxForUnknownId", KeyType::Bool, "false"),
    rw(names::AUTHORIZE_REMOTE_TX_REQUESTS, KeyType::Bool, "false"),
    rw(names::CLOCK_ALIGNED_DATA_INTERVAL, KeyType::UInt, "0"),
    rw(names::CONNECTION_TIME_OUT, KeyType::UInt, "60"),
    rw(
        "ConnectorPhaseRotation",
        KeyType::Text,
        "0.Unknown,1.Unknown",
    ),
    ro("ConnectorPhaseRotationMaxLength", KeyType::UInt, "2"),
    ro("GetConfigurationMaxKeys", KeyType::UInt, "50"),
    rw(names::HEARTBEAT_INTERVAL, KeyType::UInt, "86400"),
    rw("LocalAuthorizeOffline", KeyType::Bool, "false"),
    rw("LocalPreAuthorize", KeyType::Bool, "false"),
    rw(names::MESSAGE_TIMEOUT, KeyType::UInt, "30"),
    rw(
        names::METER_VALUES_ALIGNED_DATA,
        KeyType::Measurands,
        "Energy.Active.Import.Register",
    ),
    ro("MeterValuesAlignedDataMaxLength", KeyType::UInt, "8"),
    rw(
        names::METER_VALUES_SAMPLED_DATA,
        KeyType::Measurands,
        "Energy.Active.Import.Register",
    ),
    ro("MeterValuesSampledDataMaxLength", KeyType::UInt, "8"),
    rw(names::METER_VALUE_SAMPLE_INTERVAL, KeyType::UInt, "60"),
    ro("NumberOfConnectors", KeyType::UInt, "1"),
    rw("ResetRetries", KeyType::UInt, "2"),
    ro("StopTransactionOnEVSideDisconnect", KeyType::Bool, "true"),
    rw(names::STOP_TRANSACTION_ON_INVALID_ID, KeyType::Bool, "true"),
    rw(names::STOP_TXN_ALIGNED_DATA, KeyType::Measurands, ""),
    ro("StopTxnAlignedDataMaxLength", KeyType::UInt, "8"),
    rw(names::STOP_TXN_SAMPLED_DATA, KeyType::Measurands, ""),
    ro("StopTxnSampledDataMaxLength", KeyType::UInt, "8"),
    ro(
        "SupportedFeatureProfiles",
        KeyType::Text,
        "Core,SmartCharging,RemoteTrigger",
    ),
    rw(names::TRANSACTION_MESSAGE_ATTEMPTS, KeyType::UInt, "3"),
    rw(
        names::TRANSACTION_MESSAGE_RETRY_INTERVAL,
        KeyType::UInt,
        "60",
    ),
    ro("UnlockConnectorOnEVSideDisconnect", KeyType::Bool, "false"),
    rw(names::WEB_SOCKET_PING_INTERVAL, KeyType::UInt, "30"),
    // SmartCharging (§9.4); the values are those of crate::smartcharging.
    ro("ChargeProfileMaxStackLevel", KeyType::UInt, "8"),
    ro(
        "ChargingScheduleAllowedChargingRateUnit",
        KeyType::Text,
        "Current,Power",
    ),
    ro("ChargingScheduleMaxPeriods", KeyType::UInt, "24"),
    ro("MaxChargingProfilesInstalled", KeyType::UInt, "10"),
    // Security whitepaper (SWP §3.1, §5). Changes of the first two are checked and applied by
    // crate::security through the machine; CpoName is only stored (profile 3 certificates).
    wo(crate::security::AUTHORIZATION_KEY),
    rw(crate::security::SECURITY_PROFILE, KeyType::UInt, "2"),
    rw(crate::security::CPO_NAME, KeyType::Text, ""),
];

/// Outcome of a ChangeConfiguration (the OCPP ConfigurationStatus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeResult {
    /// Applied.
    Accepted,
    /// Known key, value not applied (read-only, malformed, unsupported measurand).
    Rejected,
    /// Unknown key.
    NotSupported,
}

/// The current values of every key of one charge point.
#[derive(Clone, Debug)]
pub struct ConfigKeys {
    values: BTreeMap<&'static str, String>,
    /// Measurands the device map provides; the only ones the CSL keys may name.
    supported_measurands: Vec<String>,
}

impl ConfigKeys {
    /// Defaults, restricted to what the device map can measure.
    #[must_use]
    pub fn new(supported_measurands: Vec<String>) -> Self {
        let mut values: BTreeMap<&'static str, String> = KEYS
            .iter()
            .filter(|k| k.access != Access::WriteOnly)
            .map(|k| (k.name, k.default.to_owned()))
            .collect();
        // A default measurand the map cannot provide would make every MeterValues empty.
        for k in KEYS.iter().filter(|k| k.ty == KeyType::Measurands) {
            let kept: Vec<&str> = k
                .default
                .split(',')
                .filter(|m| !m.is_empty() && supported_measurands.iter().any(|s| s == m))
                .collect();
            values.insert(k.name, kept.join(","));
        }
        Self {
            values,
            supported_measurands,
        }
    }

    fn def(name: &str) -> Option<&'static KeyDef> {
        KEYS.iter().find(|k| k.name.eq_ignore_ascii_case(name))
    }

    /// The key's name as the table spells it (keys are case-insensitive on input).
    #[must_use]
    pub fn canonical<'a>(&self, name: &'a str) -> &'a str {
        Self::def(name).map_or(name, |d| d.name)
    }

    /// The value of a key, if it exists.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        Self::def(name)
            .and_then(|d| self.values.get(d.name))
            .map(String::as_str)
    }

    /// An integer key (0 when missing or malformed, which validation prevents).
    #[must_use]
    pub fn uint(&self, name: &str) -> u64 {
        self.get(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A boolean key.
    #[must_use]
    pub fn bool(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// A measurand list key, split.
    #[must_use]
    pub fn measurands(&self, name: &str) -> Vec<String> {
        self.get(name)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Sets a key without the access check (the gateway's own changes, e.g. the heartbeat
    /// interval from BootNotification.conf).
    pub fn set_internal(&mut self, name: &str, value: String) {
        if let Some(d) = Self::def(name) {
            self.values.insert(d.name, value);
        }
    }

    /// Every key as `(name, readonly, value)`, or only the requested ones plus the unknown names.
    #[must_use]
    pub fn list(
        &self,
        requested: Option<&[String]>,
    ) -> (Vec<(&'static str, bool, String)>, Vec<String>) {
        let row = |d: &'static KeyDef| {
            (
                d.name,
                d.access == Access::ReadOnly,
                self.values.get(d.name).cloned().unwrap_or_default(),
            )
        };
        match requested {
            None | Some([]) => (
                KEYS.iter()
                    .filter(|d| d.access != Access::WriteOnly)
                    .map(row)
                    .collect(),
                Vec::new(),
            ),
            Some(names) => {
                let mut known = Vec::new();
                let mut unknown = Vec::new();
                for n in names {
                    match Self::def(n) {
                        // Write-only keys are known but never reported (SWP §3.1).
                        Some(d) if d.access == Access::WriteOnly => {}
                        Some(d) => known.push(row(d)),
                        None => unknown.push(n.clone()),
                    }
                }
                (known, unknown)
            }
        }
    }

    /// Whether a CSL entry names a measurand the map provides, optionally with a phase
    /// (`Voltage.L1`, §9.1.24).
    fn supports(&self, entry: &str) -> bool {
        let known = |m: &str| self.supported_measurands.iter().any(|s| s == m);
        if known(entry) {
            return true;
        }
        [
            "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1", "L1", "L2", "L3", "N",
        ]
        .iter()
        .any(|p| {
            entry
                .strip_suffix(p)
                .and_then(|m| m.strip_suffix('.'))
                .is_some_and(known)
        })
    }

    /// ChangeConfiguration: checks access and the value, applies it when valid.
    pub fn change(&mut self, name: &str, value: &str) -> ChangeResult {
        let Some(def) = Self::def(name) else {
            return ChangeResult::NotSupported;
        };
        // Write-only keys are changed through crate::security, never stored in this table.
        if def.access != Access::ReadWrite {
            return ChangeResult::Rejected;
        }
        let normalised = match def.ty {
            KeyType::Bool => match value.trim().to_ascii_lowercase().as_str() {
                v @ ("true" | "false") => v.to_owned(),
                _ => return ChangeResult::Rejected,
            },
            KeyType::UInt | KeyType::Int => match value.trim().parse::<u32>() {
                Ok(n) => n.to_string(),
                Err(_) => return ChangeResult::Rejected,
            },
            KeyType::Measurands => {
                let items: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .collect();
                // §3.16.4: an unsupported measurand rejects the whole change.
                if items.len() > MEASURANDS_MAX_LENGTH || !items.iter().all(|m| self.supports(m)) {
                    return ChangeResult::Rejected;
                }
                items.join(",")
            }
            KeyType::Text => value.to_owned(),
        };
        self.values.insert(def.name, normalised);
        ChangeResult::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ConfigKeys {
        ConfigKeys::new(vec![
            "Energy.Active.Import.Register".into(),
            "Power.Active.Import".into(),
        ])
    }

    #[test]
    fn defaults_are_what_central_systems_expect() {
        let k = keys();
        assert_eq!(k.uint(names::METER_VALUE_SAMPLE_INTERVAL), 60);
        assert_eq!(
            k.get(names::METER_VALUES_SAMPLED_DATA),
            Some("Energy.Active.Import.Register")
        );
        assert_eq!(k.get("NumberOfConnectors"), Some("1"));
    }

    #[test]
    fn unsupported_measurand_is_rejected_and_changes_nothing() {
        let mut k = keys();
        assert_eq!(
            k.change(
                names::METER_VALUES_SAMPLED_DATA,
                "Energy.Active.Import.Register,SoC"
            ),
            ChangeResult::Rejected
        );
        assert_eq!(
            k.get(names::METER_VALUES_SAMPLED_DATA),
            Some("Energy.Active.Import.Register")
        );
        assert_eq!(
            k.change(
                names::METER_VALUES_SAMPLED_DATA,
                "Energy.Active.Import.Register, Power.Active.Import"
            ),
            ChangeResult::Accepted
        );
        assert_eq!(k.measurands(names::METER_VALUES_SAMPLED_DATA).len(), 2);
    }

    #[test]
    fn read_only_unknown_and_malformed_values() {
        let mut k = keys();
        assert_eq!(k.change("NumberOfConnectors", "2"), ChangeResult::Rejected);
        assert_eq!(k.change("NoSuchKey", "1"), ChangeResult::NotSupported);
        assert_eq!(
            k.change(names::METER_VALUE_SAMPLE_INTERVAL, "-5"),
            ChangeResult::Rejected
        );
        assert_eq!(
            k.change(names::METER_VALUE_SAMPLE_INTERVAL, "ten"),
            ChangeResult::Rejected
        );
        assert_eq!(
            k.change(names::METER_VALUE_SAMPLE_INTERVAL, "10"),
            ChangeResult::Accepted
        );
        assert_eq!(k.uint(names::METER_VALUE_SAMPLE_INTERVAL), 10);
        assert_eq!(
            k.change(names::STOP_TRANSACTION_ON_INVALID_ID, "TRUE"),
            ChangeResult::Accepted
        );
        assert_eq!(
            k.change(names::STOP_TRANSACTION_ON_INVALID_ID, "maybe"),
            ChangeResult::Rejected
        );
    }

    #[test]
    fn smart_charging_keys_match_the_smart_charging_module() {
        use crate::smartcharging as sc;
        let k = keys();
        assert_eq!(
            k.uint("ChargeProfileMaxStackLevel"),
            u64::from(sc::CHARGE_PROFILE_MAX_STACK_LEVEL)
        );
        assert_eq!(
            k.uint("ChargingScheduleMaxPeriods"),
            sc::CHARGING_SCHEDULE_MAX_PERIODS as u64
        );
        assert_eq!(
            k.uint("MaxChargingProfilesInstalled"),
            sc::MAX_CHARGING_PROFILES_INSTALLED as u64
        );
        assert_eq!(
            k.get("ChargingScheduleAllowedChargingRateUnit"),
            Some(sc::CHARGING_SCHEDULE_ALLOWED_CHARGING_RATE_UNIT)
        );
    }

    #[test]
    fn get_configuration_reports_unknown_keys() {
        let k = keys();
        let (known, unknown) = k.list(Some(&["HeartbeatInterval".into(), "Foo".into()]));
        assert_eq!(known.len(), 1);
        assert_eq!(unknown, vec!["Foo".to_owned()]);
        // Everything except the write-only AuthorizationKey.
        assert_eq!(k.list(None).0.len(), KEYS.len() - 1);
    }

    #[test]
    fn the_authorization_key_is_never_listed_nor_stored_here() {
        let mut k = keys();
        assert!(
            k.list(None)
                .0
                .iter()
                .all(|(n, _, _)| *n != "AuthorizationKey")
        );
        let (known, unknown) = k.list(Some(&["AuthorizationKey".into()]));
        assert!(
            known.is_empty() && unknown.is_empty(),
            "omitted, not unknown"
        );
        assert_eq!(
            k.change("AuthorizationKey", &"ab".repeat(16)),
            ChangeResult::Rejected,
            "the table never takes it; the machine's security state does"
        );
        assert_eq!(k.get("AuthorizationKey"), None);
    }
}
