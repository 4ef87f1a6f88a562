//! The sampler: one [`HealthReport`] per call, CPU load measured between calls.

use std::path::{Path, PathBuf};

use super::{
    HealthReport, ProcessReport, ProcessTotals, clock, cpu, kib_to_mib, logged, memory, process,
    round1, thermal, throttled,
};

/// Reads /proc and /sys under `root` ("/" in production; a fixture dir in tests).
///
/// Keeps the previous CPU counters so that each [`sample`](Self::sample) reports the
/// load since the one before.
#[derive(Debug)]
pub struct HealthSampler {
    root: PathBuf,
    state_dir: PathBuf,
    /// `root` is the real "/": the kernel NTP status is asked directly and the
    /// descriptor used to list /proc/self/fd is not counted.
    live: bool,
    prev_cpu: cpu::CpuTimes,
    process_cpu: process::CpuMeter,
}

impl HealthSampler {
    /// A sampler reading under `root` and measuring free disk space on `state_dir`.
    pub fn new(root: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let live = root == Path::new("/");
        HealthSampler {
            root,
            state_dir: state_dir.into(),
            live,
            prev_cpu: cpu::CpuTimes::default(),
            process_cpu: process::CpuMeter::new(process::clock_ticks_per_second()),
        }
    }

    /// One report; CPU percentages are computed against the previous call (the first
    /// call reports the average since boot, and since process start for `process`).
    pub fn sample(&mut self) -> HealthReport {
        let root = self.root.as_path();
        let uptime_s = logged(cpu::read_uptime(root));

        let cpu_percent = match logged(cpu::read_cpu_times(root)) {
            Some(now) => {
                let percent = now.busy_percent_since(self.prev_cpu);
                self.prev_cpu = now;
                round1(percent)
            }
            None => 0.0,
        };

        let mem = logged(memory::read_meminfo(root));
        let temperatures = logged(thermal::read_zones(root)).unwrap_or_default();

        HealthReport {
            uptime_s: uptime_s.unwrap_or(0.0),
            cpu_percent,
            load1: logged(cpu::read_load1(root)).unwrap_or(0.0),
            mem_total_mb: mem.map_or(0.0, |m| kib_to_mib(m.total_kb)),
            mem_available_mb: mem.map_or(0.0, |m| kib_to_mib(m.available_kb)),
            disk_free_mb: memory::disk_free_mb(&self.state_dir),
            temperature_c: thermal::hottest(&temperatures),
            temperatures,
            throttled: logged(throttled::read(root)).flatten(),
            clock_synced: clock::clock_synced(root, self.live),
            process: self.sample_process(uptime_s),
        }
    }

    /// This process's cumulative figures (CPU seconds, start time, memory in bytes,
    /// descriptors and their limit), read afresh: nothing is kept between calls.
    pub fn process_totals(&self) -> ProcessTotals {
        let root = self.root.as_path();
        let status = logged(process::read_status(root)).unwrap_or_default();
        let stat = logged(process::read_stat(root));
        let hz = process::clock_ticks_per_second();
        let boot = logged(cpu::read_boot_time(root));
        ProcessTotals {
            cpu_seconds: stat.map(|s| s.cpu_ticks as f64 / hz),
            start_time_seconds: stat
                .zip(boot)
                .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / hz),
            resident_bytes: status.rss_kb.map(|kb| kb * 1024),
            virtual_bytes: status.vm_size_kb.map(|kb| kb * 1024),
            threads: status.threads,
            open_fds: logged(process::count_fds(root, self.live)),
            max_fds: logged(process::read_max_fds(root)).flatten(),
        }
    }

    fn sample_process(&mut self, uptime_s: Option<f64>) -> ProcessReport {
        let root = self.root.as_path();
        let status = logged(process::read_status(root)).unwrap_or_default();
        let cpu_percent = match (logged(process::read_stat(root)), uptime_s) {
            (Some(stat), Some(uptime)) => round1(self.process_cpu.percent(stat, uptime)),
            _ => 0.0,
        };
        ProcessReport {
            rss_mb: status.rss_kb.map_or(0.0, kib_to_mib),
            cpu_percent,
            threads: status.threads.unwrap_or(0),
            fds: logged(process::count_fds(root, self.live)).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::testdata::{copy_tree, fixture};
    use super::*;

    #[test]
    fn cpu_percent_between_two_snapshots() {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_tree(&fixture("rpi4-bookworm"), dir.path());
        let stat = dir.path().join("proc/stat");
        let original = fs::read_to_string(&stat).expect("read");
        let with_cpu_line = |cpu: &str| {
            let rest = original.split_once('\n').expect("several lines").1;
            format!("{cpu}\n{rest}")
        };
        let mut sampler = HealthSampler::new(dir.path(), dir.path());

        fs::write(&stat, with_cpu_line("cpu  1000 10 500 8000 400 0 90 0 0 0")).expect("write");
        // Since boot: busy 1600 of 10000.
        assert_eq!(sampler.sample().cpu_percent, 16.0);

        // +300 busy (of which 50 guest, already inside user), +800 idle, +100 iowait:
        // 300 of 1200. Counting guest into the total would give 24.0.
        fs::write(
            &stat,
            with_cpu_line("cpu  1200 10 600 8800 500 0 90 0 50 0"),
        )
        .expect("write");
        assert_eq!(sampler.sample().cpu_percent, 25.0);

        // No time passed.
        assert_eq!(sampler.sample().cpu_percent, 0.0);
    }

    #[test]
    fn process_cpu_between_two_snapshots() {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_tree(&fixture("x86-debian12"), dir.path());
        let mut sampler = HealthSampler::new(dir.path(), dir.path());
        assert_eq!(sampler.sample().process.cpu_percent, 27.0);

        // 150 more ticks (1.5 s of CPU) over 6 s of uptime.
        let stat_path = dir.path().join("proc/self/stat");
        let stat = fs::read_to_string(&stat_path).expect("read");
        let stat = stat.replace(" 28541236 4127917 ", " 28541336 4127967 ");
        fs::write(&stat_path, stat).expect("write");
        fs::write(dir.path().join("proc/uptime"), "1209607.84 9402150.02\n").expect("write");
        assert_eq!(sampler.sample().process.cpu_percent, 25.0);
    }

    #[test]
    fn process_totals_from_a_fixture() {
        let totals = HealthSampler::new(fixture("x86-debian12"), "/nonexistent").process_totals();
        // btime 1714703981 + starttime 1473 ticks at 100 Hz.
        let start = totals.start_time_seconds.expect("start time");
        assert!((start - 1714703995.73).abs() < 1e-3, "{start}");
        assert_eq!(
            totals,
            ProcessTotals {
                // utime 28541236 + stime 4127917 ticks.
                cpu_seconds: Some(326691.53),
                start_time_seconds: Some(start),
                resident_bytes: Some(88368 * 1024),
                virtual_bytes: Some(1659460 * 1024),
                threads: Some(27),
                open_fds: Some(11),
                max_fds: Some(1024),
            }
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = HealthSampler::new(dir.path(), dir.path()).process_totals();
        assert_eq!(empty, ProcessTotals::default());
    }

    #[test]
    fn disk_free_on_an_existing_state_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = HealthSampler::new(fixture("x86-debian12"), dir.path()).sample();
        assert!(report.disk_free_mb.is_some_and(|mb| mb >= 0.0));
    }

    #[test]
    fn empty_root_yields_zeros_and_nones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = HealthSampler::new(dir.path(), dir.path().join("missing")).sample();
        assert_eq!(report, HealthReport::default());
        assert_eq!(crate::health::board_info(dir.path()).board_model, None);
    }

    #[test]
    fn garbage_files_yield_zeros_and_nones() {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_tree(&fixture("rpi4-bookworm"), dir.path());
        for file in [
            "proc/stat",
            "proc/uptime",
            "proc/loadavg",
            "proc/meminfo",
            "proc/self/stat",
            "proc/self/status",
            "sys/devices/platform/soc/soc:firmware/get_throttled",
        ] {
            fs::write(dir.path().join(file), "garbage ) 0x\n").expect("write");
        }
        let report = HealthSampler::new(dir.path(), dir.path().join("missing")).sample();
        assert_eq!(report.uptime_s, 0.0);
        assert_eq!(report.cpu_percent, 0.0);
        assert_eq!(report.mem_total_mb, 0.0);
        assert_eq!(report.throttled, None);
        assert_eq!(report.process.rss_mb, 0.0);
        assert_eq!(report.process.cpu_percent, 0.0);
        assert_eq!(report.temperature_c, Some(45.3));
    }

    #[test]
    fn live_system_smoke() {
        let state = tempfile::tempdir().expect("tempdir");
        let mut sampler = HealthSampler::new("/", state.path());
        let first = sampler.sample();
        let second = sampler.sample();
        for report in [&first, &second] {
            assert!(report.uptime_s > 0.0);
            assert!((0.0..=100.0).contains(&report.cpu_percent));
            assert!(report.mem_total_mb > 0.0);
            assert!(report.disk_free_mb.is_some());
            assert!(report.process.threads >= 1);
            assert!(report.process.fds >= 1);
            assert!(report.process.rss_mb > 0.0);
        }
        let totals = sampler.process_totals();
        assert!(totals.cpu_seconds.is_some_and(|s| s >= 0.0));
        assert!(totals.resident_bytes.is_some_and(|b| b > 0));
        assert!(totals.open_fds.is_some_and(|n| n >= 1));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        // The kernel's boot time is rounded to a second.
        assert!(
            totals
                .start_time_seconds
                .is_some_and(|t| t <= now + 1.0 && t > now - 86400.0 * 365.0)
        );
    }
}
