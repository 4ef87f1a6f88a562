//! This process: /proc/self/status, /proc/self/stat, /proc/self/fd and
//! /proc/self/limits.

use std::fs;
use std::path::Path;

use serde::Serialize;

use super::{HealthError, malformed, read_text};

/// This process's footprint.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProcessReport {
    /// Resident set size (`VmRSS`), MiB to one decimal.
    pub rss_mb: f64,
    /// Share of one CPU (like `top`; above 100 when using several), one decimal:
    /// user + system time since the previous sample over the uptime elapsed.
    pub cpu_percent: f64,
    /// `Threads` of /proc/self/status.
    pub threads: u32,
    /// Open file descriptors.
    pub fds: u32,
}

/// This process's cumulative figures, for the standard Prometheus `process_*` metrics.
/// A reading that cannot be taken is `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessTotals {
    /// User + system CPU time since the process started, seconds.
    pub cpu_seconds: Option<f64>,
    /// When the process started, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// `VmRSS`, bytes.
    pub resident_bytes: Option<u64>,
    /// `VmSize`, bytes.
    pub virtual_bytes: Option<u64>,
    pub threads: Option<u32>,
    pub open_fds: Option<u32>,
    /// The soft limit on open descriptors; `None` when unlimited.
    pub max_fds: Option<u64>,
}

/// The /proc/self/status fields the reports carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Status {
    pub rss_kb: Option<u64>,
    pub vm_size_kb: Option<u64>,
    pub threads: Option<u32>,
}

impl Status {
    fn parse(text: &str) -> Status {
        let mut status = Status::default();
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let value = rest.split_ascii_whitespace().next();
            match key {
                "VmRSS" => status.rss_kb = value.and_then(|v| v.parse().ok()),
                "VmSize" => status.vm_size_kb = value.and_then(|v| v.parse().ok()),
                "Threads" => status.threads = value.and_then(|v| v.parse().ok()),
                _ => {}
            }
        }
        status
    }
}

/// CPU time and start time from /proc/self/stat, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    /// utime + stime.
    pub cpu_ticks: u64,
    /// Start time after boot.
    pub start_ticks: u64,
}

impl Stat {
    /// Fields are counted from the last `)`: the command name in parentheses may hold
    /// spaces and parentheses of its own.
    fn parse(text: &str) -> Option<Stat> {
        let (_, rest) = text.rsplit_once(')')?;
        // rest starts at field 3 (state): utime is field 14, stime 15, starttime 22.
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            cpu_ticks: field(14)?.checked_add(field(15)?)?,
            start_ticks: field(22)?,
        })
    }
}

pub(super) fn read_status(root: &Path) -> Result<Status, HealthError> {
    Ok(Status::parse(&read_text(&root.join("proc/self/status"))?))
}

pub(super) fn read_stat(root: &Path) -> Result<Stat, HealthError> {
    let path = root.join("proc/self/stat");
    Stat::parse(&read_text(&path)?).ok_or_else(|| malformed(&path, "no utime/stime/starttime"))
}

/// Entries of /proc/self/fd; on the live system, less the descriptor held open to
/// list the directory.
pub(super) fn count_fds(root: &Path, live: bool) -> Result<u32, HealthError> {
    let path = root.join("proc/self/fd");
    let entries = fs::read_dir(&path).map_err(|source| HealthError::Read {
        path: path.clone(),
        source,
    })?;
    let count = entries.filter(Result::is_ok).count();
    let count = if live { count.saturating_sub(1) } else { count };
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// The soft `Max open files` limit of /proc/self/limits; `Ok(None)` when unlimited.
pub(super) fn read_max_fds(root: &Path) -> Result<Option<u64>, HealthError> {
    let path = root.join("proc/self/limits");
    parse_max_fds(&read_text(&path)?).ok_or_else(|| malformed(&path, "no Max open files"))
}

/// `Max open files            1024                 524288               files`
fn parse_max_fds(limits: &str) -> Option<Option<u64>> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    match rest.split_ascii_whitespace().next()? {
        "unlimited" => Some(None),
        soft => soft.parse().ok().map(Some),
    }
}

/// USER_HZ; 100 on every Linux architecture, asked anyway.
pub(super) fn clock_ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as f64,
        _ => 100.0,
    }
}

/// Turns cumulative CPU ticks into a percentage of one CPU between samples, with
/// /proc/uptime as the clock so that fixtures control both sides.
#[derive(Debug)]
pub(super) struct CpuMeter {
    ticks_per_s: f64,
    /// CPU ticks and uptime (s) at the previous sample.
    prev: Option<(u64, f64)>,
}

impl CpuMeter {
    pub fn new(ticks_per_s: f64) -> Self {
        CpuMeter {
            ticks_per_s,
            prev: None,
        }
    }

    /// The first call measures from process start.
    pub fn percent(&mut self, stat: Stat, uptime_s: f64) -> f64 {
        let (prev_ticks, prev_uptime) = self
            .prev
            .unwrap_or((0, stat.start_ticks as f64 / self.ticks_per_s));
        self.prev = Some((stat.cpu_ticks, uptime_s));
        let elapsed = uptime_s - prev_uptime;
        if elapsed <= 0.0 {
            return 0.0;
        }
        let cpu_s = stat.cpu_ticks.saturating_sub(prev_ticks) as f64 / self.ticks_per_s;
        cpu_s * 100.0 / elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_awkward_command_names() {
        let tail = "S 1 812 812 0 -1 4194560 18212 0 41 0 1101 367 0 0 20 0 23 0 2531 \
                    1020723200 11745 18446744073709551615 1 2 3 0 0 0 0 4096 16387 0 0 0 17 2 \
                    0 0 0 0 0 4 5 6 7 8 9 10 0";
        for comm in ["(edgecam)", "(edgecam run)", "(a) b (c))", "(x 1 2 3)"] {
            assert_eq!(
                Stat::parse(&format!("812 {comm} {tail}\n")),
                Some(Stat {
                    cpu_ticks: 1468,
                    start_ticks: 2531,
                }),
                "{comm}"
            );
        }
    }

    #[test]
    fn stat_truncated_or_garbage() {
        assert_eq!(Stat::parse("812 (edgecam) S 1 812"), None);
        assert_eq!(Stat::parse("no parenthesis at all"), None);
        assert_eq!(Stat::parse(""), None);
    }

    #[test]
    fn status_fields() {
        let text = "Name:\tedgecam\nVmRSS:\t   46980 kB\nThreads:\t23\nSigQ:\t0/14937\n";
        assert_eq!(
            Status::parse(text),
            Status {
                rss_kb: Some(46980),
                vm_size_kb: None,
                threads: Some(23),
            }
        );
        assert_eq!(
            Status::parse("VmSize:\t 1659460 kB\n").vm_size_kb,
            Some(1659460)
        );
        // Kernel threads have no VmRSS line.
        assert_eq!(Status::parse("Threads:\t1\n").rss_kb, None);
    }

    #[test]
    fn max_open_files() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63413                63413                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(Some(1024)));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            Some(None)
        );
        assert_eq!(parse_max_fds("Max processes 1 1 processes\n"), None);
        assert_eq!(parse_max_fds("Max open files lots\n"), None);
    }

    #[test]
    fn cpu_meter_from_start_then_between_samples() {
        let mut meter = CpuMeter::new(100.0);
        // Started 10 s after boot, 5 s of CPU by 60 s of uptime: 10 %.
        let first = Stat {
            cpu_ticks: 500,
            start_ticks: 1000,
        };
        assert_eq!(meter.percent(first, 60.0), 10.0);
        // Two CPUs busy for 2 s.
        let second = Stat {
            cpu_ticks: 900,
            ..first
        };
        assert_eq!(meter.percent(second, 62.0), 200.0);
        // Uptime did not move.
        assert_eq!(meter.percent(second, 62.0), 0.0);
    }
}
