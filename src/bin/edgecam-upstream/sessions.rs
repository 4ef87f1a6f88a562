//! Session registry: one entry per publish, counting what arrived, recording it, and
//! writing the JSON-lines reports.
//!
//! Capture times, from the capture-time SEI of each frame ([`edgecam::pipeline::sei`]),
//! are reported in fields of their own beside the others: in `stats` and
//! `session_end`, `captured_frames` (frames that carried one), `capture_first_us` and
//! `capture_last_us` (µs since the Unix epoch, null before the first) and
//! `capture_backwards` (frames whose capture time was not after the previous one's); in
//! `stats` only, for the frames of the window, `capture_us` (their capture times in
//! arrival order) and `capture_age_p50_ms`, `capture_age_p95_ms`, `capture_age_max_ms`
//! (arrival on the receiver's wall clock minus capture time, null when none carried
//! one). Unlike the `age_*` fields, a capture age is absolute: it includes the sender's
//! encode and send, and any offset between the two machines' clocks.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use edgecam::pipeline::h264::contains_idr;
use edgecam::pipeline::sei;
use gstreamer as gst;
use serde::Serialize;

use crate::age::{AgeMeter, AgeSummary, FrameTime, tenth};
use crate::capture::{CaptureAgeSummary, CaptureMeter, CaptureTotals, capture_age_ms};

/// Where a session comes from, to match the events that end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// A publish over RTSP by the `RTSPClient` at this address (TEARDOWN, connection close).
    Rtsp { client: usize },
    /// A caller of the SRT listener.
    #[default]
    Srt,
}

/// What arrived since the previous `stats` line of a session.
struct Window {
    since: Instant,
    frames: u64,
    bytes: u64,
    ages_ms: Vec<f64>,
    capture_us: Vec<u64>,
    capture_ages_ms: Vec<f64>,
}

impl Window {
    fn new(since: Instant) -> Window {
        Window {
            since,
            frames: 0,
            bytes: 0,
            ages_ms: Vec::new(),
            capture_us: Vec::new(),
            capture_ages_ms: Vec::new(),
        }
    }
}

/// One active publish session: what has been received so far.
#[derive(Default)]
pub struct Session {
    path: String,
    pub origin: Origin,
    first_frame_at: Option<Instant>,
    frames: u64,
    keyframes: u64,
    bytes: u64,
    first_idr: bool,
    pts_monotonic: bool,
    pts_backwards: u64,
    pts_missing: u64,
    first_pts: Option<gst::ClockTime>,
    last_pts: Option<gst::ClockTime>,
    width: i32,
    height: i32,
    file: Option<(PathBuf, BufWriter<File>)>,
    torn_down: bool,
    ages: AgeMeter,
    captures: CaptureMeter,
    /// From the first frame on.
    window: Option<Window>,
}

#[derive(Default)]
pub struct Registry {
    next_id: u64,
    sessions: BTreeMap<u64, Session>,
}

/// State shared by the main loop, the RTSP signal handlers and the streaming threads.
pub struct Shared {
    start: Instant,
    record_dir: Option<PathBuf>,
    registry: Mutex<Registry>,
}

#[derive(Serialize)]
struct Line<'a, B: Serialize> {
    event: &'a str,
    t: f64,
    #[serde(flatten)]
    body: B,
}

#[derive(Serialize)]
struct SessionRef<'a> {
    session: u64,
    path: &'a str,
}

#[derive(Serialize)]
struct FirstFrame<'a> {
    session: u64,
    path: &'a str,
    idr: bool,
    width: i32,
    height: i32,
}

/// Counts over the whole session, in `stats` and `session_end`.
#[derive(Serialize)]
struct Totals<'a> {
    session: u64,
    path: &'a str,
    frames: u64,
    keyframes: u64,
    bytes: u64,
    first_idr: bool,
    pts_monotonic: bool,
    pts_backwards: u64,
    pts_missing: u64,
    width: i32,
    height: i32,
    fps: f64,
    elapsed_s: f64,
    #[serde(flatten)]
    capture: CaptureTotals,
}

#[derive(Serialize)]
struct Stats<'a> {
    #[serde(flatten)]
    totals: Totals<'a>,
    window_frames: u64,
    window_kbps: f64,
    age_ms: Vec<f64>,
    #[serde(flatten)]
    window_ages: AgeSummary,
    capture_us: Vec<u64>,
    #[serde(flatten)]
    capture_ages: CaptureAgeSummary,
}

#[derive(Serialize)]
struct End<'a> {
    #[serde(flatten)]
    totals: Totals<'a>,
    /// Bytes over `elapsed_s`.
    kbps: f64,
    #[serde(flatten)]
    ages: AgeSummary,
    file: Option<String>,
}

impl Shared {
    pub fn new(record_dir: Option<PathBuf>) -> Shared {
        Shared {
            start: Instant::now(),
            record_dir,
            registry: Mutex::new(Registry::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock must not silence every later report.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seconds on the monotonic clock since the receiver started: arrival times.
    pub fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Writes one JSON line to stdout and flushes it; a closed stdout is ignored.
    pub fn emit<B: Serialize>(&self, event: &str, body: B) {
        let t = self.start.elapsed().as_secs_f64();
        let Ok(text) = serde_json::to_string(&Line { event, t, body }) else {
            return;
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    pub fn start_session(&self, path: String, origin: Origin) -> u64 {
        let mut reg = self.lock();
        reg.next_id += 1;
        let id = reg.next_id;
        self.emit(
            "session_start",
            SessionRef {
                session: id,
                path: &path,
            },
        );
        let session = Session {
            path,
            origin,
            pts_monotonic: true,
            ..Default::default()
        };
        reg.sessions.insert(id, session);
        id
    }

    /// Opens the recording of a session; created on its first frame so that sessions
    /// which never get one leave no empty file behind.
    fn create_file(&self, id: u64, path: &str) -> Option<(PathBuf, BufWriter<File>)> {
        let dir = self.record_dir.as_ref()?;
        let file_path = dir.join(format!("{}-{id}.h264", file_stem(path)));
        match File::create(&file_path) {
            Ok(f) => Some((file_path, BufWriter::new(f))),
            Err(e) => {
                eprintln!(
                    "edgecam-upstream: cannot create {}: {e}",
                    file_path.display()
                );
                None
            }
        }
    }

    /// Counts (and records) one access unit; `time` places it for its age.
    pub fn on_frame(&self, id: u64, sample: &gst::Sample, time: Option<FrameTime>) {
        let arrival = SystemTime::now();
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let Ok(map) = buffer.map_readable() else {
            return;
        };
        let data = map.as_slice();
        let idr = contains_idr(data);
        let capture_us = sei::capture_time(data);
        let mut reg = self.lock();
        let Some(s) = reg.sessions.get_mut(&id) else {
            return;
        };
        if let Some(st) = sample.caps().and_then(|c| c.structure(0)) {
            s.width = st.get::<i32>("width").unwrap_or(s.width);
            s.height = st.get::<i32>("height").unwrap_or(s.height);
        }
        match (buffer.pts(), s.last_pts) {
            (None, _) => {
                s.pts_missing += 1;
                s.pts_monotonic = false;
            }
            (Some(pts), Some(last)) if pts <= last => {
                s.pts_backwards += 1;
                s.pts_monotonic = false;
            }
            _ => {}
        }
        if let Some(pts) = buffer.pts() {
            s.first_pts.get_or_insert(pts);
            s.last_pts = Some(pts);
        }
        s.frames += 1;
        s.bytes += data.len() as u64;
        if idr {
            s.keyframes += 1;
        }
        let now = Instant::now();
        let window = s.window.get_or_insert_with(|| Window::new(now));
        window.frames += 1;
        window.bytes += data.len() as u64;
        if let Some(t) = time {
            window.ages_ms.push(s.ages.record(t));
        }
        if let Some(c) = capture_us {
            s.captures.record(c);
            window.capture_us.push(c);
            window
                .capture_ages_ms
                .push(capture_age_ms(unix_us(arrival), c));
        }
        if s.frames == 1 {
            s.first_idr = idr;
            s.first_frame_at = Some(now);
            s.file = self.create_file(id, &s.path);
            let body = FirstFrame {
                session: id,
                path: &s.path,
                idr,
                width: s.width,
                height: s.height,
            };
            self.emit("first_frame", body);
        }
        if let Some((path, f)) = s.file.as_mut()
            && let Err(e) = f.write_all(data)
        {
            eprintln!(
                "edgecam-upstream: write {} failed: {e}; recording stopped",
                path.display()
            );
            s.file = None;
        }
    }

    pub fn teardown_client(&self, client: usize) {
        let mut reg = self.lock();
        for (&id, s) in reg.sessions.iter_mut() {
            if s.origin == (Origin::Rtsp { client }) && !s.torn_down {
                s.torn_down = true;
                self.emit(
                    "teardown",
                    SessionRef {
                        session: id,
                        path: &s.path,
                    },
                );
            }
        }
    }

    /// Ends (reports and forgets) every session matching `pred`, so each ends exactly once.
    pub fn end_sessions(&self, pred: impl Fn(u64, &Session) -> bool) {
        let mut reg = self.lock();
        let ids: Vec<u64> = reg
            .sessions
            .iter()
            .filter(|(id, s)| pred(**id, s))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(mut s) = reg.sessions.remove(&id) else {
                continue;
            };
            let file = s.file.take().map(|(path, mut f)| {
                if let Err(e) = f.flush() {
                    eprintln!("edgecam-upstream: flush {} failed: {e}", path.display());
                }
                path.display().to_string()
            });
            let totals = totals_of(id, &s);
            let kbps = if totals.elapsed_s > 0.0 {
                tenth(s.bytes as f64 * 8.0 / 1000.0 / totals.elapsed_s)
            } else {
                0.0
            };
            let ages = s.ages.summary();
            self.emit(
                "session_end",
                End {
                    totals,
                    kbps,
                    ages,
                    file,
                },
            );
        }
    }

    /// One `stats` line for each session that has had a frame, frames in the last window
    /// or not: a frozen stream shows as `window_frames` 0.
    pub fn emit_stats(&self) {
        let mut reg = self.lock();
        let now = Instant::now();
        for (&id, s) in reg.sessions.iter_mut() {
            let Some(window) = s.window.as_mut() else {
                continue;
            };
            let window = std::mem::replace(window, Window::new(now));
            let span = now.duration_since(window.since).as_secs_f64();
            let window_kbps = if span > 0.0 {
                tenth(window.bytes as f64 * 8.0 / 1000.0 / span)
            } else {
                0.0
            };
            let stats = Stats {
                totals: totals_of(id, s),
                window_frames: window.frames,
                window_kbps,
                window_ages: AgeSummary::of(&window.ages_ms),
                age_ms: window.ages_ms.into_iter().map(tenth).collect(),
                capture_ages: CaptureAgeSummary::of(&window.capture_ages_ms),
                capture_us: window.capture_us,
            };
            self.emit("stats", stats);
        }
    }
}

/// A recording's file name stem for a session path or SRT stream id: '/' and anything
/// else outside `A-Z a-z 0-9 . _ -` become '_', leading '_' are dropped, "root" if empty.
fn file_stem(path: &str) -> String {
    let safe: String = path
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match safe.trim_start_matches('_') {
        "" => "root".into(),
        stem => stem.into(),
    }
}

fn totals_of(id: u64, s: &Session) -> Totals<'_> {
    let span = match (s.first_pts, s.last_pts) {
        (Some(a), Some(b)) if b > a => (b - a).nseconds() as f64 / 1e9,
        _ => 0.0,
    };
    let fps = if s.frames > 1 && span > 0.0 {
        (s.frames - 1) as f64 / span
    } else {
        0.0
    };
    Totals {
        session: id,
        path: &s.path,
        frames: s.frames,
        keyframes: s.keyframes,
        bytes: s.bytes,
        first_idr: s.first_idr,
        pts_monotonic: s.pts_monotonic,
        pts_backwards: s.pts_backwards,
        pts_missing: s.pts_missing,
        width: s.width,
        height: s.height,
        fps,
        elapsed_s: s.first_frame_at.map_or(0.0, |t| t.elapsed().as_secs_f64()),
        capture: s.captures.totals(),
    }
}

/// µs since the Unix epoch; 0 for a clock set before it.
fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems() {
        assert_eq!(file_stem("/test/cam"), "test_cam");
        assert_eq!(file_stem("/"), "root");
        assert_eq!(file_stem(""), "root");
        assert_eq!(
            file_stem("#!::r=live/cam,m=publish"),
            "r_live_cam_m_publish"
        );
        assert_eq!(file_stem("../x"), ".._x");
    }

    fn keys(v: &serde_json::Value) -> Vec<&str> {
        let mut keys: Vec<&str> = v
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    const TOTALS: [&str; 17] = [
        "session",
        "path",
        "frames",
        "keyframes",
        "bytes",
        "first_idr",
        "pts_monotonic",
        "pts_backwards",
        "pts_missing",
        "width",
        "height",
        "fps",
        "elapsed_s",
        "captured_frames",
        "capture_first_us",
        "capture_last_us",
        "capture_backwards",
    ];

    #[test]
    fn stats_and_end_fields() {
        let mut session = Session::default();
        session.captures.record(1_704_067_200_000_000);
        let stats = Stats {
            totals: totals_of(1, &session),
            window_frames: 1,
            window_kbps: 0.0,
            age_ms: vec![],
            window_ages: AgeSummary::default(),
            capture_us: vec![1_704_067_200_000_000],
            capture_ages: CaptureAgeSummary::of(&[12.0]),
        };
        let stats = serde_json::to_value(stats).expect("serialize");
        let mut expected: Vec<&str> = TOTALS.to_vec();
        expected.extend([
            "window_frames",
            "window_kbps",
            "age_ms",
            "age_p50_ms",
            "age_p95_ms",
            "age_max_ms",
            "capture_us",
            "capture_age_p50_ms",
            "capture_age_p95_ms",
            "capture_age_max_ms",
        ]);
        expected.sort_unstable();
        assert_eq!(keys(&stats), expected);
        assert_eq!(
            stats["capture_us"],
            serde_json::json!([1_704_067_200_000_000u64])
        );
        assert_eq!(stats["capture_first_us"], 1_704_067_200_000_000u64);
        assert_eq!(stats["capture_age_max_ms"], 12.0);

        let empty = Session::default();
        let end = End {
            totals: totals_of(1, &empty),
            kbps: 0.0,
            ages: AgeSummary::default(),
            file: None,
        };
        let end = serde_json::to_value(end).expect("serialize");
        let mut expected: Vec<&str> = TOTALS.to_vec();
        expected.extend(["kbps", "age_p50_ms", "age_p95_ms", "age_max_ms", "file"]);
        expected.sort_unstable();
        assert_eq!(keys(&end), expected);
        assert_eq!(end["captured_frames"], 0);
        assert!(end["capture_last_us"].is_null());
    }
}
