//! The pieces every end-to-end rig starts the same way: the loopback central system over wss
//! with a throwaway CA and Basic Auth, the head of the gateway's YAML configuration, and the
//! real gateway loaded from that file, run as a task and joined at the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chargebridge::config::{self, Config};
use chargebridge::devicemap;
use chargebridge::sim::RunningSim;
use chargebridge::sim::csms::{Csms, CsmsHandle, CsmsOptions};
use chargebridge::sim::pki::TestPki;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The loopback central system over wss with a throwaway test CA and Basic Auth.
#[derive(Debug)]
pub struct TlsCsms {
    /// The running central system.
    pub csms: CsmsHandle,
    /// The options it was started with (to start another on the same port).
    pub opts: CsmsOptions,
    /// The test PKI (server certificate for `localhost` and `127.0.0.1`).
    pub pki: TestPki,
    /// The CA certificate file the gateway is told to trust.
    pub ca_file: PathBuf,
}

impl TlsCsms {
    /// Generates a PKI, writes its CA into `dir` and starts the central system expecting
    /// `passwords` (charger id to password); unknown ids are refused.
    pub async fn start(dir: &Path, passwords: HashMap<String, String>) -> TlsCsms {
        let pki = TestPki::generate(&["localhost", "127.0.0.1"]).expect("test PKI");
        let ca_file = pki.write_ca(dir).expect("write CA");
        let opts = CsmsOptions {
            tls: Some(pki.clone()),
            passwords,
            reject_unknown: true,
            ..CsmsOptions::default()
        };
        let csms = Csms::start(opts.clone()).await.expect("start CSMS");
        TlsCsms {
            csms,
            opts,
            pki,
            ca_file,
        }
    }

    /// The URL to give the gateway: by host name, so the certificate's name is checked.
    pub fn gateway_url(&self) -> String {
        self.csms.url().replace("127.0.0.1", "localhost")
    }

    /// The head of the gateway configuration: `state_dir` (`dir`), warnings-only text log, no
    /// map directories, and the central system at `url` (security profile 2, this CA).
    pub fn config_head(&self, dir: &Path, url: &str) -> String {
        format!(
            "state_dir: {dir}\nlog: {{ format: text, filter: warn }}\ndevice_map_dirs: []\n\
             csms:\n  url: {url}\n  security_profile: 2\n  ca_file: {ca}\n",
            dir = dir.display(),
            ca = self.ca_file.display(),
        )
    }
}

/// A `buses:` section with the RS-485 bus `rs485-1` on `port` at 19200 8E1.
pub fn rs485_bus(port: &str) -> String {
    format!(
        "buses:\n  rs485-1: {{ port: {port}, baud: 19200, parity: even, data_bits: 8, stop_bits: 1 }}\n"
    )
}

/// Writes `password` into `dir/<id>.secret` (a `password_file`); returns its path.
pub fn write_password(dir: &Path, id: &str, password: &str) -> PathBuf {
    let path = dir.join(format!("{id}.secret"));
    std::fs::write(&path, format!("{password}\n")).expect("password file");
    path
}

/// Writes the gateway configuration `yaml` into `dir/chargebridge.yaml`; returns its path.
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("chargebridge.yaml");
    std::fs::write(&path, yaml).expect("write configuration");
    path
}

/// Loads a configuration file with the same loader as `run`.
pub fn load(path: &Path) -> Result<Config, String> {
    let resolve = |name: &str, dirs: &[PathBuf]| {
        devicemap::resolve(name, dirs)
            .map(Arc::new)
            .map_err(|d| d.to_string())
    };
    config::load_in(path, &resolve).map_err(|d| d.to_string())
}

/// Loads the configuration file at `path` and runs the gateway on it until `token` is
/// cancelled; panics with the diagnostics and the file when it does not load.
pub fn spawn(path: &Path, token: CancellationToken) -> JoinHandle<anyhow::Result<()>> {
    let cfg = load(path).unwrap_or_else(|e| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        panic!("the rig's configuration loads: {e}\n{text}")
    });
    tokio::spawn(chargebridge::gateway::run(cfg, token))
}

/// What a rig runs besides the central system: the simulators and the gateway task, all
/// stopped by one cancellation token (also when the rig is dropped after a failed test).
#[derive(Debug, Default)]
pub struct Tasks {
    /// Cancelling it stops every task.
    pub token: CancellationToken,
    /// The gateway task, until it is joined.
    pub gateway: Option<JoinHandle<anyhow::Result<()>>>,
    /// The running simulators.
    pub sims: Vec<RunningSim>,
}

impl Tasks {
    /// Whether the gateway task has ended (it should run until [`Tasks::stop`]).
    pub fn gateway_ended(&self) -> bool {
        self.gateway.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Cancels the token, then joins the gateway (asserting it ended cleanly) and the
    /// simulators, each within `timeout`.
    pub async fn stop(&mut self, timeout: Duration) {
        self.token.cancel();
        if let Some(g) = self.gateway.take() {
            join(g, timeout).await;
        }
        for sim in self.sims.drain(..) {
            let _ = tokio::time::timeout(timeout, sim.wait()).await;
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Waits up to `timeout` for a gateway task that was told to stop; asserts it ended, without
/// a panic and without an error.
pub async fn join(gateway: JoinHandle<anyhow::Result<()>>, timeout: Duration) {
    let ended = tokio::time::timeout(timeout, gateway)
        .await
        .unwrap_or_else(|_| panic!("the gateway stops within {timeout:?} of shutdown"));
    ended
        .expect("the gateway task did not panic")
        .expect("the gateway ended without error");
}
