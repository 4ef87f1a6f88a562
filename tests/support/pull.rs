//! RTSP clients pulling from the daemon's local server: GStreamer's `rtspsrc` (TCP) in
//! this process → depayload → parse → decode into an appsink that counts decoded
//! frames, a raw client that plays a stream and then never reads its socket, and
//! `ffprobe`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// One pulling client.
pub struct Puller {
    pipeline: gst::Pipeline,
    decoded: Arc<AtomicU64>,
    /// Whether the first access unit was a keyframe (`None` before the first).
    first_keyframe: Arc<Mutex<Option<bool>>>,
    size: Arc<Mutex<Option<(i32, i32)>>>,
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| gst::init().expect("GStreamer init"));
}

impl Puller {
    /// Starts pulling `url` (with `user`/`password` when given).
    pub fn start(url: &str, credentials: Option<(&str, &str)>) -> Puller {
        init();
        let pipeline = gst::Pipeline::new();
        let src = gst::ElementFactory::make("rtspsrc")
            .property("location", url)
            .property("latency", 0u32)
            .property_from_str("protocols", "tcp")
            .build()
            .expect("rtspsrc");
        if let Some((user, password)) = credentials {
            src.set_property("user-id", user);
            src.set_property("user-pw", password);
        }
        let depay = gst::ElementFactory::make("rtph264depay")
            .build()
            .expect("depay");
        let parse = gst::ElementFactory::make("h264parse")
            .build()
            .expect("parse");
        let decode = gst::ElementFactory::make("avdec_h264")
            .build()
            .expect("avdec_h264");
        let sink = gst_app::AppSink::builder().sync(false).build();
        pipeline
            .add_many([&src, &depay, &parse, &decode, sink.upcast_ref()])
            .expect("add");
        gst::Element::link_many([&depay, &parse, &decode, sink.upcast_ref()]).expect("link");
        let depay_sink = depay.static_pad("sink").expect("depay sink pad");
        src.connect_pad_added(move |_, pad| {
            if !depay_sink.is_linked() {
                let _ = pad.link(&depay_sink);
            }
        });
        let first_keyframe = Arc::new(Mutex::new(None));
        let first = first_keyframe.clone();
        parse.static_pad("src").expect("parse src pad").add_probe(
            gst::PadProbeType::BUFFER,
            move |_, info| {
                if let Some(buffer) = info.buffer() {
                    let mut first = first.lock().expect("lock");
                    if first.is_none() {
                        *first = Some(!buffer.flags().contains(gst::BufferFlags::DELTA_UNIT));
                    }
                }
                gst::PadProbeReturn::Ok
            },
        );
        let decoded = Arc::new(AtomicU64::new(0));
        let size = Arc::new(Mutex::new(None));
        let (count, seen) = (decoded.clone(), size.clone());
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(st) = sample.caps().and_then(|c| c.structure(0)) {
                        let w = st.get::<i32>("width").unwrap_or_default();
                        let h = st.get::<i32>("height").unwrap_or_default();
                        *seen.lock().expect("lock") = Some((w, h));
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline.set_state(gst::State::Playing).expect("play");
        Puller {
            pipeline,
            decoded,
            first_keyframe,
            size,
        }
    }

    /// Frames decoded so far.
    pub fn decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }

    pub fn first_keyframe(&self) -> Option<bool> {
        *self.first_keyframe.lock().expect("lock")
    }

    /// Width and height of the decoded frames.
    pub fn size(&self) -> Option<(i32, i32)> {
        *self.size.lock().expect("lock")
    }

    /// The first error on the pipeline's bus so far, if any.
    pub fn error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop() {
            if let gst::MessageView::Error(e) = msg.view() {
                return Some(e.error().to_string());
            }
        }
        None
    }

    /// Waits until `n` frames were decoded; false after `timeout` or an error.
    pub fn wait_decoded(&self, n: u64, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let bus = self.pipeline.bus().expect("bus");
        while self.decoded() < n {
            if Instant::now() >= deadline {
                return Err(format!("{} frames decoded, {n} expected", self.decoded()));
            }
            if let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(50),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            ) {
                return Err(format!("{:?}", msg.view()));
            }
        }
        Ok(())
    }
}

impl Drop for Puller {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A client that plays `path` over TCP (interleaved) and then never reads again: its
/// socket's receive buffer fills and the server's sends to it stall.
pub struct StalledClient {
    _stream: TcpStream,
}

impl StalledClient {
    pub fn start(port: u16, path: &str) -> StalledClient {
        let socket = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::empty(),
            None,
        )
        .expect("socket");
        // A small receive buffer fills in a fraction of a second.
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &4096)
            .expect("SO_RCVBUF");
        let addr = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, port);
        nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&socket), &addr)
            .expect("connect");
        let stream = TcpStream::from(socket);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let url = format!("rtsp://127.0.0.1:{port}{path}");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream.try_clone().expect("clone");
        let mut request = |text: String| -> Vec<String> {
            writer.write_all(text.as_bytes()).expect("send");
            read_response(&mut reader)
        };
        let describe = request(format!(
            "DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
        ));
        assert!(describe[0].contains("200"), "DESCRIBE: {describe:?}");
        let setup = request(format!(
            "SETUP {url}/stream=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        ));
        assert!(setup[0].contains("200"), "SETUP: {setup:?}");
        let session = setup
            .iter()
            .find_map(|l| l.strip_prefix("Session: "))
            .map(|s| s.split(';').next().unwrap_or(s).to_owned())
            .expect("Session header");
        let play = request(format!(
            "PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n"
        ));
        assert!(play[0].contains("200"), "PLAY: {play:?}");
        StalledClient { _stream: stream }
    }
}

/// Reads one RTSP response (header lines and any body), returning the header lines.
fn read_response(reader: &mut impl BufRead) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read response") == 0 {
            break;
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let length = lines
        .iter()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    lines
}

/// ffprobe's count of decoded frames and size over `seconds` of `url`.
pub fn ffprobe(url: &str, seconds: u32) -> Result<(u64, u64, u64), String> {
    // Bounded: a client that gets no answer (plain RTSP to an RTSPS port) waits forever.
    let out = Command::new("timeout")
        .args(["20", "ffprobe", "-timeout", "5000000"])
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v",
        ])
        .args(["-count_frames", "-read_intervals", &format!("%+{seconds}")])
        .args([
            "-show_entries",
            "stream=width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(url)
        .output()
        .map_err(|e| format!("ffprobe: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let fields: Vec<u64> = text.split(',').filter_map(|f| f.parse().ok()).collect();
    match (out.status.success(), fields.as_slice()) {
        (true, [w, h, n]) => Ok((*w, *h, *n)),
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr.lines().take(5).collect::<Vec<_>>().join(" | ");
            Err(format!("ffprobe {url}: {} {text} {tail}", out.status))
        }
    }
}
