//! Whole-machine CPU: the aggregate `cpu` line of /proc/stat, /proc/uptime and
//! /proc/loadavg.

use std::path::Path;

use super::{HealthError, malformed, read_text};

/// Cumulative jiffies of the aggregate `cpu` line of /proc/stat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct CpuTimes {
    /// total − idle − iowait.
    pub busy: u64,
    /// user + nice + system + idle + iowait + irq + softirq + steal.
    pub total: u64,
}

impl CpuTimes {
    /// Parses the `cpu ` line; the per-CPU `cpuN` lines and the rest are ignored.
    pub fn parse(stat: &str) -> Option<CpuTimes> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields = line
            .split_ascii_whitespace()
            .skip(1)
            .map(|f| f.parse::<u64>().ok())
            .collect::<Option<Vec<_>>>()?;
        if fields.len() < 4 {
            return None;
        }
        // guest and guest_nice (fields 9 and 10) are already inside user and nice.
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
        Some(CpuTimes {
            busy: total.saturating_sub(idle),
            total,
        })
    }

    /// Busy share of the jiffies elapsed since `prev`, 0–100; 0 when none elapsed.
    pub fn busy_percent_since(self, prev: CpuTimes) -> f64 {
        // Counters that went backwards belong to another boot (or a rewritten
        // fixture): report the average since boot instead.
        let prev = if self.total < prev.total {
            CpuTimes::default()
        } else {
            prev
        };
        let total = self.total - prev.total;
        if total == 0 {
            return 0.0;
        }
        // iowait may go backwards on NO_HZ kernels, so busy can too.
        let busy = self.busy.saturating_sub(prev.busy).min(total);
        busy as f64 * 100.0 / total as f64
    }
}

pub(super) fn read_cpu_times(root: &Path) -> Result<CpuTimes, HealthError> {
    let path = root.join("proc/stat");
    CpuTimes::parse(&read_text(&path)?).ok_or_else(|| malformed(&path, "no `cpu` line"))
}

/// Seconds since boot: the first field of /proc/uptime.
pub(super) fn read_uptime(root: &Path) -> Result<f64, HealthError> {
    let path = root.join("proc/uptime");
    first_number(&read_text(&path)?).ok_or_else(|| malformed(&path, "no uptime"))
}

/// The one-minute load average: the first field of /proc/loadavg.
pub(super) fn read_load1(root: &Path) -> Result<f64, HealthError> {
    let path = root.join("proc/loadavg");
    first_number(&read_text(&path)?).ok_or_else(|| malformed(&path, "no load average"))
}

/// Boot time, seconds since the Unix epoch: the `btime` line of /proc/stat.
pub(super) fn read_boot_time(root: &Path) -> Result<u64, HealthError> {
    let path = root.join("proc/stat");
    parse_btime(&read_text(&path)?).ok_or_else(|| malformed(&path, "no btime line"))
}

fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn first_number(text: &str) -> Option<f64> {
    text.split_ascii_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_aggregate_line_only() {
        let stat = "cpu  100 5 50 800 20 3 7 15 9 1\n\
                    cpu0 1 1 1 1 1 1 1 1 1 1\n\
                    intr 12 0 0\n\
                    ctxt 99\n";
        assert_eq!(
            CpuTimes::parse(stat),
            Some(CpuTimes {
                busy: 180,
                total: 1000,
            })
        );
    }

    #[test]
    fn old_kernels_with_fewer_fields() {
        assert_eq!(
            CpuTimes::parse("cpu  10 0 10 80\n"),
            Some(CpuTimes {
                busy: 20,
                total: 100,
            })
        );
        assert_eq!(CpuTimes::parse("cpu  10 0 10\n"), None);
        assert_eq!(CpuTimes::parse("cpu0 10 0 10 80\n"), None);
        assert_eq!(CpuTimes::parse("cpu  10 x 10 80\n"), None);
    }

    #[test]
    fn percent_since_previous() {
        let prev = CpuTimes {
            busy: 100,
            total: 1000,
        };
        let now = CpuTimes {
            busy: 175,
            total: 1100,
        };
        assert_eq!(now.busy_percent_since(prev), 75.0);
        assert_eq!(now.busy_percent_since(now), 0.0);
        // Counters reset: average since boot.
        assert_eq!(prev.busy_percent_since(now), 10.0);
        // iowait going backwards cannot push the result past 100.
        let odd = CpuTimes {
            busy: 400,
            total: 1100,
        };
        assert_eq!(odd.busy_percent_since(prev), 100.0);
    }

    #[test]
    fn boot_time() {
        assert_eq!(
            parse_btime("cpu  1 2 3 4\nbtime 1714703981\nprocesses 9\n"),
            Some(1714703981)
        );
        assert_eq!(parse_btime("cpu  1 2 3 4\n"), None);
        assert_eq!(parse_btime("btime soon\n"), None);
    }

    #[test]
    fn first_numbers() {
        assert_eq!(first_number("183562.47 684159.19\n"), Some(183562.47));
        assert_eq!(first_number("0.52 0.61 0.58 2/412 23411\n"), Some(0.52));
        assert_eq!(first_number(""), None);
        assert_eq!(first_number("nan 1"), None);
        assert_eq!(first_number("-1 1"), None);
    }
}
