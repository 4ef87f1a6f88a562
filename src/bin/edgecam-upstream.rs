//! `edgecam-upstream`: the RECORD-mode RTSP receiver that tests, benchmarks and the demo
//! publish to; it counts (and optionally records) each session and reports JSON lines.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::Parser;
use edgecam::pipeline::h264::contains_idr;
use gst::glib;
use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use nix::sys::signal::{SigSet, Signal};
use rtsp::prelude::*;
use serde::Serialize;

const ABOUT: &str = "RECORD-mode RTSP receiver: accepts H.264 publishes (ANNOUNCE/SETUP/RECORD, \
TCP interleaved or UDP) on any path, counts access units per session and reports JSON lines on stdout.";

const CONTRACT: &str = "\
Stdout carries one JSON object per line, each with \"event\" and \"t\" (seconds since start):
  listening      port                                  the server accepts connections
  session_start  session path                          a publisher's media was created (ANNOUNCE)
  first_frame    session path idr width height         the first access unit of a session
  stats          session path frames keyframes bytes   every second for each session with frames
                 first_idr pts_monotonic pts_backwards
                 pts_missing width height fps elapsed_s
  teardown       session path                          the client sent TEARDOWN
  session_end    the stats fields + file (or null)     exactly once per session, whatever ended it
Sessions are numbered 1, 2, 3... in order of arrival. SIGTERM/SIGINT end all sessions, then exit 0.";

/// Media pipeline of each publish: depayload, parse into one Annex B access unit per buffer, count.
const LAUNCH: &str = "( rtph264depay name=depay0 ! h264parse config-interval=-1 \
! video/x-h264,stream-format=byte-stream,alignment=au \
! appsink name=sink sync=false async=false emit-signals=false )";

#[derive(Parser, Debug)]
#[command(name = "edgecam-upstream", version, about = ABOUT, after_help = CONTRACT)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Port to listen on; 0 picks a free one (reported in the `listening` line).
    #[arg(long, default_value_t = 8554)]
    port: u16,
    /// Write each session's Annex B H.264 stream to DIR/<path with '/' as '_'>-<session>.h264.
    #[arg(long, value_name = "DIR")]
    record_dir: Option<PathBuf>,
}

/// One active publish session: what has been received so far.
#[derive(Default)]
struct Session {
    path: String,
    /// Address of the `RTSPClient` that created it, to match TEARDOWN and connection close.
    client: usize,
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
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// Paths that already have a factory mounted.
    mounted: HashSet<String>,
    sessions: BTreeMap<u64, Session>,
}

/// State shared by the main loop, the RTSP signal handlers and the streaming threads.
struct Shared {
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

#[derive(Serialize)]
struct Stats<'a> {
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
}

#[derive(Serialize)]
struct End<'a> {
    #[serde(flatten)]
    stats: Stats<'a>,
    file: Option<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock must not silence every later report.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes one JSON line to stdout and flushes it; a closed stdout is ignored.
    fn emit<B: Serialize>(&self, event: &str, body: B) {
        let t = self.start.elapsed().as_secs_f64();
        let Ok(text) = serde_json::to_string(&Line { event, t, body }) else {
            return;
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    fn start_session(&self, path: String, client: usize) -> u64 {
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
            client,
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
        let mut stem = path.replace('/', "_").trim_start_matches('_').to_string();
        if stem.is_empty() {
            stem = "root".into();
        }
        let file_path = dir.join(format!("{stem}-{id}.h264"));
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

    fn on_sample(&self, id: u64, sample: &gst::Sample) {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let Ok(map) = buffer.map_readable() else {
            return;
        };
        let data = map.as_slice();
        let idr = contains_idr(data);
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
        if s.frames == 1 {
            s.first_idr = idr;
            s.first_frame_at = Some(Instant::now());
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

    fn teardown_client(&self, client: usize) {
        let mut reg = self.lock();
        for (&id, s) in reg.sessions.iter_mut() {
            if s.client == client && !s.torn_down {
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
    fn end_sessions(&self, pred: impl Fn(u64, &Session) -> bool) {
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
            let stats = stats_of(id, &s);
            self.emit("session_end", End { stats, file });
        }
    }

    fn emit_stats(&self) {
        let reg = self.lock();
        for (&id, s) in reg.sessions.iter().filter(|(_, s)| s.frames > 0) {
            self.emit("stats", stats_of(id, s));
        }
    }
}

fn stats_of(id: u64, s: &Session) -> Stats<'_> {
    let span = match (s.first_pts, s.last_pts) {
        (Some(a), Some(b)) if b > a => (b - a).nseconds() as f64 / 1e9,
        _ => 0.0,
    };
    let fps = if s.frames > 1 && span > 0.0 {
        (s.frames - 1) as f64 / span
    } else {
        0.0
    };
    Stats {
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
    }
}

fn client_key(client: &rtsp::RTSPClient) -> usize {
    client.as_ptr() as usize
}

/// Mounts a RECORD factory at `path` unless one is there already.
fn ensure_mount(shared: &Arc<Shared>, mounts: &rtsp::RTSPMountPoints, path: &str) {
    if !shared.lock().mounted.insert(path.to_string()) {
        return;
    }
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(LAUNCH);
    factory.set_transport_mode(rtsp::RTSPTransportMode::RECORD);
    factory.set_shared(false);
    // No jitter-buffer delay: frames are counted and timed as they arrive (the default
    // 200 ms would be added to every first-frame and age figure).
    factory.set_latency(0);
    let (sh, p) = (shared.clone(), path.to_string());
    factory.connect_media_configure(move |_, media| configure_media(&sh, &p, media));
    mounts.add_factory(path, factory);
}

/// Whether `path` names one stream of a media (`.../stream=0`, as in SETUP) rather than a media.
fn is_stream_control(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|last| last.starts_with("stream="))
}

mod any_path {
    //! Mount points that mount a RECORD factory at every path a client names.
    //!
    //! gst-rtsp-server 1.22 has no catch-all mount point (a factory at "/" does not match
    //! "/a/b") and emits pre-announce-request only after the factory lookup, but ANNOUNCE
    //! (and DESCRIBE) ask the mount points' `make_path` for the path just before that lookup.
    use super::*;
    use gst::glib::subclass::prelude::*;
    use rtsp::subclass::prelude::*;
    use std::sync::OnceLock;

    gst::glib::wrapper! {
        pub struct AnyPathMounts(ObjectSubclass<imp::AnyPathMounts>) @extends rtsp::RTSPMountPoints;
    }

    impl AnyPathMounts {
        pub(super) fn new(shared: Arc<Shared>) -> Self {
            let obj: Self = gst::glib::Object::new();
            // Freshly created object: the cell cannot be set yet.
            let _ = obj.imp().shared.set(shared);
            obj
        }
    }

    mod imp {
        use super::*;

        #[derive(Default)]
        pub struct AnyPathMounts {
            pub(super) shared: OnceLock<Arc<Shared>>,
        }

        #[gst::glib::object_subclass]
        impl ObjectSubclass for AnyPathMounts {
            const NAME: &'static str = "EdgecamAnyPathMounts";
            type Type = super::AnyPathMounts;
            type ParentType = rtsp::RTSPMountPoints;
        }

        impl ObjectImpl for AnyPathMounts {}

        impl RTSPMountPointsImpl for AnyPathMounts {
            fn make_path(&self, url: &rtsp::gst_rtsp::RTSPUrl) -> Option<gst::glib::GString> {
                let path = self.parent_make_path(url)?;
                if let Some(shared) = self.shared.get()
                    && !is_stream_control(&path)
                {
                    ensure_mount(shared, self.obj().upcast_ref(), &path);
                }
                Some(path)
            }
        }
    }
}

/// Called for every media a factory creates, i.e. once per ANNOUNCE.
fn configure_media(shared: &Arc<Shared>, path: &str, media: &rtsp::RTSPMedia) {
    let client = rtsp::RTSPContext::with_current_context(|ctx| ctx.client().map(client_key));
    let id = shared.start_session(path.to_string(), client.flatten().unwrap_or(0));

    let sink = media
        .element()
        .downcast::<gst::Bin>()
        .ok()
        .and_then(|bin| bin.by_name("sink"))
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok());
    match sink {
        Some(sink) => {
            let sh = shared.clone();
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        if let Ok(sample) = sink.pull_sample() {
                            sh.on_sample(id, &sample);
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        None => eprintln!("edgecam-upstream: session {id}: no appsink in media pipeline"),
    }
    let sh = shared.clone();
    media.connect_unprepared(move |_| sh.end_sessions(|sid, _| sid == id));
}

fn run(args: Args) -> Result<(), String> {
    // Block the stop signals before any thread exists so every thread inherits the mask
    // and only the waiter thread below receives them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;

    gst::init().map_err(|e| format!("gstreamer init: {e}"))?;
    if let Some(dir) = &args.record_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let shared = Arc::new(Shared {
        start: Instant::now(),
        record_dir: args.record_dir.clone(),
        registry: Mutex::new(Registry::default()),
    });

    let server = rtsp::RTSPServer::new();
    server.set_address(&args.bind);
    server.set_service(&args.port.to_string());
    server.set_mount_points(Some(&any_path::AnyPathMounts::new(shared.clone())));

    let sh = shared.clone();
    server.connect_client_connected(move |_, client| {
        let s = sh.clone();
        client.connect_teardown_request(move |c, _| s.teardown_client(client_key(c)));
        let s = sh.clone();
        client.connect_closed(move |c| {
            let key = client_key(c);
            s.end_sessions(|_, sess| sess.client == key);
        });
    });

    let _source = server
        .attach(None)
        .map_err(|e| format!("listening on {}:{}: {e}", args.bind, args.port))?;
    #[derive(Serialize)]
    struct Listening {
        port: i32,
    }
    shared.emit(
        "listening",
        Listening {
            port: server.bound_port(),
        },
    );

    let main_loop = glib::MainLoop::new(None, false);
    let ml = main_loop.clone();
    std::thread::spawn(move || {
        if let Ok(sig) = signals.wait() {
            eprintln!("edgecam-upstream: {sig:?}, stopping");
        }
        ml.quit();
    });
    let sh = shared.clone();
    glib::timeout_add(Duration::from_secs(1), move || {
        sh.emit_stats();
        glib::ControlFlow::Continue
    });

    main_loop.run();
    shared.end_sessions(|_, _| true);
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgecam-upstream: {e}");
            ExitCode::FAILURE
        }
    }
}
