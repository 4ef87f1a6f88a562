//! `Receiver`: a real `edgecam-upstream` process whose JSON lines a test waits on.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// How long a fresh receiver may take to report `listening` (the first GStreamer
/// start on a machine scans the plugin registry).
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `terminate` waits after SIGTERM before it kills.
const TERM_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `edgecam-upstream`, killed on drop if still running.
pub struct Receiver {
    child: Child,
    port: u16,
    srt_port: Option<u16>,
    lines: mpsc::Receiver<Value>,
    events: Vec<Value>,
    stderr: tempfile::NamedTempFile,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1:`port` (0: any free port) and waits for its
    /// `listening` line; panics if it does not come.
    pub fn start(port: u16, record_dir: Option<&Path>) -> Receiver {
        let port = port.to_string();
        let mut args = vec!["--port", &port];
        if let Some(dir) = record_dir {
            args.extend(["--record-dir", dir.to_str().expect("UTF-8 record dir")]);
        }
        Receiver::start_with(&args)
    }

    /// Starts a receiver on 127.0.0.1 with these extra arguments (`--port 0` unless they
    /// name a port; e.g. `["--srt-port", "0"]`) and waits for its `listening` line.
    pub fn start_with(args: &[&str]) -> Receiver {
        let stderr = tempfile::NamedTempFile::new().expect("temp file for receiver stderr");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgecam-upstream"));
        cmd.args(["--bind", "127.0.0.1"]);
        if !args.contains(&"--port") {
            cmd.args(["--port", "0"]);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.as_file().try_clone().expect("clone stderr file"));
        let mut child = cmd.spawn().expect("spawn edgecam-upstream");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Kept visible in the history rather than lost in a panicking thread.
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"event": "non_json", "line": line}));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut receiver = Receiver {
            child,
            port: 0,
            srt_port: None,
            lines,
            events: Vec::new(),
            stderr,
        };
        let listening = receiver.wait_for(|v| v["event"] == "listening", LISTEN_TIMEOUT);
        let Some(listening) = listening.filter(|v| v["port"].is_u64()) else {
            panic!(
                "receiver did not report listening; stderr:\n{}",
                receiver.stderr()
            );
        };
        let port = |key: &str| {
            listening[key]
                .as_u64()
                .map(|p| u16::try_from(p).expect("port fits u16"))
        };
        receiver.port = port("port").expect("RTSP port");
        receiver.srt_port = port("srt_port");
        receiver
    }

    /// The port the receiver actually listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rtsp://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}{path}", self.port)
    }

    /// The UDP port of the SRT listener, if it was started with `--srt-port`.
    pub fn srt_port(&self) -> Option<u16> {
        self.srt_port
    }

    /// `srt://127.0.0.1:<srt port>?streamid=<id>`; panics without an SRT listener.
    pub fn srt_url(&self, stream_id: &str) -> String {
        let port = self.srt_port.expect("receiver started with --srt-port");
        format!("srt://127.0.0.1:{port}?streamid={stream_id}")
    }

    /// Consumes lines until one matches `pred` and returns it, or `None` after `timeout`
    /// or once the receiver's stdout is closed. Every consumed line is kept in `events()`.
    pub fn wait_for(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_line(deadline) {
                Ok(v) if pred(&v) => return Some(v),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    fn next_line(&mut self, deadline: Instant) -> Result<Value, RecvTimeoutError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = self.lines.recv_timeout(left)?;
        self.events.push(v.clone());
        Ok(v)
    }

    /// Frames per second this receiver got over its next `lines` stats lines (one a
    /// second per session), of the session on `path` or of any, and each line's
    /// (time, frames): the frames after the first line over the time they span.
    pub fn rate(&mut self, path: Option<&str>, lines: usize) -> (f64, Vec<(f64, u64)>) {
        let mut windows = Vec::new();
        for _ in 0..lines {
            let stats = self
                .wait_for(
                    |v| v["event"] == "stats" && path.is_none_or(|p| v["path"] == p),
                    Duration::from_secs(5),
                )
                .unwrap_or_else(|| panic!("no stats line for {path:?}"));
            windows.push((
                stats["t"].as_f64().unwrap_or_default(),
                stats["window_frames"].as_u64().unwrap_or_default(),
            ));
        }
        let frames: u64 = windows.iter().skip(1).map(|(_, f)| f).sum();
        let span = match (windows.first(), windows.last()) {
            (Some((t0, _)), Some((t1, _))) => t1 - t0,
            _ => 0.0,
        };
        (frames as f64 / span, windows)
    }

    /// Every line consumed so far, in order.
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    /// The consumed lines with `"event": name`.
    pub fn events_named(&self, name: &str) -> Vec<&Value> {
        self.events.iter().filter(|v| v["event"] == name).collect()
    }

    /// What the receiver wrote to stderr so far, for failure messages.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit, collecting the last lines;
    /// kills the receiver if it does not stop in time.
    pub fn terminate(&mut self) -> ExitStatus {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        }
        // stdout closes when the process exits; if it stays open past the deadline, kill.
        let deadline = Instant::now() + TERM_TIMEOUT;
        loop {
            match self.next_line(deadline) {
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    break;
                }
            }
        }
        self.child.wait().expect("wait for edgecam-upstream")
    }

    /// Kills the receiver (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
