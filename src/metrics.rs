//! The Prometheus series of the gateway (architecture.md §Metrics) and their text rendering.
//!
//! Conventions (Prometheus naming guide): base units (seconds, watts, watt-hours, amperes),
//! counters end in `_total`, and every label has a bounded set of values: charger ids and bus
//! names come from the configuration, the rest from the fixed sets in this module (an OCPP
//! action the gateway does not know becomes `other`, so a hostile central system cannot grow
//! the series without bound).
//!
//! Process metrics (`process_*`) are read from `/proc/self` at scrape time, as the official
//! client libraries do; the crate's own `process` feature is off to keep the dependency tree
//! small.

use prometheus::{
    Counter, CounterVec, Encoder as _, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::charger::status::Status;

/// Every OCPP connector status, for the one-hot `chargebridge_charger_status` series.
pub const STATUSES: [Status; 9] = [
    Status::Available,
    Status::Preparing,
    Status::Charging,
    Status::SuspendedEV,
    Status::SuspendedEVSE,
    Status::Finishing,
    Status::Reserved,
    Status::Unavailable,
    Status::Faulted,
];

/// Where the current limit comes from, for the one-hot `chargebridge_charger_current_limit_source`
/// series: a charging-profile purpose (OCPP 1.6 §7.13), `max_current` (no profile applies) or
/// `none` (no transaction: charging is off).
pub const LIMIT_SOURCES: [&str; 5] = [
    "ChargePointMaxProfile",
    "TxDefaultProfile",
    "TxProfile",
    "max_current",
    "none",
];

/// OCPP 1.6 actions (both directions, OCPP 1.6 §4 and §5). Anything else is counted as `other`.
const ACTIONS: [&str; 28] = [
    "Authorize",
    "BootNotification",
    "CancelReservation",
    "ChangeAvailability",
    "ChangeConfiguration",
    "ClearCache",
    "ClearChargingProfile",
    "DataTransfer",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "GetCompositeSchedule",
    "GetConfiguration",
    "GetDiagnostics",
    "GetLocalListVersion",
    "Heartbeat",
    "MeterValues",
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "ReserveNow",
    "Reset",
    "SendLocalList",
    "SetChargingProfile",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
    "TriggerMessage",
    "UnlockConnector",
    "UpdateFirmware",
];

/// The label value for an OCPP action: the action itself if OCPP 1.6 defines it, else `other`.
#[must_use]
pub fn action_label(action: &str) -> &'static str {
    ACTIONS
        .iter()
        .find(|a| **a == action)
        .copied()
        .unwrap_or("other")
}

/// Upper bounds of the Modbus request duration histogram, in seconds: from a fast TCP answer
/// (a few ms) to an RTU request that ran into its timeout and retries (seconds).
const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Linux reports process CPU times in clock ticks of `USER_HZ`, which is 100 on every
/// architecture the kernel exposes to user space through `/proc` (proc(5)).
const USER_HZ: f64 = 100.0;

/// The gateway's Prometheus series.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `chargebridge_modbus_requests_total{bus,charger,function,result}`.
    pub modbus_requests: IntCounterVec,
    /// `chargebridge_modbus_request_duration_seconds{bus}`.
    pub modbus_duration: HistogramVec,
    /// `chargebridge_modbus_bus_busy_seconds_total{bus}`.
    pub bus_busy: CounterVec,
    /// `chargebridge_charger_reachable{charger}`.
    pub reachable: IntGaugeVec,
    /// `chargebridge_charger_status{charger,connector,status}`.
    pub status: IntGaugeVec,
    /// `chargebridge_charger_power_watts{charger}`.
    pub power: GaugeVec,
    /// `chargebridge_charger_energy_import_joules{charger}`.
    pub energy: GaugeVec,
    /// `chargebridge_charger_current_limit_amperes{charger}`.
    pub limit: GaugeVec,
    /// `chargebridge_charger_current_limit_source{charger,source}` (1 for the current one).
    pub limit_source: IntGaugeVec,
    /// `chargebridge_ocpp_connected{charger}`.
    pub connected: IntGaugeVec,
    /// `chargebridge_ocpp_messages_total{charger,direction,action,result}`.
    pub messages: IntCounterVec,
    /// `chargebridge_ocpp_outbox_messages{charger}`.
    pub outbox: IntGaugeVec,
    /// `chargebridge_ocpp_reconnects_total{charger}`.
    pub reconnects: IntCounterVec,
    process_rss: Gauge,
    process_cpu: Counter,
    process_fds: Gauge,
}

/// Creating a series failed; only possible with an invalid name or label (a bug).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Registers every series; `version` goes into `chargebridge_build_info`.
    ///
    /// # Errors
    /// Only for an invalid metric definition (a programming error).
    pub fn new(version: &str) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, MetricsError> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let int_gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, MetricsError> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let gauge = |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, MetricsError> {
            let g = GaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let modbus_requests = counter(
            "chargebridge_modbus_requests_total",
            "Modbus requests by charger, function and result (after retries).",
            &["bus", "charger", "function", "result"],
        )?;
        let modbus_duration = HistogramVec::new(
            HistogramOpts::new(
                "chargebridge_modbus_request_duration_seconds",
                "Time from submitting a Modbus request to its answer, including queueing on a shared bus and retries.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["bus"],
        )?;
        registry.register(Box::new(modbus_duration.clone()))?;
        let bus_busy = CounterVec::new(
            Opts::new(
                "chargebridge_modbus_bus_busy_seconds_total",
                "Time the bus spent serving requests, including request delays and inter-frame silences.",
            ),
            &["bus"],
        )?;
        registry.register(Box::new(bus_busy.clone()))?;
        let reachable = int_gauge(
            "chargebridge_charger_reachable",
            "1 if the wallbox answered its last Modbus poll cycle.",
            &["charger"],
        )?;
        let status = int_gauge(
            "chargebridge_charger_status",
            "OCPP connector status: 1 for the current one, 0 for the others.",
            &["charger", "connector", "status"],
        )?;
        let power = gauge(
            "chargebridge_charger_power_watts",
            "Active power drawn, as last read from the wallbox.",
            &["charger"],
        )?;
        let energy = gauge(
            // Prometheus' base unit (joules, 3600 J = 1 Wh): `promtool check metrics` flags
            // watt-hours. The status page and OCPP keep Wh.
            "chargebridge_charger_energy_import_joules",
            "The wallbox's energy register (imported energy) as last read, in joules (Wh x 3600).",
            &["charger"],
        )?;
        let limit = gauge(
            "chargebridge_charger_current_limit_amperes",
            "Current limit last written to the wallbox (0 when charging is off).",
            &["charger"],
        )?;
        let limit_source = int_gauge(
            "chargebridge_charger_current_limit_source",
            "1 for what sets the current limit now: a charging-profile purpose, max_current \
             (no profile applies) or none (no transaction); 0 for the others.",
            &["charger", "source"],
        )?;
        let connected = int_gauge(
            "chargebridge_ocpp_connected",
            "1 while the WebSocket to the central system is up.",
            &["charger"],
        )?;
        let messages = counter(
            "chargebridge_ocpp_messages_total",
            "OCPP CALLs by direction (sent: to the central system, received: from it), action and result.",
            &["charger", "direction", "action", "result"],
        )?;
        let outbox = int_gauge(
            "chargebridge_ocpp_outbox_messages",
            "OCPP messages waiting to be sent (including the one in flight).",
            &["charger"],
        )?;
        let reconnects = counter(
            "chargebridge_ocpp_reconnects_total",
            "WebSocket connections to the central system after the first one.",
            &["charger"],
        )?;
        let build = int_gauge(
            "chargebridge_build_info",
            "Always 1; the version of the running gateway.",
            &["version"],
        )?;
        build.with_label_values(&[version]).set(1);

        let process_rss = Gauge::new(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )?;
        let process_cpu = Counter::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        )?;
        let process_fds = Gauge::new("process_open_fds", "Number of open file descriptors.")?;
        let process_start = Gauge::new(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        )?;
        for c in [&process_rss, &process_fds, &process_start] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(process_cpu.clone()))?;
        process_start.set(chrono::Utc::now().timestamp() as f64);
        Ok(Self {
            registry,
            modbus_requests,
            modbus_duration,
            bus_busy,
            reachable,
            status,
            power,
            energy,
            limit,
            limit_source,
            connected,
            messages,
            outbox,
            reconnects,
            process_rss,
            process_cpu,
            process_fds,
        })
    }

    /// Reads the process metrics from `/proc/self` (silently left as they were where it cannot
    /// be read, e.g. on a system without procfs).
    pub fn update_process(&self) {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(kb) = parse_vm_rss_kb(&status)
        {
            self.process_rss.set(kb as f64 * 1024.0);
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(ticks) = parse_cpu_ticks(&stat)
        {
            let seconds = ticks as f64 / USER_HZ;
            let delta = seconds - self.process_cpu.get();
            if delta > 0.0 {
                self.process_cpu.inc_by(delta);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries; do not count it.
            let n = dir.count().saturating_sub(1);
            self.process_fds.set(n as f64);
        }
    }

    /// The Prometheus text exposition format (version 0.0.4) of every series.
    #[must_use]
    pub fn render(&self) -> String {
        self.update_process();
        let mut out = Vec::new();
        // Encoding into a Vec only fails for a malformed family (a bug); an empty page is
        // better than a panic then.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics failed: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `VmRSS:  1234 kB` from `/proc/self/status`.
fn parse_vm_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime (fields 14 and 15) from `/proc/self/stat`. The command name (field 2) is in
/// parentheses and may contain spaces, so fields are counted after the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); utime is field 14, i.e. index 11 here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_actions_are_counted_as_other() {
        assert_eq!(action_label("Heartbeat"), "Heartbeat");
        assert_eq!(action_label("SetChargingProfile"), "SetChargingProfile");
        assert_eq!(action_label("'; DROP TABLE"), "other");
        assert_eq!(action_label(""), "other");
    }

    #[test]
    fn proc_fields_are_parsed_even_with_spaces_in_the_command_name() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 12345 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_vm_rss_kb("Name:\tx\nVmRSS:\t  5120 kB\n"), Some(5120));
        assert_eq!(parse_vm_rss_kb("Name:\tx\n"), None);
    }

    #[test]
    fn the_rendering_has_build_info_and_process_metrics() -> Result<(), MetricsError> {
        let m = Metrics::new("1.2.3")?;
        let text = m.render();
        assert!(
            text.contains("chargebridge_build_info{version=\"1.2.3\"} 1"),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter"),
            "{text}"
        );
        Ok(())
    }
}
