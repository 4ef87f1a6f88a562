//! `edgecam-upstream`: the RECORD-mode RTSP receiver (and, optionally, SRT listener) that
//! tests, benchmarks and the demo publish to; it counts (and optionally records) each
//! session, measures the age of its frames and reports JSON lines.

mod age;
mod capture;
mod rtsp;
mod sessions;
mod srt;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gst::glib;
use gstreamer as gst;
use gstreamer_rtsp_server::prelude::*;
use nix::sys::signal::{SigSet, Signal};
use serde::Serialize;

use sessions::Shared;

const ABOUT: &str = "RECORD-mode RTSP receiver: accepts H.264 publishes (ANNOUNCE/SETUP/RECORD, \
TCP interleaved or UDP) on any path and, with --srt-port, SRT callers sending H.264 in MPEG-TS; \
counts access units per session, measures their age and reports JSON lines on stdout.";

const CONTRACT: &str = "\
Stdout carries one JSON object per line, each with \"event\" and \"t\" (seconds since start):
  listening      port srt_port (or null)               the server accepts connections
  session_start  session path                          a publisher's media was created (ANNOUNCE),
                                                       or an SRT caller was accepted
  first_frame    session path idr width height         the first access unit of a session
  stats          session path frames keyframes bytes   every second for each session that has had
                 first_idr pts_monotonic pts_backwards a frame, frames in that second or not
                 pts_missing width height fps elapsed_s
                 captured_frames capture_first_us
                 capture_last_us capture_backwards
                 window_frames window_kbps age_ms      the frames since the previous stats line
                 age_p50_ms age_p95_ms age_max_ms      (ages null when there were none)
                 capture_us capture_age_p50_ms
                 capture_age_p95_ms capture_age_max_ms
  teardown       session path                          the client sent TEARDOWN
  session_end    the stats fields up to                exactly once per session, whatever ended it
                 capture_backwards, kbps age_p50_ms
                 age_p95_ms age_max_ms (whole session), file (or null)
A frame's age (ms) is its one-way delay (arrival minus its RTP timestamp, or its PTS over SRT)
less the lowest delay of the session so far: 0 while a stream keeps pace, growing when it falls
behind. A frame's capture time (us since the Unix epoch) comes from edgecam's capture-time SEI
(docs/architecture.md); captured_frames counts the frames that carried one, capture_backwards
those not after the previous one, capture_us lists the window's in arrival order, and a capture
age is arrival on this machine's wall clock minus capture time (null when none carried one).
RTSP keeps listening with --srt-port; an SRT session's path is the caller's stream id, or
\"srt\" without one. The SRT listener takes one caller at a time.
Sessions are numbered 1, 2, 3... in order of arrival. SIGTERM/SIGINT end all sessions, then exit 0.";

#[derive(Parser, Debug)]
#[command(name = "edgecam-upstream", version, about = ABOUT, after_help = CONTRACT)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Port to listen on; 0 picks a free one (reported in the `listening` line).
    #[arg(long, default_value_t = 8554)]
    port: u16,
    /// Write each session's Annex B H.264 stream to DIR/<path or stream id, '/' as '_'>-<session>.h264.
    #[arg(long, value_name = "DIR")]
    record_dir: Option<PathBuf>,
    /// Also listen for SRT callers (MPEG-TS with H.264) on this UDP port; 0 picks a free one.
    #[arg(long, value_name = "PORT")]
    srt_port: Option<u16>,
    /// SRT callers must encrypt with this passphrase (AES-128).
    #[arg(long, value_name = "PASS", requires = "srt_port")]
    srt_passphrase: Option<String>,
}

fn run(args: Args) -> Result<(), String> {
    // Block the stop signals before any thread exists so every thread inherits the mask
    // and only the waiter thread below receives them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;

    gst::init().map_err(|e| format!("gstreamer init: {e}"))?;
    if let Some(dir) = &args.record_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let shared = Arc::new(Shared::new(args.record_dir.clone()));
    let server = rtsp::server(&shared, &args.bind, args.port);

    let _source = server
        .attach(None)
        .map_err(|e| format!("listening on {}:{}: {e}", args.bind, args.port))?;
    let srt = match args.srt_port {
        Some(port) => {
            let port = match port {
                0 => srt::free_port(&args.bind).map_err(|e| e.to_string())?,
                p => p,
            };
            let settings = srt::Settings {
                bind: args.bind.clone(),
                port,
                passphrase: args.srt_passphrase.clone(),
            };
            Some(srt::Listener::start(settings, shared.clone()).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    #[derive(Serialize)]
    struct Listening {
        port: i32,
        srt_port: Option<u16>,
    }
    shared.emit(
        "listening",
        Listening {
            port: server.bound_port(),
            srt_port: srt.as_ref().map(|l| l.port()),
        },
    );

    let main_loop = glib::MainLoop::new(None, false);
    let ml = main_loop.clone();
    std::thread::spawn(move || {
        if let Ok(sig) = signals.wait() {
            eprintln!("edgecam-upstream: {sig:?}, stopping");
        }
        ml.quit();
    });
    let sh = shared.clone();
    glib::timeout_add(Duration::from_secs(1), move || {
        sh.emit_stats();
        glib::ControlFlow::Continue
    });

    main_loop.run();
    if let Some(l) = &srt {
        l.stop();
    }
    shared.end_sessions(|_, _| true);
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgecam-upstream: {e}");
            ExitCode::FAILURE
        }
    }
}
