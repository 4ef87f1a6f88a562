//! RTSP side: gst-rtsp-server with a RECORD factory mounted at every path a client names;
//! each media (one per ANNOUNCE) is one session.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use gst::glib;
use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use rtsp::prelude::*;

use crate::age::{RtpFrameTimes, parse_rtp_header};
use crate::sessions::{Origin, Shared};

/// Media pipeline of each publish: depayload, parse into one Annex B access unit per buffer, count.
const LAUNCH: &str = "( rtph264depay name=depay0 ! h264parse config-interval=-1 \
! video/x-h264,stream-format=byte-stream,alignment=au \
! appsink name=sink sync=false async=false emit-signals=false )";

/// Creates the server on `bind`:`port` (not yet attached) with its mounts and client hooks.
pub fn server(shared: &Arc<Shared>, bind: &str, port: u16) -> rtsp::RTSPServer {
    let server = rtsp::RTSPServer::new();
    server.set_address(bind);
    server.set_service(&port.to_string());
    server.set_mount_points(Some(&any_path::AnyPathMounts::new(shared.clone())));

    let sh = shared.clone();
    server.connect_client_connected(move |_, client| {
        let s = sh.clone();
        client.connect_teardown_request(move |c, _| s.teardown_client(client_key(c)));
        let s = sh.clone();
        client.connect_closed(move |c| {
            let key = client_key(c);
            s.end_sessions(|_, sess| sess.origin == Origin::Rtsp { client: key });
        });
    });
    server
}

fn client_key(client: &rtsp::RTSPClient) -> usize {
    client.as_ptr() as usize
}

/// Mounts a RECORD factory at `path` unless one is there already.
fn ensure_mount(
    shared: &Arc<Shared>,
    mounted: &Mutex<HashSet<String>>,
    mounts: &rtsp::RTSPMountPoints,
    path: &str,
) {
    let fresh = mounted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.to_string());
    if !fresh {
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
            /// Paths that already have a factory mounted.
            pub(super) mounted: Mutex<HashSet<String>>,
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
                    ensure_mount(shared, &self.mounted, self.obj().upcast_ref(), &path);
                }
                Some(path)
            }
        }
    }
}

/// Called for every media a factory creates, i.e. once per ANNOUNCE.
fn configure_media(shared: &Arc<Shared>, path: &str, media: &rtsp::RTSPMedia) {
    let client = rtsp::RTSPContext::with_current_context(|ctx| ctx.client().map(client_key));
    let origin = Origin::Rtsp {
        client: client.flatten().unwrap_or(0),
    };
    let id = shared.start_session(path.to_string(), origin);

    let bin = media.element().downcast::<gst::Bin>().ok();
    let times = Arc::new(Mutex::new(RtpFrameTimes::default()));
    match bin.as_ref().and_then(|b| b.by_name("depay0")) {
        Some(depay) => watch_rtp(shared, &depay, &times),
        None => eprintln!("edgecam-upstream: session {id}: no depay0 in media pipeline"),
    }
    let sink = bin
        .and_then(|b| b.by_name("sink"))
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok());
    match sink {
        Some(sink) => {
            let sh = shared.clone();
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        if let Ok(sample) = sink.pull_sample() {
                            let pts = sample.buffer().and_then(|b| b.pts()).map(|p| p.nseconds());
                            let time = lock(&times).take(pts);
                            sh.on_frame(id, &sample, time);
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

/// Notes the RTP timestamp, marker and arrival of every packet entering the depayloader.
/// Read here, before depayloading: the PTS that comes out was retimed by the jitterbuffer
/// to track arrival, which would hide a stream falling behind.
fn watch_rtp(shared: &Arc<Shared>, depay: &gst::Element, times: &Arc<Mutex<RtpFrameTimes>>) {
    let Some(pad) = depay.static_pad("sink") else {
        return;
    };
    let (sh, times) = (shared.clone(), times.clone());
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            let arrival_s = sh.now_s();
            let mut times = lock(&times);
            let mut note = |buffer: &gst::BufferRef| {
                let mut head = [0u8; 8];
                if buffer.copy_to_slice(0, &mut head).is_ok()
                    && let Some(header) = parse_rtp_header(&head)
                {
                    let pts = buffer.pts().map(|p| p.nseconds());
                    times.on_packet(header, pts, arrival_s);
                }
            };
            if let Some(buffer) = info.buffer() {
                note(buffer);
            } else if let Some(list) = info.buffer_list() {
                list.iter().for_each(&mut note);
            }
            gst::PadProbeReturn::Ok
        },
    );
}

fn lock(times: &Mutex<RtpFrameTimes>) -> std::sync::MutexGuard<'_, RtpFrameTimes> {
    // Only plain data inside: a panic elsewhere leaves it usable.
    times.lock().unwrap_or_else(|e| e.into_inner())
}
