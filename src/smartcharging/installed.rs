//! The installed charging profiles of one charge point, with the replacement and clearing rules
//! of §5.16 and errata 3.25/3.26. Serialises as a JSON array of SetChargingProfile.req payloads
//! (`{"connectorId": …, "csChargingProfiles": {…}}`) so the store keeps exactly what OCPP says
//! (errata 3.37: profiles SHALL survive reboots).

use serde::{Deserialize, Serialize};

use super::profile::{ChargingProfile, Purpose};
use super::{MAX_CHARGING_PROFILES_INSTALLED, Reject};

/// One installed profile and the connector it was set on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Installed {
    connector_id: u32,
    cs_charging_profiles: ChargingProfile,
}

/// All installed profiles of one charge point.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProfileSet {
    entries: Vec<Installed>,
}

impl ProfileSet {
    /// No profiles.
    pub fn new() -> Self {
        ProfileSet::default()
    }

    /// Installs a profile that passed [`super::parse_set_charging_profile`].
    ///
    /// An installed profile with the same id, or with the same stackLevel, purpose and connector,
    /// is replaced (§3.13.2, §5.16.3). Nothing changes when the result would hold more than
    /// [`MAX_CHARGING_PROFILES_INSTALLED`] profiles.
    ///
    /// # Errors
    /// [`Reject::Status`] `Rejected` when the set is full.
    pub fn install(&mut self, connector: u32, profile: ChargingProfile) -> Result<(), Reject> {
        let replaces = |e: &Installed| {
            e.cs_charging_profiles.id == profile.id
                || (e.connector_id == connector
                    && e.cs_charging_profiles.stack_level == profile.stack_level
                    && e.cs_charging_profiles.purpose == profile.purpose)
        };
        let kept = self.entries.iter().filter(|e| !replaces(e)).count();
        if kept >= MAX_CHARGING_PROFILES_INSTALLED {
            return Err(Reject::rejected(format!(
                "MaxChargingProfilesInstalled ({MAX_CHARGING_PROFILES_INSTALLED}) reached"
            )));
        }
        self.entries.retain(|e| !replaces(e));
        self.entries.push(Installed {
            connector_id: connector,
            cs_charging_profiles: profile,
        });
        Ok(())
    }

    /// ClearChargingProfile (§5.5): without any field every profile goes; with `id` only that
    /// profile (the other fields are ignored, errata 3.25); otherwise the given fields are AND-ed
    /// (errata 3.26). Returns whether anything was removed (status Accepted, else Unknown).
    pub fn clear(
        &mut self,
        id: Option<i32>,
        connector: Option<u32>,
        purpose: Option<Purpose>,
        stack_level: Option<u32>,
    ) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| {
            let p = &e.cs_charging_profiles;
            let hit = match id {
                Some(id) => p.id == id,
                None => {
                    connector.is_none_or(|c| c == e.connector_id)
                        && purpose.is_none_or(|u| u == p.purpose)
                        && stack_level.is_none_or(|s| s == p.stack_level)
                }
            };
            !hit
        });
        self.entries.len() != before
    }

    /// A transaction ended: its TxProfiles are deleted (§3.13.1). TxProfiles not yet bound to a
    /// transaction id (installed from RemoteStartTransaction, or while the id was unknown) belong
    /// to the transaction that ended as well and go too.
    pub fn end_transaction(&mut self, tx_id: Option<i32>) {
        self.entries.retain(|e| {
            let p = &e.cs_charging_profiles;
            !(p.purpose == Purpose::TxProfile
                && (p.transaction_id.is_none() || p.transaction_id == tx_id))
        });
    }

    /// Every installed profile with its connector, in installation order.
    pub fn profiles(&self) -> impl Iterator<Item = (u32, &ChargingProfile)> {
        self.entries
            .iter()
            .map(|e| (e.connector_id, &e.cs_charging_profiles))
    }

    /// How many profiles are installed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no profile is installed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
