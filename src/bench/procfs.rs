//! CPU time and memory of a process, read from `/proc/<pid>` (Linux, proc(5)).

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on every Linux
/// architecture this project builds for (x86_64, armv7, aarch64).
const TICKS_PER_SECOND: u64 = 100;

/// A process's accumulated CPU time and current memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// User plus system CPU time so far.
    pub cpu: Duration,
    /// Resident set size now, bytes (`VmRSS`).
    pub rss: u64,
    /// Peak resident set size, bytes (`VmHWM`).
    pub rss_peak: u64,
    /// Threads.
    pub threads: u64,
}

/// CPU time from the text of `/proc/<pid>/stat`: fields 14 (utime) and 15 (stime), counted
/// after the `)` that ends the command name (which may itself contain spaces and `)`).
#[must_use]
pub fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is the first; utime is field 14, stime 15.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// A `kB` field of `/proc/<pid>/status` in bytes.
#[must_use]
pub fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// A plain number field of `/proc/<pid>/status`.
fn parse_status_number(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .parse()
            .ok()
    })
}

/// Reads `pid`'s CPU time and memory; `pid` `None` means this process.
///
/// # Errors
/// The process is gone, or `/proc` is not there or not in the expected format.
pub fn sample(pid: Option<u32>) -> std::io::Result<ProcSample> {
    let base = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let stat = std::fs::read_to_string(format!("{base}/stat"))?;
    let status = std::fs::read_to_string(format!("{base}/status"))?;
    let bad = |what: &str| std::io::Error::other(format!("{base}: cannot read {what}"));
    Ok(ProcSample {
        cpu: parse_stat_cpu(&stat).ok_or_else(|| bad("the CPU time"))?,
        rss: parse_status_kb(&status, "VmRSS").ok_or_else(|| bad("VmRSS"))?,
        rss_peak: parse_status_kb(&status, "VmHWM").ok_or_else(|| bad("VmHWM"))?,
        threads: parse_status_number(&status, "Threads").unwrap_or(0),
    })
}

/// The limit on open files of `pid` (soft limit from `/proc/<pid>/limits`).
#[must_use]
pub fn open_files_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU use between two samples as a percentage of one core.
#[must_use]
pub fn cpu_percent(before: &ProcSample, after: &ProcSample, wall: Duration) -> f64 {
    let used = after.cpu.saturating_sub(before.cpu);
    if wall.is_zero() {
        return 0.0;
    }
    100.0 * used.as_secs_f64() / wall.as_secs_f64()
}

/// Mebibytes with one decimal, for tables.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime_after_the_command_name() {
        // A command name with a space and a parenthesis must not shift the fields.
        let stat = "4242 (charge bridge) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 \
                    20 0 9 0 1000 123456 789 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Some(Duration::from_secs(3)));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\tchargebridge\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(10 * 1024 * 1024));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(20 * 1024 * 1024));
        assert_eq!(parse_status_number(status, "Threads"), Some(3));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(None).expect("/proc/self");
        assert!(s.rss > 0 && s.rss_peak >= s.rss);
        assert!(s.threads >= 1);
    }

    #[test]
    fn cpu_percent_is_of_one_core() {
        let a = ProcSample {
            cpu: Duration::from_millis(100),
            ..ProcSample::default()
        };
        let b = ProcSample {
            cpu: Duration::from_millis(600),
            ..ProcSample::default()
        };
        let pct = cpu_percent(&a, &b, Duration::from_secs(2));
        assert!((pct - 25.0).abs() < 1e-9);
        assert!(cpu_percent(&a, &b, Duration::ZERO).abs() < 1e-9);
    }
}
