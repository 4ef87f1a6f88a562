//! Raspberry Pi firmware throttling: /sys/devices/platform/soc/soc:firmware/get_throttled.

use std::path::Path;

use serde::Serialize;

use super::{HealthError, malformed, read_optional};

const GET_THROTTLED: &str = "sys/devices/platform/soc/soc:firmware/get_throttled";

/// The firmware's throttling word, as `vcgencmd get_throttled` shows it.
///
/// The four flags are the current state (bits 0–3); `raw` also carries the "has
/// occurred since boot" bits 16–19.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Throttled {
    /// Bit 0: supply below 4.63 V now.
    pub under_voltage: bool,
    /// Bit 1: ARM frequency capped now.
    pub freq_capped: bool,
    /// Bit 2: throttled now.
    pub throttled: bool,
    /// Bit 3: soft temperature limit active now.
    pub soft_temp_limit: bool,
    /// The whole word.
    pub raw: u32,
}

impl Throttled {
    /// Decodes the firmware word.
    pub fn from_raw(raw: u32) -> Self {
        Throttled {
            under_voltage: raw & 1 != 0,
            freq_capped: raw & (1 << 1) != 0,
            throttled: raw & (1 << 2) != 0,
            soft_temp_limit: raw & (1 << 3) != 0,
            raw,
        }
    }

    /// Parses hexadecimal text: the kernel prints `50005`, vcgencmd prints
    /// `throttled=0x50005`; both are accepted.
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix("throttled=").unwrap_or(text);
        let hex = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        u32::from_str_radix(hex, 16).ok().map(Self::from_raw)
    }
}

/// `Ok(None)` on boards without the Raspberry Pi firmware driver.
pub(super) fn read(root: &Path) -> Result<Option<Throttled>, HealthError> {
    let path = root.join(GET_THROTTLED);
    let Some(bytes) = read_optional(&path)? else {
        return Ok(None);
    };
    Throttled::parse(&String::from_utf8_lossy(&bytes))
        .map(Some)
        .ok_or_else(|| malformed(&path, "not a hexadecimal number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_current_flags() {
        let t = Throttled::parse("50005\n").expect("parses");
        assert_eq!(
            t,
            Throttled {
                under_voltage: true,
                freq_capped: false,
                throttled: true,
                soft_temp_limit: false,
                raw: 0x50005,
            }
        );
        let soft = Throttled::parse("0x80008").expect("parses");
        assert!(soft.soft_temp_limit && !soft.throttled && !soft.under_voltage);
        // Only "has occurred" bits: nothing is happening now.
        let past = Throttled::parse("throttled=0xf0000\n").expect("parses");
        assert!(!past.under_voltage && !past.freq_capped && !past.throttled);
        assert_eq!(past.raw, 0xf0000);
        assert_eq!(Throttled::parse("0\n").map(|t| t.raw), Some(0));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Throttled::parse(""), None);
        assert_eq!(Throttled::parse("0x"), None);
        assert_eq!(Throttled::parse("zz"), None);
        assert_eq!(Throttled::parse("123456789"), None);
    }

    #[test]
    fn absent_on_other_boards() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path()).expect("absent is not an error"), None);
    }
}
