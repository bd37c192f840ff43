//! A loopback rig for the operations tests: the small central system (ws://, Basic Auth), one
//! simulated Modbus TCP wallbox per charger, and a configuration file the real loader reads.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chargebridge::devicemap;
use chargebridge::sim::csms::{Csms, CsmsEvent, CsmsHandle, CsmsOptions};
use chargebridge::sim::{RunningSim, SimArgs, SimHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use crate::common::csms::is_call;
use crate::common::gateway;
/// Loads a configuration file with the same loader as `run`.
pub use crate::common::gateway::load;

pub const MAP: &str = "heidelberg-energy-control";

/// Energy register of every simulated wallbox at start, Wh.
pub const START_ENERGY_WH: u32 = 1_250_000;

pub struct Rig {
    pub csms: CsmsHandle,
    pub sims: HashMap<String, RunningSim>,
    pub dir: tempfile::TempDir,
    pub shutdown: CancellationToken,
}

/// One charger entry of the configuration.
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: String,
    pub max_current: u32,
}

impl Entry {
    pub fn new(id: &str) -> Self {
        Entry {
            id: id.to_owned(),
            max_current: 16,
        }
    }
}

fn password(id: &str) -> String {
    format!("pw-{id}-secret")
}

impl Rig {
    /// Starts the central system and one wallbox simulator per id (all may not be configured).
    pub async fn start(ids: &[&str]) -> Rig {
        let shutdown = CancellationToken::new();
        let passwords = ids
            .iter()
            .map(|id| ((*id).to_owned(), password(id)))
            .collect();
        let csms = Csms::start(CsmsOptions {
            passwords,
            reject_unknown: true,
            ..CsmsOptions::default()
        })
        .await
        .unwrap();
        let map = devicemap::resolve(MAP, &[]).unwrap();
        let mut sims = HashMap::new();
        for id in ids {
            let sim = chargebridge::sim::spawn(
                SimArgs {
                    map: MAP.into(),
                    tcp: Some(([127, 0, 0, 1], 0).into()),
                    units: vec![1],
                    set: vec![
                        "layout_version=0x0108".to_owned(),
                        "hw_max_current=16".to_owned(),
                        "hw_min_current=6".to_owned(),
                        format!("energy={START_ENERGY_WH}"),
                    ],
                    ..SimArgs::default()
                },
                map.clone(),
                shutdown.clone(),
            )
            .await
            .unwrap();
            sims.insert((*id).to_owned(), sim);
        }
        Rig {
            csms,
            sims,
            dir: tempfile::tempdir().unwrap(),
            shutdown,
        }
    }

    pub fn wallbox(&self, id: &str) -> SimHandle {
        self.sims[id].units[0].1.clone()
    }

    /// The configuration text for these chargers.
    pub fn yaml(&self, entries: &[Entry]) -> String {
        let dir = self.dir.path();
        let mut yaml = format!(
            "state_dir: {dir}\nhttp: {{ listen: 127.0.0.1:0 }}\nlog: {{ format: text, filter: info }}\n\
             device_map_dirs: []\ncsms:\n  url: {url}\n  security_profile: 1\n  allow_insecure: true\n\
             chargers:\n",
            dir = dir.display(),
            url = self.csms.url(),
        );
        for e in entries {
            let secret = gateway::write_password(dir, &e.id, &password(&e.id));
            let _ = write!(
                yaml,
                "  - id: {id}\n    device_map: {MAP}\n    tcp: {addr}\n    unit: 1\n    \
                 password_file: {secret}\n    max_current: {max}\n    poll_interval: 500ms\n",
                id = e.id,
                addr = self.sims[&e.id].tcp_addr.unwrap(),
                secret = secret.display(),
                max = e.max_current,
            );
        }
        yaml
    }

    /// Writes the configuration file and returns its path.
    pub fn write_config(&self, entries: &[Entry]) -> PathBuf {
        gateway::write_config(self.dir.path(), &self.yaml(entries))
    }

    /// Counts the central system's `Connected` events for a charger from event `since` on.
    pub fn connects_since(&self, since: usize, id: &str) -> usize {
        self.csms.events()[since..]
            .iter()
            .filter(|e| matches!(e, CsmsEvent::Connected { charger } if charger == id))
            .count()
    }

    pub fn disconnects_since(&self, since: usize, id: &str) -> usize {
        self.csms.events()[since..]
            .iter()
            .filter(|e| matches!(e, CsmsEvent::Disconnected { charger } if charger == id))
            .count()
    }

    /// Waits for a CALL of `action` from `id`.
    pub async fn wait_call(&self, since: usize, id: &str, action: &str, secs: u64) -> bool {
        let wanted = |e: &CsmsEvent| is_call(e, Some(id), action, |_| true);
        self.csms
            .wait_for_since(since, wanted, Duration::from_secs(secs))
            .await
            .is_some()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.csms.shutdown();
    }
}

/// A minimal HTTP/1.1 GET over loopback: (status, content type, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// The value of one series line (exact name with labels) in Prometheus text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The sum of every sample of a metric whose labels contain all of `labels`.
pub fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Polls until `f` returns true or `secs` pass.
pub async fn eventually(secs: u64, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}
