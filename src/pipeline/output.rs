//! The output pipeline of one publish session: appsrc → h264parse → the protocol's sink
//! (rtspclientsink for RTSP ANNOUNCE/RECORD; mpegtsmux → srtsink for SRT; flvmux →
//! rtmp2sink for RTMP). Restarting it never touches the capture side.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::feed::Feed;
use super::{Counters, PipelineError, add_and_link, make};
use crate::config::Transport;
use crate::delivery::TransportReport;

/// How a session publishes, from its URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Rtsp,
    Srt,
    Rtmp,
}

impl Protocol {
    pub fn of(url: &str) -> Protocol {
        match url.split_once("://").map(|(s, _)| s) {
            Some("srt") => Protocol::Srt,
            Some("rtmp" | "rtmps") => Protocol::Rtmp,
            _ => Protocol::Rtsp,
        }
    }

    /// Whether the session runs over one TCP connection whose socket can be read.
    fn over_tcp(self, transport: Transport) -> bool {
        match self {
            Protocol::Rtsp => transport == Transport::Tcp,
            Protocol::Rtmp => true,
            Protocol::Srt => false,
        }
    }
}

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct OutputParams {
    pub url: String,
    pub transport: Transport,
    /// Caps of the encoded stream (from the capture's appsink).
    pub caps: gst::Caps,
    /// Frames older than this when they would be queued are dropped instead.
    pub max_latency: Duration,
    pub srt_passphrase: Option<String>,
    /// The server's addresses, to find the session's TCP connection by.
    pub peers: Vec<SocketAddr>,
    /// Send frames when their timestamp is due (live); false sends them as soon as they
    /// are pushed, whatever their timestamps (a backfill paced by its sender).
    pub rate_control: bool,
}

/// A publish session's pipeline.
#[derive(Clone)]
pub struct Output {
    pipeline: gst::Pipeline,
    feed: Arc<Feed>,
    protocol: Protocol,
    sink: gst::Element,
    over_tcp: bool,
    confirms: bool,
    peers: Vec<SocketAddr>,
    socket: Arc<Mutex<Option<crate::delivery::TcpSocket>>>,
    /// rtspclientsink's RTP session manager, for RTCP receiver reports.
    rtpbin: Arc<Mutex<Option<gst::Element>>>,
}

impl Output {
    pub fn build(params: &OutputParams, counters: Arc<Counters>) -> Result<Output, PipelineError> {
        let pipeline = gst::Pipeline::with_name("output");
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        let appsrc = gst_app::AppSrc::builder()
            .caps(&params.caps)
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(false)
            .build();
        let protocol = Protocol::of(&params.url);
        let parse = make("h264parse")?;
        parse.set_property("config-interval", -1i32);
        let rtpbin = Arc::new(Mutex::new(None));
        let (chain, sink) = match protocol {
            Protocol::Rtsp => {
                let sink = rtsp_sink(params, rtpbin.clone())?;
                (vec![appsrc.clone().upcast(), parse, sink.clone()], sink)
            }
            Protocol::Srt => {
                let mux = make("mpegtsmux")?;
                // 7 TS packets per buffer: one SRT payload of 1316 bytes.
                mux.set_property("alignment", 7i32);
                let sink = make("srtsink")?;
                sink.set_property("uri", &params.url);
                sink.set_property("sync", false);
                if let Some(phrase) = &params.srt_passphrase {
                    sink.set_property("passphrase", phrase);
                    sink.set_property_from_str("pbkeylen", "16");
                }
                (
                    vec![appsrc.clone().upcast(), parse, mux, sink.clone()],
                    sink,
                )
            }
            Protocol::Rtmp => {
                let mux = make("flvmux")?;
                mux.set_property("streamable", true);
                let sink = make("rtmp2sink")?;
                sink.set_property("location", &params.url);
                sink.set_property("sync", false);
                (
                    vec![appsrc.clone().upcast(), parse, mux, sink.clone()],
                    sink,
                )
            }
        };
        add_and_link(&pipeline, &chain)?;
        if !params.rate_control {
            // rtspclientsink sends over TCP through an appsink it creates at SETUP, synced
            // to the clock (ONVIF "Rate-Control: yes"); its UDP sinks never sync.
            pipeline.connect_deep_element_added(|_, _, element| {
                let is_appsink = element.factory().is_some_and(|f| f.name() == "appsink");
                if is_appsink {
                    element.set_property("sync", false);
                }
            });
        }

        let feed = Arc::new(Feed::new(appsrc, counters, params.max_latency));
        // Frames are counted where they enter the sink (RTSP) or the muxer, bytes where
        // they enter the network sink.
        let frames_pad = chain[2]
            .sink_pads()
            .into_iter()
            .next()
            .or_else(|| chain[1].static_pad("src"));
        if let Some(pad) = frames_pad {
            Self::count_frames(&pad, feed.clone());
        }
        if let Some(pad) = sink.sink_pads().into_iter().next() {
            let feed = feed.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer() {
                    feed.on_written(buffer.size());
                }
                gst::PadProbeReturn::Ok
            });
        }
        let over_tcp = protocol.over_tcp(params.transport);
        Ok(Output {
            pipeline,
            feed,
            protocol,
            sink,
            over_tcp,
            // Asked here, off the runtime: the first answer opens a loopback connection.
            confirms: (over_tcp && crate::delivery::tcp_supported()) || protocol == Protocol::Srt,
            peers: params.peers.clone(),
            socket: Arc::new(Mutex::new(None)),
            rtpbin,
        })
    }

    fn count_frames(pad: &gst::Pad, feed: Arc<Feed>) {
        let clock = gst::SystemClock::obtain();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let latency = buffer.pts().and_then(|pts| feed.latency(pts, clock.time()));
                feed.counters().on_sent(buffer.size(), latency);
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// What the transport reports of the session now: TCP_INFO of its connection, the
    /// SRT sink's statistics, or RTCP receiver reports (RTSP over UDP).
    pub fn transport_report(&self) -> Option<TransportReport> {
        if self.over_tcp {
            let mut socket = self.socket.lock().ok()?;
            if socket.is_none() {
                *socket = crate::delivery::TcpSocket::find(&self.peers, self.feed.written());
            }
            return socket.as_ref()?.report();
        }
        match self.protocol {
            Protocol::Srt => super::transport_stats::srt(&self.sink),
            _ => {
                let rtpbin = self.rtpbin.lock().ok()?.clone()?;
                super::transport_stats::rtcp(&rtpbin)
            }
        }
    }

    /// Sets the pipeline playing; the connection handshake then runs in GStreamer's
    /// threads and failures arrive on the bus. Blocking.
    pub fn start(&self) -> Result<(), PipelineError> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map(|_| ())
            .map_err(|_| PipelineError::Start("output pipeline refused to play".into()))
    }

    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether the transport reports what its peer acknowledged (SRT; TCP where the
    /// kernel gives TCP_INFO's byte counts).
    pub fn confirms(&self) -> bool {
        self.confirms
    }

    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Asks the pipeline to flush what it holds; its bus reports EOS when done.
    pub fn send_eos(&self) {
        self.pipeline.send_event(gst::event::Eos::new());
    }

    /// Asks the sink to close the session: for RTSP, going to READY queues its
    /// TEARDOWN, and the bus reports [`super::BusEvent::SessionClosed`] once it went out.
    /// Blocking.
    pub fn close_session(&self) {
        let _ = self.pipeline.set_state(gst::State::Ready);
    }

    /// Stops the pipeline and drops the connection. Going straight to NULL can cut the
    /// connection before a queued TEARDOWN is sent: call [`Self::close_session`] first
    /// when the session should end cleanly. Blocking.
    pub fn shutdown(&self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn rtsp_sink(
    params: &OutputParams,
    rtpbin: Arc<Mutex<Option<gst::Element>>>,
) -> Result<gst::Element, PipelineError> {
    let sink = make("rtspclientsink")?;
    sink.set_property("location", &params.url);
    sink.set_property_from_str(
        "protocols",
        match params.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        },
    );
    sink.set_property("latency", 0u32);
    // Fail a connection attempt fast; the supervisor decides when to retry.
    sink.set_property("tcp-timeout", 3_000_000u64);
    let capture_time_sync = params.rate_control;
    sink.connect("new-manager", false, move |args| {
        if let Some(manager) = args.get(1).and_then(|v| v.get::<gst::Element>().ok()) {
            // Sender reports relate RTP time to the wall-clock (NTP) time of the frames'
            // timestamps, which a live session keeps at their capture spacing from the
            // first frame's hand-over, rather than to the time of sending.
            if capture_time_sync && manager.find_property("rtcp-sync-send-time").is_some() {
                manager.set_property("rtcp-sync-send-time", false);
            }
            if let Ok(mut slot) = rtpbin.lock() {
                *slot = Some(manager);
            }
        }
        None
    });
    Ok(sink)
}
