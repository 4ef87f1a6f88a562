//! Rebases encoder timestamps onto an output session's clock so PTS/DTS start near the
//! session's running time and never go backwards, across output and capture restarts.

/// Maps capture timestamps (ns) to output timestamps (ns) for one output session.
#[derive(Debug, Default, Clone)]
pub struct Rebaser {
    offset: Option<i128>,
    last_pts: Option<u64>,
    last_dts: Option<u64>,
}

/// Smallest step forced between two output timestamps.
const MIN_STEP_NS: u64 = 1_000;

impl Rebaser {
    /// Forgets the capture origin (the capture pipeline restarted: its clock starts over)
    /// but keeps the last output timestamps so the output stays monotonic.
    pub fn new_capture(&mut self) {
        self.offset = None;
    }

    /// The offset added to capture timestamps, once the first frame fixed it.
    pub fn offset(&self) -> Option<i128> {
        self.offset
    }

    /// Rebases one frame. `output_now` is the output pipeline's running time now; the first
    /// frame after a (re)start is placed there.
    pub fn rebase(&mut self, pts: u64, dts: Option<u64>, output_now: u64) -> (u64, Option<u64>) {
        let origin = dts.map_or(pts, |d| d.min(pts));
        let offset = *self
            .offset
            .get_or_insert(i128::from(output_now) - i128::from(origin));
        let shift = |t: u64| (i128::from(t) + offset).max(0) as u64;
        let pts = Self::after(shift(pts), self.last_pts);
        self.last_pts = Some(pts);
        let dts = dts.map(|d| {
            let d = Self::after(shift(d), self.last_dts).min(pts);
            self.last_dts = Some(d);
            d
        });
        (pts, dts)
    }

    fn after(t: u64, last: Option<u64>) -> u64 {
        match last {
            Some(l) if t <= l => l + MIN_STEP_NS,
            _ => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn first_frame_lands_at_output_now() {
        let mut r = Rebaser::default();
        assert_eq!(
            r.rebase(90 * MS, Some(90 * MS), 5 * MS),
            (5 * MS, Some(5 * MS))
        );
        assert_eq!(
            r.rebase(123 * MS, Some(123 * MS), 0),
            (38 * MS, Some(38 * MS))
        );
    }

    #[test]
    fn capture_restart_keeps_going_forward() {
        let mut r = Rebaser::default();
        r.rebase(10_000 * MS, None, 100 * MS);
        let (last, _) = r.rebase(10_033 * MS, None, 0);
        r.new_capture();
        // The new capture pipeline starts its clock over at 0.
        let (p, _) = r.rebase(0, None, 140 * MS);
        assert!(p > last, "{p} <= {last}");
        let (q, _) = r.rebase(33 * MS, None, 0);
        assert_eq!(q, p + 33 * MS);
    }

    #[test]
    fn backwards_input_is_clamped_forward() {
        let mut r = Rebaser::default();
        let (a, _) = r.rebase(100 * MS, None, 0);
        let (b, _) = r.rebase(50 * MS, None, 0);
        assert!(b > a);
    }

    #[test]
    fn dts_before_pts_stays_non_negative_and_below_pts() {
        let mut r = Rebaser::default();
        let (p, d) = r.rebase(100 * MS, Some(33 * MS), 0);
        assert_eq!(d, Some(0));
        assert_eq!(p, 67 * MS);
        let (p2, d2) = r.rebase(66 * MS, Some(66 * MS), 0);
        assert!(d2.is_some_and(|d| d > 0 && d <= p2));
    }
}
