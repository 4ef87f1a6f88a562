//! A stream's local recording settings (`[stream.record]`): when to record, how much
//! disk it may take, and whether what an outage recorded is published afterwards.

use serde::{Deserialize, Serialize};

use super::Invalid;

/// When a stream records to the state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordMode {
    /// Never.
    Off,
    /// While the output is not delivering (with a pre-roll of the seconds before).
    Outage,
    /// Continuously; retention by `max_disk_mb` and `keep_free_mb`.
    Always,
}

impl RecordMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordMode::Off => "off",
            RecordMode::Outage => "outage",
            RecordMode::Always => "always",
        }
    }
}

/// `[stream.record]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    pub mode: RecordMode,
    /// Publish what an outage recorded once the upstream is back.
    pub backfill: bool,
    /// Disk budget of this stream's recordings, MiB; the oldest are deleted first.
    pub max_disk_mb: u32,
    /// Recording stops while the filesystem has less than this free (beyond room for
    /// the next segment), MiB; it resumes when the space is back.
    pub keep_free_mb: u32,
    /// Length of a recording segment, seconds (segments start at keyframes).
    pub segment_s: u32,
    /// Seconds before an outage kept in memory and recorded with it.
    pub preroll_s: u32,
    /// Appended to the live upstream's path (RTSP, RTMP) or stream id (SRT) for the
    /// backfill session: `/backfill` makes a sub-path (MediaMTX); a suffix without `/`,
    /// such as `_backfill`, names a sibling (nginx-rtmp, whose streams hold no `/`).
    pub backfill_path: String,
    /// The highest rate a backfill is sent at, kbit/s.
    pub backfill_kbps: u32,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            mode: RecordMode::Off,
            backfill: true,
            max_disk_mb: 1024,
            keep_free_mb: 256,
            segment_s: 10,
            preroll_s: 5,
            backfill_path: "/backfill".into(),
            backfill_kbps: 4000,
        }
    }
}

impl RecordConfig {
    /// Checks the section; `key` makes the dotted key of a field.
    pub fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<(), Invalid> {
        let range = |field: &str, v: u32, min: u32, max: u32| {
            if (min..=max).contains(&v) {
                Ok(())
            } else {
                Err(Invalid::new(
                    key(field),
                    format!("{v} is out of range {min}..={max}"),
                ))
            }
        };
        range("record.max_disk_mb", self.max_disk_mb, 1, 10_000_000)?;
        range("record.keep_free_mb", self.keep_free_mb, 0, 10_000_000)?;
        range("record.segment_s", self.segment_s, 2, 600)?;
        range("record.preroll_s", self.preroll_s, 0, 60)?;
        range("record.backfill_kbps", self.backfill_kbps, 64, 1_000_000)?;
        let path = &self.backfill_path;
        let valid = (1..=64).contains(&path.len())
            && !path.trim_start_matches('/').is_empty()
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        if !valid {
            return Err(Invalid::new(
                key("record.backfill_path"),
                format!(
                    "{} must be 1 to 64 characters of A-Z a-z 0-9 - _ . / (not only /)",
                    super::quote(path)
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(change: impl FnOnce(&mut RecordConfig)) -> Result<(), Invalid> {
        let mut c = RecordConfig::default();
        change(&mut c);
        c.validate(&|f| format!("stream[0].{f}"))
    }

    #[test]
    fn keys_are_checked_by_name() {
        assert_eq!(check(|_| {}), Ok(()));
        for path in ["/backfill", "_backfill", "-bf", "/a/b.c"] {
            assert_eq!(check(|c| c.backfill_path = path.into()), Ok(()), "{path}");
        }
        for path in ["", "/", "//", "/a b", "/ü", &"x".repeat(65)] {
            let err = check(|c| c.backfill_path = path.into()).expect_err(path);
            assert_eq!(err.key, "stream[0].record.backfill_path");
        }
        let err = check(|c| c.segment_s = 1).expect_err("segment_s 1");
        assert_eq!(err.key, "stream[0].record.segment_s");
        let err = check(|c| c.backfill_kbps = 10).expect_err("backfill_kbps 10");
        assert_eq!(err.key, "stream[0].record.backfill_kbps");
    }
}
