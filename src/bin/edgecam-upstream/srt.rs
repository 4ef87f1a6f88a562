//! SRT side: an `srtsrc` in listener mode whose MPEG-TS is demuxed into H.264 access units;
//! each caller is one session.
//!
//! srtsrc serves one caller at a time and ends its stream (EOS, or an error) when that
//! caller goes, so the pipeline is rebuilt for the next caller: every caller meets fresh
//! demuxer and parser state. A frame's media time is its PTS from the transport stream,
//! its arrival the moment it leaves the parser.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;

use crate::age::FrameTime;
use crate::sessions::{Origin, Shared};

/// Path of a session whose caller sent no stream id.
const DEFAULT_PATH: &str = "srt";
/// Wait before building the pipeline again when a rebuild failed (the port still held).
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// What the listener was asked for.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: String,
    /// A fixed port; [`free_port`] turns 0 into one.
    pub port: u16,
    /// Callers must encrypt with this passphrase (AES-128) when set.
    pub passphrase: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SrtError {
    #[error("picking a free UDP port on {bind}: {source}")]
    Port {
        bind: String,
        source: std::io::Error,
    },
    #[error("building the SRT pipeline: {0}")]
    Launch(#[from] glib::Error),
    #[error("the SRT pipeline has no element {0}")]
    Missing(&'static str),
    #[error("watching the SRT pipeline's bus: {0}")]
    Watch(#[from] glib::BoolError),
    #[error("starting the SRT listener on port {port}: {source}")]
    Start {
        port: u16,
        source: gst::StateChangeError,
    },
}

/// A UDP port on `bind` that was free a moment ago: srtsrc cannot report the port it
/// bound, so 0 is resolved before it starts.
pub fn free_port(bind: &str) -> Result<u16, SrtError> {
    UdpSocket::bind((bind, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|source| SrtError::Port {
            bind: bind.to_string(),
            source,
        })
}

/// The caller of one pipeline instance.
#[derive(Debug, Default)]
struct Caller {
    stream_id: Option<String>,
    session: Option<u64>,
    /// Its session has ended: frames still in flight are not a new caller.
    ended: bool,
}

struct Running {
    generation: u64,
    pipeline: gst::Pipeline,
    _watch: gst::bus::BusWatchGuard,
    caller: Arc<Mutex<Caller>>,
}

/// The SRT listener: its settings and the pipeline serving the current (or next) caller.
pub struct Listener {
    settings: Settings,
    shared: Arc<Shared>,
    generation: AtomicU64,
    running: Mutex<Option<Running>>,
}

impl Listener {
    /// Starts listening on `settings.port` (which must not be 0).
    pub fn start(settings: Settings, shared: Arc<Shared>) -> Result<Arc<Listener>, SrtError> {
        let listener = Arc::new(Listener {
            settings,
            shared,
            generation: AtomicU64::new(0),
            running: Mutex::new(None),
        });
        let running = listener.build()?;
        *listener.lock() = Some(running);
        Ok(listener)
    }

    /// The UDP port it listens on.
    pub fn port(&self) -> u16 {
        self.settings.port
    }

    /// Stops the pipeline and ends its caller's session.
    pub fn stop(&self) {
        let running = self.lock().take();
        if let Some(r) = running {
            self.finish(r);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn build(self: &Arc<Self>) -> Result<Running, SrtError> {
        let s = &self.settings;
        // authentication=true: srtsrc 1.22 asks `caller-connecting` (which carries the
        // stream id) only when the property was set, whatever its documented default.
        // ignore-pcr: tsdemux would otherwise fit the stream's clock to srtsrc's arrival
        // times, and a stream falling behind would show no age.
        let launch = format!(
            "srtsrc name=src authentication=true uri=srt://{}:{}?mode=listener \
             ! tsdemux ignore-pcr=true ! h264parse config-interval=-1 \
             ! video/x-h264,stream-format=byte-stream,alignment=au \
             ! appsink name=sink sync=false async=false emit-signals=false",
            s.bind, s.port
        );
        let pipeline = gst::parse::launch(&launch)?
            .downcast::<gst::Pipeline>()
            .map_err(|_| SrtError::Missing("pipeline"))?;
        let by_name = |name: &'static str| pipeline.by_name(name).ok_or(SrtError::Missing(name));
        let (src, sink) = (by_name("src")?, by_name("sink")?);
        let sink = sink
            .downcast::<gst_app::AppSink>()
            .map_err(|_| SrtError::Missing("appsink"))?;
        if let Some(pass) = &s.passphrase {
            src.set_property("passphrase", pass);
            src.set_property_from_str("pbkeylen", "16");
        }

        let caller = Arc::new(Mutex::new(Caller::default()));
        self.watch_callers(&src, &caller);
        let (sh, c) = (self.shared.clone(), caller.clone());
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    if let Ok(sample) = sink.pull_sample() {
                        on_sample(&sh, &c, &sample);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );

        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let weak = Arc::downgrade(self);
        let watch = pipeline
            .bus()
            .ok_or(SrtError::Missing("bus"))?
            .add_watch(move |_, msg| {
                use gst::MessageView;
                match msg.view() {
                    MessageView::Eos(_) => rebuild_soon(&weak, generation, None),
                    MessageView::Error(e) => rebuild_soon(&weak, generation, Some(&e.error())),
                    _ => {}
                }
                glib::ControlFlow::Continue
            })?;
        if let Err(source) = pipeline.set_state(gst::State::Playing) {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(SrtError::Start {
                port: s.port,
                source,
            });
        }
        Ok(Running {
            generation,
            pipeline,
            _watch: watch,
            caller,
        })
    }

    /// Sessions follow srtsrc's callers: the stream id comes with the connection request,
    /// the session starts once the caller is accepted and ends when it is removed.
    fn watch_callers(&self, src: &gst::Element, caller: &Arc<Mutex<Caller>>) {
        let c = caller.clone();
        src.connect("caller-connecting", false, move |args| {
            let id = args.get(2).and_then(|v| v.get::<Option<String>>().ok());
            lock_caller(&c).stream_id = id.flatten().filter(|s| !s.is_empty());
            Some(true.to_value())
        });
        let (sh, c) = (self.shared.clone(), caller.clone());
        src.connect("caller-added", false, move |_| {
            session_of(&sh, &c);
            None
        });
        let (sh, c) = (self.shared.clone(), caller.clone());
        src.connect("caller-removed", false, move |_| {
            end_caller(&sh, &c);
            None
        });
    }

    /// Replaces the pipeline of `generation` by a fresh one, unless that already happened.
    /// Runs on the main loop, as does `stop`.
    fn rebuild(self: &Arc<Self>, generation: u64) {
        let old = {
            let mut running = self.lock();
            if running.as_ref().map(|r| r.generation) != Some(generation) {
                return;
            }
            running.take()
        };
        if let Some(r) = old {
            self.finish(r);
        }
        self.install();
    }

    /// Builds and starts a pipeline; after a failure, tries again after `RETRY_DELAY`.
    fn install(self: &Arc<Self>) {
        match self.build() {
            Ok(r) => *self.lock() = Some(r),
            Err(e) => {
                eprintln!("edgecam-upstream: SRT listener: {e}; retrying");
                let weak = Arc::downgrade(self);
                glib::timeout_add_once(RETRY_DELAY, move || {
                    if let Some(l) = weak.upgrade()
                        && l.lock().is_none()
                    {
                        l.install();
                    }
                });
            }
        }
    }

    fn finish(&self, r: Running) {
        let _ = r.pipeline.set_state(gst::State::Null);
        end_caller(&self.shared, &r.caller);
    }
}

/// Called from the bus watch: the rebuild runs from the main loop, outside the watch it
/// removes.
fn rebuild_soon(listener: &Weak<Listener>, generation: u64, error: Option<&glib::Error>) {
    if let Some(e) = error {
        eprintln!("edgecam-upstream: SRT pipeline: {e}");
    }
    let weak = listener.clone();
    glib::idle_add_once(move || {
        if let Some(l) = weak.upgrade() {
            l.rebuild(generation);
        }
    });
}

fn lock_caller(caller: &Mutex<Caller>) -> MutexGuard<'_, Caller> {
    caller.lock().unwrap_or_else(|e| e.into_inner())
}

/// The session of the pipeline's caller, started on first need; `None` once it ended.
fn session_of(shared: &Shared, caller: &Mutex<Caller>) -> Option<u64> {
    let mut c = lock_caller(caller);
    if c.ended {
        return None;
    }
    if c.session.is_none() {
        let path = c.stream_id.clone().unwrap_or_else(|| DEFAULT_PATH.into());
        c.session = Some(shared.start_session(path, Origin::Srt));
    }
    c.session
}

fn end_caller(shared: &Shared, caller: &Mutex<Caller>) {
    let mut c = lock_caller(caller);
    c.ended = true;
    if let Some(id) = c.session.take() {
        shared.end_sessions(|sid, _| sid == id);
    }
}

fn on_sample(shared: &Shared, caller: &Mutex<Caller>, sample: &gst::Sample) {
    let Some(id) = session_of(shared, caller) else {
        return;
    };
    let time = sample.buffer().and_then(|b| b.pts()).map(|pts| FrameTime {
        arrival_s: shared.now_s(),
        media_s: pts.nseconds() as f64 / 1e9,
    });
    shared.on_frame(id, sample, time);
}
