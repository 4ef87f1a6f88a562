//! Clock synchronisation: systemd-timesyncd's flag file, else the kernel NTP status.

use std::path::Path;

/// Created by systemd-timesyncd once it has synchronised the clock since boot.
const TIMESYNCD_FLAG: &str = "run/systemd/timesync/synchronized";

/// `Some(true)` when timesyncd's flag file exists under `root`; otherwise, on the live
/// system only, the kernel's verdict (which chrony and ntpd also keep up to date);
/// `None` when neither can tell.
pub(super) fn clock_synced(root: &Path, live: bool) -> Option<bool> {
    if root.join(TIMESYNCD_FLAG).exists() {
        return Some(true);
    }
    if live { kernel_ntp_synced() } else { None }
}

/// Reads the kernel NTP state with a read-only adjtimex(2): synced unless it answers
/// `TIME_ERROR` or sets `STA_UNSYNC`. Neither std nor nix wraps adjtimex, and nothing
/// in /proc or /sys exposes it.
#[allow(unsafe_code)]
fn kernel_ntp_synced() -> Option<bool> {
    let mut tx = std::mem::MaybeUninit::<libc::timex>::zeroed();
    // SAFETY: `tx` points to a writable, properly aligned `timex`; all-zero bytes are a
    // valid `timex` (plain integers), and `modes == 0` makes the call a pure query that
    // only fills the struct in.
    let state = unsafe { libc::adjtimex(tx.as_mut_ptr()) };
    if state == -1 {
        return None;
    }
    // SAFETY: zero-initialised above and filled by the kernel on success.
    let tx = unsafe { tx.assume_init() };
    Some(ntp_verdict(state, tx.status))
}

/// The kernel's verdict from a successful adjtimex(2): its return value (the clock
/// state, `TIME_OK` ... `TIME_ERROR`) and `timex.status`. Synced unless the state is
/// `TIME_ERROR` or `STA_UNSYNC` is set.
fn ntp_verdict(state: i32, status: i32) -> bool {
    state != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_file_means_synced() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(clock_synced(dir.path(), false), None);
        let flag = dir.path().join(TIMESYNCD_FLAG);
        std::fs::create_dir_all(flag.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&flag, "").expect("write");
        assert_eq!(clock_synced(dir.path(), false), Some(true));
    }

    #[test]
    fn kernel_verdict_needs_no_time_error_and_no_sta_unsync() {
        use libc::{
            STA_FLL, STA_PLL, STA_UNSYNC, TIME_DEL, TIME_ERROR, TIME_INS, TIME_OK, TIME_OOP,
            TIME_WAIT,
        };
        let table = [
            // (adjtimex's return value, timex.status, synced)
            (TIME_OK, 0, true),
            (TIME_OK, STA_PLL, true),
            (TIME_OK, STA_PLL | STA_FLL, true),
            // A leap second pending, in progress or just done: still synced.
            (TIME_INS, STA_PLL, true),
            (TIME_DEL, STA_PLL, true),
            (TIME_OOP, STA_PLL, true),
            (TIME_WAIT, STA_PLL, true),
            (TIME_ERROR, 0, false),
            (TIME_ERROR, STA_PLL, false),
            (TIME_OK, STA_UNSYNC, false),
            (TIME_OK, STA_PLL | STA_UNSYNC, false),
            (TIME_INS, STA_UNSYNC, false),
            (TIME_ERROR, STA_UNSYNC, false),
        ];
        for (state, status, synced) in table {
            assert_eq!(
                ntp_verdict(state, status),
                synced,
                "state {state}, status {status:#x}"
            );
        }
    }
}
