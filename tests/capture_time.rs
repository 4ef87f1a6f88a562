//! The capture-time SEI end to end: an in-process GStreamer publisher stamps every access
//! unit with `edgecam::pipeline::sei`, and `edgecam-upstream` reports the times it finds,
//! over RTSP (rtspclientsink, TCP) and over SRT (mpegtsmux ! srtsink).

mod support;

use std::time::{Duration, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::Value;
use support::receiver::Receiver;

const FRAMES: u64 = 60;
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// rtspclientsink sometimes never delivers EOS (see tests/receiver.rs): the publisher is
/// stopped after this whether or not it came.
const EOS_TIMEOUT: Duration = Duration::from_secs(10);

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .expect("a clock after 1970")
}

/// A live 320x240 30 fps test pattern of `FRAMES` frames, each access unit stamped with
/// the wall clock as it leaves h264parse, into `sink` through a second h264parse, as the
/// daemon's capture and output pipelines do. The stamp needs byte-stream caps: the sink
/// may want `avc`, whose length-prefixed NAL units have no start codes to find.
fn publish(sink: &str) -> gst::Pipeline {
    edgecam::pipeline::init().expect("GStreamer");
    let launch = format!(
        "videotestsrc is-live=true num-buffers={FRAMES} \
         ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
         ! x264enc tune=zerolatency key-int-max=30 ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au \
         ! identity name=stamp ! h264parse config-interval=-1 ! {sink}"
    );
    let pipeline = gst::parse::launch(&launch)
        .expect("publisher pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let pad = pipeline
        .by_name("stamp")
        .and_then(|e| e.static_pad("sink"))
        .expect("identity sink pad");
    pad.add_probe(gst::PadProbeType::BUFFER, |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
            let stamped = {
                let map = buffer.map_readable().expect("readable");
                edgecam::pipeline::sei::with_capture_time(map.as_slice(), unix_us())
            };
            let mut out = gst::Buffer::from_mut_slice(stamped);
            {
                let out = out.get_mut().expect("unshared");
                out.set_pts(buffer.pts());
                out.set_dts(buffer.dts());
                out.set_duration(buffer.duration());
                out.set_flags(buffer.flags());
            }
            *buffer = out;
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).expect("play");
    pipeline
}

/// Waits for the publisher's EOS (or `EOS_TIMEOUT`), then stops it.
fn finish(pipeline: &gst::Pipeline) {
    let bus = pipeline.bus().expect("bus");
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(EOS_TIMEOUT.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    if let Some(gst::MessageView::Error(e)) = msg.as_ref().map(|m| m.view()) {
        panic!("publisher: {e:?}");
    }
    pipeline.set_state(gst::State::Null).expect("stop");
}

fn us(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// The session's reports agree with each other and with a stream stamped as it was sent.
fn check_session(rx: &mut Receiver) {
    let end = rx.wait_for(|v| v["event"] == "session_end", EVENT_TIMEOUT);
    let end = end.unwrap_or_else(|| panic!("no session_end; events {:?}", rx.events()));
    assert_eq!(us(&end, "captured_frames"), us(&end, "frames"), "{end}");
    // An SRT caller's first frames go before its connection is up.
    assert!(us(&end, "captured_frames") >= FRAMES / 2, "{end}");
    assert_eq!(us(&end, "capture_backwards"), 0, "{end}");
    let (first, last) = (us(&end, "capture_first_us"), us(&end, "capture_last_us"));
    assert!(first < last, "{end}");

    let stats: Vec<&Value> = rx
        .events_named("stats")
        .into_iter()
        .filter(|v| us(v, "window_frames") > 0)
        .collect();
    assert!(!stats.is_empty(), "no stats with frames");
    let mut times = Vec::new();
    for s in &stats {
        let window: Vec<u64> = s["capture_us"]
            .as_array()
            .unwrap_or_else(|| panic!("no capture_us in {s}"))
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        assert_eq!(window.len() as u64, us(s, "window_frames"), "{s}");
        // Same machine, same clock: a frame arrives after it was stamped.
        let p50 = s["capture_age_p50_ms"]
            .as_f64()
            .expect("capture_age_p50_ms");
        let max = s["capture_age_max_ms"]
            .as_f64()
            .expect("capture_age_max_ms");
        assert!((0.0..=max).contains(&p50), "{s}");
        times.extend(window);
    }
    assert_eq!(times.first(), Some(&first));
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(times.last().is_some_and(|&t| t <= last));
}

#[test]
fn capture_times_over_rtsp() {
    let mut rx = Receiver::start(0, None);
    let url = rx.url("/cam");
    let publisher = publish(&format!(
        "rtspclientsink location={url} protocols=tcp latency=0"
    ));
    finish(&publisher);
    check_session(&mut rx);
    assert!(rx.terminate().success());
}

#[test]
fn capture_times_over_srt() {
    let mut rx = Receiver::start_with(&["--srt-port", "0"]);
    let url = rx.srt_url("cam");
    let publisher = publish(&format!("mpegtsmux alignment=7 ! srtsink uri={url}"));
    finish(&publisher);
    check_session(&mut rx);
    assert!(rx.terminate().success());
}
