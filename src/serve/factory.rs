//! The media factory of one served stream: every client gets a media of its own (not
//! shared), `appsrc ! rtph264pay`, fed from the stream's slot like a push session. A
//! client's slowness fills its own appsrc, and its own feed drops frames to the next
//! keyframe for it alone; each session starts at an IDR asked for it. While the stream
//! has not encoded a frame yet the factory has nothing to offer, and the client gets
//! 503.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use rtsp::prelude::*;
use rtsp::subclass::prelude::*;
use tracing::{debug, info};

use super::connections::Connections;
use super::registry::{Registry, Served, ServedSession};
use crate::delivery::DeliveryMeter;
use crate::pipeline::{Counters, Feed};

glib::wrapper! {
    pub struct StreamFactory(ObjectSubclass<imp::StreamFactory>) @extends rtsp::RTSPMediaFactory;
}

impl StreamFactory {
    pub fn new(id: &str, registry: Arc<Registry>, connections: Connections) -> Self {
        let factory: Self = glib::Object::new();
        // A fresh object: the cell is empty.
        let _ = factory
            .imp()
            .source
            .set((id.to_owned(), registry, connections));
        factory.set_shared(false);
        factory.set_suspend_mode(rtsp::RTSPSuspendMode::None);
        factory
    }
}

/// `appsrc name=src ! rtph264pay name=pay0` for frames with `caps`.
fn media_bin(caps: &gst::Caps) -> Result<gst::Element, glib::BoolError> {
    let bin = gst::Bin::with_name("served");
    let appsrc = gst_app::AppSrc::builder()
        .name("src")
        .caps(caps)
        .is_live(true)
        .format(gst::Format::Time)
        .do_timestamp(false)
        .build();
    // The frames already carry SPS/PPS before every IDR (the capture's h264parse): the
    // payloader must not add its own (-1 would put them before each slice of an IDR).
    let pay = gst::ElementFactory::make("rtph264pay")
        .name("pay0")
        .property("pt", 96u32)
        .property("config-interval", 0i32)
        .build()?;
    bin.add_many([appsrc.upcast_ref(), &pay])?;
    appsrc.link(&pay)?;
    Ok(bin.upcast())
}

/// Feeds a new client's media from the stream's slot until the media is unprepared.
fn feed_media(id: &str, served: &Served, connections: &Connections, media: &rtsp::RTSPMedia) {
    let Some(appsrc) = media
        .element()
        .downcast::<gst::Bin>()
        .ok()
        .and_then(|b| b.by_name("src"))
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
    else {
        debug!(stream = %id, "served media without its appsrc");
        return;
    };
    let feed = Arc::new(Feed::new(
        appsrc.clone(),
        served.counters.frames.clone(),
        served.max_latency,
    ));
    if let Some(pad) = appsrc.static_pad("src") {
        let (frames, feed) = (served.counters.frames.clone(), Arc::downgrade(&feed));
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                frames.frames_sent.fetch_add(1, Ordering::Relaxed);
                frames
                    .bytes_sent
                    .fetch_add(buffer.size() as u64, Ordering::Relaxed);
                if let Some(feed) = feed.upgrade() {
                    feed.on_written(buffer.size());
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    let port = served.slot.port();
    // The client's TCP connection (read when the client sends its media over it).
    let socket = rtsp::RTSPContext::with_current_context(|ctx| {
        ctx.client().and_then(|c| connections.get(c))
    })
    .flatten();
    if let Ok(mut sessions) = served.sessions.lock() {
        sessions.push(ServedSession {
            port,
            feed: feed.clone(),
            meter: DeliveryMeter::new(tokio::time::Instant::now(), socket.is_some()),
            socket,
        });
    }
    served.slot.attach(port, feed);
    let counters = served.counters.clone();
    counters.sessions.fetch_add(1, Ordering::Relaxed);
    counters.sessions_total.fetch_add(1, Ordering::Relaxed);
    info!(stream = %id, clients = Counters::get(&counters.sessions), "serving a client");
    let (slot, ended, id) = (served.slot.clone(), AtomicBool::new(false), id.to_owned());
    let sessions = served.sessions.clone();
    media.connect_unprepared(move |_| {
        if !ended.swap(true, Ordering::Relaxed) {
            slot.detach(port);
            if let Ok(mut sessions) = sessions.lock() {
                sessions.retain(|s| s.port != port);
            }
            let left = counters.sessions.fetch_sub(1, Ordering::Relaxed) - 1;
            info!(stream = %id, clients = left, "client session ended");
        }
    });
}

mod imp {
    use std::sync::OnceLock;

    use super::*;

    #[derive(Default)]
    pub struct StreamFactory {
        /// The stream id, where its slot is found, and the clients' connections.
        pub(super) source: OnceLock<(String, Arc<Registry>, Connections)>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for StreamFactory {
        const NAME: &'static str = "EdgecamStreamFactory";
        type Type = super::StreamFactory;
        type ParentType = rtsp::RTSPMediaFactory;
    }

    impl ObjectImpl for StreamFactory {}

    impl RTSPMediaFactoryImpl for StreamFactory {
        fn create_element(&self, _url: &rtsp::gst_rtsp::RTSPUrl) -> Option<gst::Element> {
            let (id, registry, _) = self.source.get()?;
            let caps = registry.get(id)?.slot.caps();
            if caps.is_none() {
                info!(stream = %id, "client refused: the stream has not encoded a frame yet");
            }
            media_bin(&caps?).ok()
        }

        fn configure(&self, media: &rtsp::RTSPMedia) {
            self.parent_configure(media);
            if let Some((id, registry, connections)) = self.source.get()
                && let Some(served) = registry.get(id)
            {
                feed_media(id, &served, connections, media);
            }
        }
    }
}
