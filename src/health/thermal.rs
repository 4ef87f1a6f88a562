//! Temperatures: every /sys/class/thermal/thermal_zone*/ with its `type` and `temp`.

use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;
use tracing::trace;

use super::{HealthError, round1};

/// Readings outside this range (°C) are sensor sentinels, not temperatures: an Orin
/// Nano reports -256 °C for its absent DLA/PVA zones.
const PLAUSIBLE_C: std::ops::RangeInclusive<f64> = -40.0..=150.0;

/// Zone types that report a fixed value rather than a measurement; listed but never the
/// hottest. Older Jetsons' PMIC-Die reads 100 °C all the time.
const FIXED_VALUE_KINDS: &[&str] = &["PMIC-Die"];

/// One thermal zone.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThermalZone {
    /// Directory name, e.g. `thermal_zone0`.
    pub zone: String,
    /// Contents of the zone's `type` file, e.g. `cpu-thermal`, `x86_pkg_temp`.
    pub kind: String,
    /// °C, one decimal.
    pub temperature_c: f64,
}

/// Zones in index order; zones whose `temp` cannot be read or parsed, or reads an
/// implausible value, are left out. No thermal class at all is an empty list.
pub(super) fn read_zones(root: &Path) -> Result<Vec<ThermalZone>, HealthError> {
    let class = root.join("sys/class/thermal");
    let entries = match fs::read_dir(&class) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(HealthError::Read {
                path: class,
                source,
            });
        }
    };
    let mut zones: Vec<(u32, String)> = entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let index = name.strip_prefix("thermal_zone")?.parse().ok()?;
            Some((index, name))
        })
        .collect();
    zones.sort_unstable();
    Ok(zones
        .into_iter()
        .filter_map(|(_, name)| read_zone(&class.join(&name), name))
        .collect())
}

fn read_zone(dir: &Path, zone: String) -> Option<ThermalZone> {
    // Reading `temp` fails (EAGAIN, EIO, ENODATA) on zones whose sensor is offline.
    let raw = match fs::read_to_string(dir.join("temp")) {
        Ok(raw) => raw,
        Err(e) => {
            trace!(zone = %zone, error = %e, "thermal zone unreadable");
            return None;
        }
    };
    let millidegrees: i64 = raw.trim().parse().ok()?;
    let celsius = millidegrees as f64 / 1000.0;
    if !PLAUSIBLE_C.contains(&celsius) {
        trace!(zone = %zone, celsius, "thermal zone reading implausible");
        return None;
    }
    let kind = fs::read_to_string(dir.join("type"))
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    Some(ThermalZone {
        zone,
        kind,
        temperature_c: round1(celsius),
    })
}

/// The highest measured temperature, ignoring fixed-value zones.
pub(super) fn hottest(zones: &[ThermalZone]) -> Option<f64> {
    zones
        .iter()
        .filter(|z| !FIXED_VALUE_KINDS.contains(&z.kind.as_str()))
        .map(|z| z.temperature_c)
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_zone(root: &Path, name: &str, kind: &str, temp: Option<&str>) {
        let dir = root.join("sys/class/thermal").join(name);
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("type"), format!("{kind}\n")).expect("write");
        if let Some(temp) = temp {
            fs::write(dir.join("temp"), temp).expect("write");
        }
    }

    #[test]
    fn orders_by_index_and_skips_what_cannot_be_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write_zone(root, "thermal_zone10", "tj-thermal", Some("51250\n"));
        write_zone(root, "thermal_zone2", "cpu-thermal", Some("49500\n"));
        write_zone(root, "thermal_zone3", "no-temp-file", None);
        write_zone(root, "thermal_zone4", "garbage", Some("n/a\n"));
        write_zone(root, "thermal_zone5", "offline", Some("-256000\n"));
        write_zone(root, "thermal_zone6", "too-hot", Some("150001\n"));
        write_zone(root, "thermal_zone7", "PMIC-Die", Some("100000\n"));
        write_zone(root, "cooling_device0", "Processor", Some("0\n"));
        // A `temp` that is a directory fails to read, as an offline sensor does.
        write_zone(root, "thermal_zone8", "unreadable", None);
        fs::create_dir(root.join("sys/class/thermal/thermal_zone8/temp")).expect("mkdir");

        let zones = read_zones(root).expect("thermal class readable");
        let names: Vec<_> = zones.iter().map(|z| z.zone.as_str()).collect();
        assert_eq!(names, ["thermal_zone2", "thermal_zone7", "thermal_zone10"]);
        assert_eq!(zones[1].temperature_c, 100.0);
        // PMIC-Die is listed but is not the hottest.
        assert_eq!(hottest(&zones), Some(51.3));
    }

    #[test]
    fn range_limits_are_inclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_zone(dir.path(), "thermal_zone0", "cold", Some("-40000"));
        write_zone(dir.path(), "thermal_zone1", "hot", Some("150000"));
        let zones = read_zones(dir.path()).expect("thermal class readable");
        assert_eq!(zones.len(), 2);
        assert_eq!(hottest(&zones), Some(150.0));
    }

    #[test]
    fn missing_type_still_reports_the_temperature() {
        let dir = tempfile::tempdir().expect("tempdir");
        let zone = dir.path().join("sys/class/thermal/thermal_zone0");
        fs::create_dir_all(&zone).expect("mkdir");
        fs::write(zone.join("temp"), "41000\n").expect("write");
        let zones = read_zones(dir.path()).expect("thermal class readable");
        assert_eq!(zones[0].kind, "");
        assert_eq!(zones[0].temperature_c, 41.0);
    }

    #[test]
    fn no_thermal_class() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            read_zones(dir.path()).expect("thermal class readable"),
            Vec::new()
        );
        assert_eq!(hottest(&[]), None);
    }
}
