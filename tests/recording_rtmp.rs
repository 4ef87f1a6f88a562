//! Backfill over RTMP against a real nginx with the RTMP module: an outage recorded while
//! nginx is down is published, once it is back, as a sibling stream (`backfill_path =
//! "_backfill"`: nginx-rtmp takes the last path component as the stream name), and what
//! nginx records of it decodes to the frames of the outage.

mod support;

use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::media;
use support::recorded::unix_us;
use support::rtmp::RtmpServer;

const FPS: u64 = 15;

#[test]
fn an_outage_is_backfilled_to_a_sibling_rtmp_stream() {
    let mut server = RtmpServer::start();
    let url = server.url("cam");
    let state = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "state_dir = {:?}\n\n[[stream]]\nid = \"cam\"\nsource = \"test\"\nwidth = 320\n\
         height = 240\nframerate = {FPS}\nencoder = \"x264\"\nbitrate_kbps = 500\n\
         keyframe_interval = 15\nupstream = [{url:?}]\n\n[stream.record]\nmode = \"outage\"\n\
         backfill_path = \"_backfill\"\nbackfill_kbps = 200\n",
        state.path()
    );
    let mut daemon = Daemon::start(&config, &[]);
    assert!(
        server.wait_publish("cam", Duration::from_secs(20)),
        "no publish:\n{}",
        server.log()
    );
    // Two seconds of live, then nginx dies for 12 s. (The backfill is slowed to
    // 200 kbit/s: nginx names a recording by the second its publish began, and two
    // sessions in one second would share a file.)
    std::thread::sleep(Duration::from_secs(2));
    let t0 = unix_us();
    server.kill();
    std::thread::sleep(Duration::from_secs(12));
    server.restart();
    let t1 = unix_us();
    assert!(
        server.wait_publishes("cam", 2, Duration::from_secs(10)),
        "live did not come back:\n{}",
        server.log()
    );
    // Backfilled segments are deleted (mode outage): wait until nothing is left on disk,
    // finished or being written, after a backfill session ended.
    let dir = state.path().join("recordings").join("cam");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".ts") || n.ends_with(".ts.part"))
            .collect();
        if left.is_empty() && server.wait_ended("cam_backfill", 1, Duration::ZERO) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "segments left: {left:?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.terminate(Duration::from_secs(5));
    server.stop();

    let files = server.recordings_of("cam_backfill");
    assert!(!files.is_empty(), "{:?}", server.recordings());
    let mut frames = 0;
    for f in &files {
        let video = media::video(f);
        assert_eq!(video.codec, "h264", "{video:?}");
        assert_eq!((video.width, video.height), (320, 240), "{video:?}");
        frames += video.frames;
    }
    let outage = (t1 - t0) as f64 / 1e6;
    let expected = outage * FPS as f64;
    eprintln!(
        "RTMP: {frames} frames backfilled in {} sessions for a {outage:.1} s outage ({expected:.0} frames)",
        files.len()
    );
    assert!(
        frames as f64 >= 0.95 * expected,
        "{frames} frames backfilled for a {outage:.1} s outage\n{}",
        daemon.log()
    );
}
