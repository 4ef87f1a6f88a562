//! Writes one segment: the encoded frames as they are (no re-encoding) through
//! `appsrc ! mpegtsmux ! appsink` into a `.ts.part` file. MPEG-TS needs no index or
//! trailer: a file cut short by a power loss is readable up to its last whole packet.
//! Write errors (a full disk) are kept and reported by the next call.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Frames keep their capture spacing from this PTS on, so that DTS before PTS stays
/// positive.
const PTS_ORIGIN: u64 = 1_000_000_000;
/// How long finishing waits for the muxer to flush.
const FINISH_WAIT: Duration = Duration::from_secs(2);

/// Why a segment could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("recording pipeline: {0}")]
    Pipeline(String),
}

impl WriteError {
    pub fn is_disk_full(&self) -> bool {
        match self {
            WriteError::Io { source, .. } => super::is_disk_full(source),
            WriteError::Pipeline(_) => false,
        }
    }
}

struct Sink {
    file: Option<BufWriter<File>>,
    error: Option<std::io::Error>,
    bytes: u64,
}

/// One segment being written.
pub struct SegmentWriter {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    appsink: gst_app::AppSink,
    sink: Arc<Mutex<Sink>>,
    path: PathBuf,
    pub start_us: u64,
    pub last_us: u64,
    pub frames: u32,
    /// PTS minus DTS of the first frame's timeline, to keep DTS ≤ PTS.
    first_pts: Option<u64>,
}

impl SegmentWriter {
    /// Creates `path` and a muxer for frames with `caps`. `start_us` is the capture time
    /// of the first frame (a keyframe).
    pub fn create(
        path: &Path,
        caps: &gst::Caps,
        start_us: u64,
    ) -> Result<SegmentWriter, WriteError> {
        let io = |source| WriteError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).map_err(io)?;
        let pipeline = gst::Pipeline::with_name("recording");
        let appsrc = gst_app::AppSrc::builder()
            .caps(caps)
            .format(gst::Format::Time)
            .is_live(false)
            .build();
        let mux = gst::ElementFactory::make("mpegtsmux")
            .build()
            .map_err(|_| WriteError::Pipeline("mpegtsmux missing".into()))?;
        let appsink = gst_app::AppSink::builder()
            .sync(false)
            .enable_last_sample(false)
            .build();
        let pipe_err = |e: gst::glib::BoolError| WriteError::Pipeline(e.to_string());
        pipeline
            .add_many([appsrc.upcast_ref(), &mux, appsink.upcast_ref()])
            .map_err(pipe_err)?;
        gst::Element::link_many([appsrc.upcast_ref(), &mux, appsink.upcast_ref()])
            .map_err(pipe_err)?;
        let sink = Arc::new(Mutex::new(Sink {
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            error: None,
            bytes: 0,
        }));
        let writing = sink.clone();
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(buffer) = sample.buffer() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let Ok(map) = buffer.map_readable() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let mut st = writing.lock().map_err(|_| gst::FlowError::Error)?;
                    if st.error.is_some() {
                        return Err(gst::FlowError::Error);
                    }
                    let result = st.file.as_mut().map(|f| f.write_all(&map));
                    match result {
                        Some(Err(e)) => {
                            st.error = Some(e);
                            Err(gst::FlowError::Error)
                        }
                        _ => {
                            st.bytes += map.len() as u64;
                            Ok(gst::FlowSuccess::Ok)
                        }
                    }
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| WriteError::Pipeline("recording pipeline refused to play".into()))?;
        Ok(SegmentWriter {
            pipeline,
            appsrc,
            appsink,
            sink,
            path: path.to_path_buf(),
            start_us,
            last_us: start_us,
            frames: 0,
            first_pts: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Capture time spanned so far.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.last_us.saturating_sub(self.start_us))
    }

    /// Bytes written to the file so far (the muxer's output).
    pub fn bytes(&self) -> u64 {
        self.sink.lock().map_or(0, |s| s.bytes)
    }

    /// Adds a frame captured at `capture_us`. Its PTS follows its capture time; its DTS
    /// keeps the encoder's distance to PTS.
    pub fn push(&mut self, frame: &gst::Buffer, capture_us: u64) -> Result<(), WriteError> {
        self.check()?;
        let pts = PTS_ORIGIN + capture_us.saturating_sub(self.start_us) * 1000;
        let lead = match (frame.pts(), frame.dts()) {
            (Some(p), Some(d)) => p.nseconds().saturating_sub(d.nseconds()),
            _ => 0,
        };
        self.first_pts.get_or_insert(pts);
        let mut out = frame.copy();
        {
            let b = out.make_mut();
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_dts(gst::ClockTime::from_nseconds(pts.saturating_sub(lead)));
        }
        self.appsrc
            .push_buffer(out)
            .map_err(|e| self.failure(format!("push: {e:?}")))?;
        self.frames += 1;
        self.last_us = self.last_us.max(capture_us);
        Ok(())
    }

    fn check(&self) -> Result<(), WriteError> {
        let mut st = self
            .sink
            .lock()
            .map_err(|_| WriteError::Pipeline("writer lock poisoned".into()))?;
        match st.error.take() {
            Some(source) => Err(WriteError::Io {
                path: self.path.clone(),
                source,
            }),
            None => Ok(()),
        }
    }

    fn failure(&self, what: String) -> WriteError {
        match self.check() {
            Err(e) => e,
            Ok(()) => WriteError::Pipeline(what),
        }
    }

    /// Flushes the muxer and the file; the file is complete once this returns Ok.
    pub fn finish(self) -> Result<(), WriteError> {
        let _ = self.appsrc.end_of_stream();
        let bus = self.pipeline.bus();
        let done = bus.and_then(|b| {
            b.timed_pop_filtered(
                gst::ClockTime::from_nseconds(FINISH_WAIT.as_nanos() as u64),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
        });
        let eos = done.is_some_and(|m| matches!(m.view(), gst::MessageView::Eos(_)));
        let _ = self.pipeline.set_state(gst::State::Null);
        self.check()?;
        if !eos && !self.appsink.is_eos() {
            return Err(WriteError::Pipeline("muxer did not finish in time".into()));
        }
        let mut st = self
            .sink
            .lock()
            .map_err(|_| WriteError::Pipeline("writer lock poisoned".into()))?;
        if let Some(mut f) = st.file.take() {
            f.flush().map_err(|source| WriteError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Stops without finishing (the file is left as it is).
    pub fn abandon(self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Ok(mut st) = self.sink.lock() {
            st.file.take();
        }
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
