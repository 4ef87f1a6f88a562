//! The board's health (what MQTT publishes as `health`) and this process's standard
//! `process_*` metrics.

use super::families::{Families, Labels, Row};
use crate::health::{HealthReport, ProcessTotals};

const MIB: f64 = 1024.0 * 1024.0;

/// MiB (to one decimal, as the health report has them) as whole bytes.
fn mib(mb: f64) -> f64 {
    (mb * MIB).round()
}

/// The health report's figures. `host_cpu_usage_ratio` is the share since the previous
/// scrape (since boot on the first), as `health.cpu_percent` is since the previous
/// report.
pub fn add_health(f: &mut Families, l: &Labels, h: &HealthReport) {
    let rows: [Row; 7] = [
        (
            "edgecam_host_uptime_seconds",
            "Time since the machine booted.",
            Some(h.uptime_s),
        ),
        (
            "edgecam_host_cpu_usage_ratio",
            "Busy share of the whole machine's CPU time since the previous scrape, 0-1.",
            // One decimal of a percent is three of a ratio.
            Some((h.cpu_percent * 10.0).round() / 1000.0),
        ),
        (
            "edgecam_host_load1",
            "One-minute load average.",
            Some(h.load1),
        ),
        (
            "edgecam_host_memory_total_bytes",
            "MemTotal of /proc/meminfo (to 0.1 MiB).",
            Some(mib(h.mem_total_mb)),
        ),
        (
            "edgecam_host_memory_available_bytes",
            "MemAvailable of /proc/meminfo (to 0.1 MiB).",
            Some(mib(h.mem_available_mb)),
        ),
        (
            "edgecam_host_disk_free_bytes",
            "Space left to unprivileged users on the state directory's file system (to 0.1 MiB).",
            h.disk_free_mb.map(mib),
        ),
        (
            "edgecam_host_temperature_celsius",
            "The hottest thermal zone, leaving out zones that report a fixed value.",
            h.temperature_c,
        ),
    ];
    f.add_rows(l, &rows);
    for zone in &h.temperatures {
        f.add(
            "edgecam_host_zone_temperature_celsius",
            "Each readable thermal zone.",
            &l.with("zone", zone.zone.as_str())
                .with("type", zone.kind.as_str()),
            zone.temperature_c,
        );
    }
    if let Some(t) = &h.throttled {
        let flags = [
            ("under_voltage", t.under_voltage),
            ("freq_capped", t.freq_capped),
            ("throttled", t.throttled),
            ("soft_temp_limit", t.soft_temp_limit),
        ];
        for (flag, on) in flags {
            f.flag(
                "edgecam_host_throttled",
                "Raspberry Pi firmware throttling flags (get_throttled bits 0-3), 1 when set now.",
                &l.with("flag", flag),
                on,
            );
        }
    }
    if let Some(synced) = h.clock_synced {
        f.flag(
            "edgecam_host_clock_synced",
            "1 when the system clock is NTP-synchronised.",
            l,
            synced,
        );
    }
}

/// The standard process metrics, with the names every Prometheus client library uses.
pub fn add_process(f: &mut Families, l: &Labels, p: &ProcessTotals) {
    let rows: [Row; 7] = [
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_bytes.map(|b| b as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_bytes.map(|b| b as f64),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds.map(f64::from),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds.map(|n| n as f64),
        ),
        (
            "process_threads",
            "Number of OS threads in the process.",
            p.threads.map(f64::from),
        ),
    ];
    f.add_rows(l, &rows);
}
