//! The RTMP test server (`support::rtmp`): a real publisher's stream is seen and
//! recorded whole, and publishes are still seen after the server restarts.

mod support;

use std::time::Duration;

use support::media;
use support::rtmp::{HEIGHT, RtmpServer, WIDTH, push};

/// Long enough for a first GStreamer start (plugin registry scan) and a few seconds of video.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The test pattern's bitrate.
const KBIT: u32 = 800;

/// The recording holds what was sent: h264 at the sent size, every frame or nearly.
fn assert_recorded(video: &media::Video, sent: u64) {
    assert_eq!(video.codec, "h264", "{video:?}");
    assert_eq!((video.width, video.height), (WIDTH, HEIGHT), "{video:?}");
    // The module records from the first frame of the publish; allow a frame or two lost
    // at the edges.
    assert!(
        video.frames + 2 >= sent && video.frames <= sent,
        "{} frames recorded of {sent} sent: {video:?}",
        video.frames
    );
}

#[test]
fn a_publish_is_seen_and_recorded_whole() {
    let server = RtmpServer::start();
    assert_eq!(server.publishes("cam"), 0);
    push(&server.url("cam"), 90, KBIT);
    assert!(server.wait_publish("cam", TIMEOUT), "no publish in the log");
    assert!(server.wait_ended("cam", 1, TIMEOUT), "publish did not end");
    assert_eq!(server.publishes("cam"), 1);
    assert_eq!(server.publishes("other"), 0);

    let files = server.recordings_of("cam");
    assert_eq!(files.len(), 1, "recordings: {:?}", server.recordings());
    assert_recorded(&media::video(&files[0]), 90);
}

#[test]
fn a_publish_after_a_restart_is_seen_on_the_same_port() {
    let mut server = RtmpServer::start();
    let port = server.port();
    push(&server.url("cam"), 30, KBIT);
    assert!(
        server.wait_ended("cam", 1, TIMEOUT),
        "first publish did not end"
    );

    server.restart();
    assert_eq!(server.port(), port);
    assert!(server.is_running());
    assert_eq!(
        server.publishes("cam"),
        1,
        "publishes are counted across restarts"
    );
    push(&server.url("cam"), 30, KBIT);
    assert!(
        server.wait_publishes("cam", 2, TIMEOUT),
        "no second publish after the restart"
    );
    assert!(
        server.wait_ended("cam", 2, TIMEOUT),
        "second publish did not end"
    );

    // Two publishes within one second share a `record_unique` name; the newest file is
    // the second publish either way.
    let files = server.recordings_of("cam");
    let newest = files.last().expect("a recording after the restart");
    assert_recorded(&media::video(newest), 30);

    server.stop();
    assert!(!server.is_running());
}
