//! The RTMP test server (`support::rtmp`): a real publisher's stream is seen and
//! recorded whole, and publishes are still seen after the server restarts.

mod support;

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::media;
use support::rtmp::RtmpServer;

/// Long enough for a first GStreamer start (plugin registry scan) and a few seconds of video.
const TIMEOUT: Duration = Duration::from_secs(30);
const WIDTH: u64 = 320;
const HEIGHT: u64 = 240;

/// Publishes `frames` frames of live test pattern at 30 fps to `url` with gst-launch-1.0
/// and waits (bounded) for it to finish; panics if it fails or hangs.
fn push(url: &str, frames: u32) -> Output {
    let launch = format!(
        "videotestsrc is-live=true num-buffers={frames} \
         ! video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate=30/1 \
         ! x264enc tune=zerolatency ! h264parse ! flvmux streamable=true \
         ! rtmp2sink location={url}"
    );
    let child = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(launch.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gst-launch-1.0");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("wait for gst-launch-1.0"),
        Err(_) => {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("gst-launch-1.0 did not finish pushing {frames} frames to {url}");
        }
    };
    assert!(
        out.status.success(),
        "gst-launch-1.0 failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

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
    push(&server.url("cam"), 90);
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
    push(&server.url("cam"), 30);
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
    push(&server.url("cam"), 30);
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
