//! Device health for the telemetry topics: machine CPU, memory, disk, temperatures,
//! Raspberry Pi throttling, clock sync and this process's footprint, read from /proc
//! and /sys under a root directory so that fixture trees can stand in for a board.

mod board;
mod clock;
mod cpu;
mod memory;
mod process;
mod sampler;
mod thermal;
mod throttled;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::debug;

pub use board::{BoardInfo, board_info};
pub use process::{ProcessReport, ProcessTotals};
pub use sampler::HealthSampler;
pub use thermal::ThermalZone;
pub use throttled::Throttled;

/// Why one reading was left out of a report; logged, never returned by [`HealthSampler`].
#[derive(Debug, thiserror::Error)]
enum HealthError {
    #[error("{}: cannot read: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: unexpected content: {what}", .path.display())]
    Malformed { path: PathBuf, what: &'static str },
}

/// One health report.
///
/// Percentages, MiB and °C are rounded to one decimal when sampled; `uptime_s` and
/// `load1` are passed on as the kernel prints them (two decimals). A reading that
/// cannot be taken is `0`/`0.0` for plain numbers, `None` (JSON `null`) for options
/// and an empty list for `temperatures`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HealthReport {
    /// Seconds since boot, the first field of /proc/uptime.
    pub uptime_s: f64,
    /// Whole machine, 0–100: busy share of the /proc/stat `cpu` jiffies since the
    /// previous sample (since boot on the first one); busy = total − idle − iowait.
    pub cpu_percent: f64,
    /// One-minute load average from /proc/loadavg.
    pub load1: f64,
    /// `MemTotal` of /proc/meminfo in MiB.
    pub mem_total_mb: f64,
    /// `MemAvailable` of /proc/meminfo in MiB.
    pub mem_available_mb: f64,
    /// Space left to unprivileged users on the state directory's file system, MiB;
    /// `None` when the directory does not exist.
    pub disk_free_mb: Option<f64>,
    /// The hottest zone of `temperatures`, °C, leaving out zones that report a fixed
    /// value (PMIC-Die on older Jetsons); `None` without any.
    pub temperature_c: Option<f64>,
    /// Every readable thermal zone with a plausible value (−40 to 150 °C).
    pub temperatures: Vec<ThermalZone>,
    /// Raspberry Pi firmware throttling flags; `None` on other boards.
    pub throttled: Option<Throttled>,
    /// Whether the system clock is NTP-synchronised; `None` when it cannot be told.
    pub clock_synced: Option<bool>,
    /// This process.
    pub process: ProcessReport,
}

/// Reads a whole text file.
fn read_text(path: &Path) -> Result<String, HealthError> {
    fs::read_to_string(path).map_err(|source| HealthError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a file that only some boards have: `Ok(None)` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, HealthError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HealthError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn malformed(path: &Path, what: &'static str) -> HealthError {
    HealthError::Malformed {
        path: path.to_owned(),
        what,
    }
}

/// Logs a failed reading at debug level (a sample is taken every few seconds and a
/// missing file stays missing) and keeps the value of a successful one.
fn logged<T>(reading: Result<T, HealthError>) -> Option<T> {
    reading
        .map_err(|e| debug!(error = %e, "health reading skipped"))
        .ok()
}

fn kib_to_mib(kib: u64) -> f64 {
    round1(kib as f64 / 1024.0)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod testdata {
    use std::fs;
    use std::path::{Path, PathBuf};

    /// One of the board trees under src/health/fixtures.
    pub fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/health/fixtures")
            .join(name)
    }

    /// Copies a fixture tree so that a test can rewrite files between samples.
    pub fn copy_tree(from: &Path, to: &Path) {
        fs::create_dir_all(to).expect("mkdir");
        for entry in fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), target).expect("copy");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testdata::fixture;
    use super::*;

    fn zone(zone: &str, kind: &str, temperature_c: f64) -> ThermalZone {
        ThermalZone {
            zone: zone.into(),
            kind: kind.into(),
            temperature_c,
        }
    }

    /// A sampler on a fixture tree whose state dir does not exist, so that every field
    /// of the report is deterministic.
    fn sample_fixture(name: &str) -> HealthReport {
        HealthSampler::new(fixture(name), "/nonexistent/edgecam-state").sample()
    }

    #[test]
    fn raspberry_pi_4() {
        assert_eq!(
            sample_fixture("rpi4-bookworm"),
            HealthReport {
                uptime_s: 183562.47,
                cpu_percent: 5.8,
                load1: 0.52,
                mem_total_mb: 3791.7,
                mem_available_mb: 3240.5,
                disk_free_mb: None,
                temperature_c: Some(45.3),
                temperatures: vec![zone("thermal_zone0", "cpu-thermal", 45.3)],
                throttled: Some(Throttled {
                    under_voltage: true,
                    freq_capped: false,
                    throttled: true,
                    soft_temp_limit: false,
                    raw: 0x50005,
                }),
                clock_synced: Some(true),
                process: ProcessReport {
                    rss_mb: 45.9,
                    cpu_percent: 8.0,
                    threads: 23,
                    fds: 9,
                },
            }
        );
    }

    #[test]
    fn jetson_orin_nano() {
        // cv0..cv2 read -256000 on an Orin Nano (no DLA/PVA) and are left out.
        assert_eq!(
            sample_fixture("jetson-orin-nano-jp6"),
            HealthReport {
                uptime_s: 86417.93,
                cpu_percent: 13.8,
                load1: 1.87,
                mem_total_mb: 7441.6,
                mem_available_mb: 5735.7,
                disk_free_mb: None,
                temperature_c: Some(48.3),
                temperatures: vec![
                    zone("thermal_zone0", "cpu-thermal", 48.3),
                    zone("thermal_zone1", "gpu-thermal", 46.8),
                    zone("thermal_zone5", "soc0-thermal", 46.2),
                    zone("thermal_zone6", "soc1-thermal", 47.1),
                    zone("thermal_zone7", "soc2-thermal", 45.9),
                    zone("thermal_zone8", "tj-thermal", 48.3),
                ],
                throttled: None,
                clock_synced: None,
                process: ProcessReport {
                    rss_mb: 124.1,
                    cpu_percent: 14.1,
                    threads: 31,
                    fds: 14,
                },
            }
        );
    }

    #[test]
    fn x86_box() {
        assert_eq!(
            sample_fixture("x86-debian12"),
            HealthReport {
                uptime_s: 1209601.84,
                cpu_percent: 8.4,
                load1: 0.91,
                mem_total_mb: 15846.1,
                mem_available_mb: 12895.0,
                disk_free_mb: None,
                temperature_c: Some(52.0),
                temperatures: vec![
                    zone("thermal_zone0", "acpitz", 27.8),
                    zone("thermal_zone1", "x86_pkg_temp", 52.0),
                    zone("thermal_zone2", "pch_cannonlake", 47.0),
                ],
                throttled: None,
                clock_synced: None,
                process: ProcessReport {
                    rss_mb: 86.3,
                    cpu_percent: 27.0,
                    threads: 27,
                    fds: 11,
                },
            }
        );
    }

    #[test]
    fn board_models() {
        let pi = board_info(&fixture("rpi4-bookworm"));
        assert_eq!(
            pi.board_model.as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        let jetson = board_info(&fixture("jetson-orin-nano-jp6"));
        assert_eq!(
            jetson.board_model.as_deref(),
            Some("NVIDIA Jetson Orin Nano Developer Kit")
        );
        let x86 = board_info(&fixture("x86-debian12"));
        assert_eq!(x86.board_model, None);
        // uname() describes the machine running the tests, not the fixture.
        assert!(!x86.kernel.is_empty() && !x86.arch.is_empty());
    }

    #[test]
    fn serialises_numbers_and_nulls() {
        let json = serde_json::to_value(sample_fixture("rpi4-bookworm")).expect("serialises");
        assert_eq!(json["cpu_percent"], serde_json::json!(5.8));
        assert_eq!(json["disk_free_mb"], serde_json::Value::Null);
        assert_eq!(json["throttled"]["raw"], serde_json::json!(0x50005));
        assert_eq!(json["temperatures"][0]["kind"], "cpu-thermal");
        assert_eq!(json["process"]["fds"], serde_json::json!(9));
    }
}
