//! `RtmpServer`: a real nginx with Debian's RTMP module on 127.0.0.1, in the foreground,
//! with its config, pid, logs and recordings in a temp dir; killed on drop.
//!
//! Application `live` records every publish to `<name>-<unix time>.flv` (`record_unique`).
//! Publishes are read from nginx's own error log at `info` level, which the module
//! writes as `*N publish: name='NAME' …` and `*N disconnect` for connection `N`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::free_port;

/// How long nginx may take to bind its port and log its version.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits after SIGTERM before it kills.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Fresh ports tried by `start`, should another process take the free port between
/// `free_port()` and nginx's bind.
const PORT_ATTEMPTS: usize = 3;
/// The module's file name; the directory comes from `nginx -V` (`--modules-path`).
const MODULE: &str = "ngx_rtmp_module.so";
/// Where Debian's nginx looks for modules, if `nginx -V` does not say.
const DEBIAN_MODULES: &str = "/usr/lib/nginx/modules";

/// How long `push` may take beyond the video's own duration (a first GStreamer start
/// scans the plugin registry).
const PUSH_SLACK: Duration = Duration::from_secs(30);
/// The size of the test pattern `push` sends.
pub const WIDTH: u64 = 320;
pub const HEIGHT: u64 = 240;

/// A running nginx-rtmp. Its error log is kept in memory (`log()`), in `error.log` in
/// its dir, and printed if a test panics while the server lives.
pub struct RtmpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    module: PathBuf,
    log: Arc<Shared>,
}

/// What the log readers saw, across restarts.
#[derive(Default)]
struct Seen {
    text: String,
    /// The stream name of every publish, in order.
    publishes: Vec<String>,
    /// The stream name of every publishing connection that disconnected (its recording
    /// is closed), in order.
    ended: Vec<String>,
    /// Which process the fields below are about: a reader of an older one changes nothing.
    generation: u64,
    ready: bool,
    exited: bool,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Seen>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `done` holds, or `timeout` passes; returns whether it holds.
    fn wait(&self, timeout: Duration, done: impl Fn(&Seen) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut seen = self.lock();
        loop {
            if done(&seen) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            seen = self
                .changed
                .wait_timeout(seen, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl RtmpServer {
    /// Starts nginx on a free port and waits until it listens; panics if it does not.
    pub fn start() -> RtmpServer {
        let module = module_path();
        let dir = tempfile::tempdir().expect("tempdir for nginx");
        std::fs::create_dir(dir.path().join("records")).expect("create records dir");
        let log = Arc::new(Shared::default());
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match spawn(dir.path(), &module, port, &log) {
                Ok(child) => {
                    return RtmpServer {
                        child,
                        port,
                        dir,
                        module,
                        log,
                    };
                }
                Err(text) if text.contains("Address already in use") => last = text,
                Err(text) => panic!("nginx did not start; log:\n{text}"),
            }
        }
        panic!("nginx found no free port in {PORT_ATTEMPTS} attempts; log:\n{last}")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rtmp://127.0.0.1:PORT/live/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{name}", self.port)
    }

    /// The nginx process's id (it changes with `restart`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's temp dir (config, pid, logs, `records/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How many times `name` was published so far, across restarts.
    pub fn publishes(&self, name: &str) -> usize {
        count(&self.log.lock().publishes, name)
    }

    /// Whether `name` has been published at least once (now or within `timeout`).
    pub fn wait_publish(&self, name: &str, timeout: Duration) -> bool {
        self.wait_publishes(name, 1, timeout)
    }

    /// Whether `name` has been published at least `n` times, across restarts (now or
    /// within `timeout`).
    pub fn wait_publishes(&self, name: &str, n: usize, timeout: Duration) -> bool {
        self.log
            .wait(timeout, |seen| count(&seen.publishes, name) >= n)
    }

    /// Whether `n` publishing connections of `name` have disconnected, their recordings
    /// closed (now or within `timeout`). A connection cut by killing nginx does not count.
    pub fn wait_ended(&self, name: &str, n: usize, timeout: Duration) -> bool {
        self.log.wait(timeout, |seen| count(&seen.ended, name) >= n)
    }

    /// Every recording so far (`records/*.flv`), sorted by name.
    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("records"))
            .expect("read records dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "flv"))
            .collect();
        files.sort();
        files
    }

    /// The recordings of stream `name`, oldest first (`record_unique` appends the
    /// publish's unix time).
    pub fn recordings_of(&self, name: &str) -> Vec<PathBuf> {
        let prefix = format!("{name}-");
        let mut files: Vec<(u64, PathBuf)> = self
            .recordings()
            .into_iter()
            .filter_map(|p| {
                let stem = p.file_stem()?.to_str()?;
                let time = stem.strip_prefix(&prefix)?.parse().ok()?;
                Some((time, p))
            })
            .collect();
        files.sort();
        files.into_iter().map(|(_, p)| p).collect()
    }

    /// Everything nginx logged so far, across restarts.
    pub fn log(&self) -> String {
        self.log.lock().text.clone()
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills nginx (SIGKILL) and reaps it; publishers see their connection drop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops nginx with SIGTERM (killed if it is not gone in time) and reaps it.
    pub fn stop(&mut self) {
        if self.is_running() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// Stops nginx if it runs and starts it again on the same port with the same config;
    /// earlier publishes and recordings are kept.
    pub fn restart(&mut self) {
        self.stop();
        {
            let mut seen = self.log.lock();
            let _ = writeln!(seen.text, "--- restart ---");
        }
        self.child =
            spawn(self.dir.path(), &self.module, self.port, &self.log).unwrap_or_else(|text| {
                panic!("nginx did not restart on port {}; log:\n{text}", self.port)
            });
    }
}

impl Drop for RtmpServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- nginx log (port {}) ---\n{}", self.port, self.log());
        }
    }
}

fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

/// The RTMP module's .so, from nginx's `--modules-path`; panics with the packages to
/// install if nginx or the module is missing.
fn module_path() -> PathBuf {
    const HINT: &str = "install nginx and libnginx-mod-rtmp (scripts/install-deps.sh)";
    let out = Command::new("nginx")
        .arg("-V")
        .output()
        .unwrap_or_else(|e| panic!("run nginx -V: {e}; {HINT}"));
    // nginx -V prints its configure arguments on stderr.
    let text = String::from_utf8_lossy(&out.stderr);
    let dir = text
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("--modules-path="))
        .unwrap_or(DEBIAN_MODULES);
    let path = Path::new(dir).join(MODULE);
    assert!(path.is_file(), "{} not found; {HINT}", path.display());
    path
}

/// The config: one foreground process, everything under `dir`, application `live`.
fn config(dir: &Path, module: &Path, port: u16) -> String {
    let d = dir.display();
    // No `user`: a single process (master_process off) never switches user, so it can
    // write the 0700 temp dir as whoever runs the test. No http block: nothing on port 80
    // and no http temp paths.
    format!(
        "load_module {module};\n\
         daemon off;\n\
         master_process off;\n\
         pid {d}/nginx.pid;\n\
         lock_file {d}/nginx.lock;\n\
         error_log {d}/error.log info;\n\
         error_log stderr info;\n\
         events {{ worker_connections 64; }}\n\
         rtmp {{\n\
           access_log {d}/access.log;\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             application live {{\n\
               live on;\n\
               record all;\n\
               record_path {d}/records;\n\
               record_unique on;\n\
             }}\n\
           }}\n\
         }}\n",
        module = module.display(),
    )
}

/// Writes the config into `dir`, runs nginx and waits until it has bound its port,
/// appending its error log to `log`. On failure reaps it and returns the log.
fn spawn(dir: &Path, module: &Path, port: u16, log: &Arc<Shared>) -> Result<Child, String> {
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, module, port)).expect("write nginx.conf");
    let generation = {
        let mut seen = log.lock();
        seen.generation += 1;
        seen.ready = false;
        seen.exited = false;
        seen.generation
    };
    let mut child = Command::new("nginx")
        // -p: relative paths under `dir`; -e: the log used before the config is read
        // (the compiled-in one is outside).
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nginx");
    let stderr = child.stderr.take().expect("piped stderr");
    let shared = log.clone();
    std::thread::spawn(move || read_log(stderr, generation, &shared));

    let started = log.wait(START_TIMEOUT, |seen| {
        seen.generation != generation || seen.ready || seen.exited
    });
    let ready = log.lock().ready;
    if started && ready {
        return Ok(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(log.lock().text.clone())
}

/// Reads one nginx process's error log until it exits, recording publishes and their end.
fn read_log(stderr: impl std::io::Read, generation: u64, shared: &Shared) {
    // Connection numbers (`*N`) restart with each process.
    let mut publishing: HashMap<u64, String> = HashMap::new();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let mut seen = shared.lock();
        let _ = writeln!(seen.text, "{line}");
        let current = seen.generation == generation;
        // ngx_os_status logs the version after every listening socket is bound.
        if current && line.contains("[notice]") && line.contains(": nginx/") {
            seen.ready = true;
        }
        if let Some(conn) = connection(&line) {
            if let Some(name) = quoted(&line, "publish: name='") {
                publishing.insert(conn, name.to_owned());
                seen.publishes.push(name.to_owned());
            } else if line.contains(&format!("*{conn} disconnect"))
                && let Some(name) = publishing.remove(&conn)
            {
                seen.ended.push(name);
            }
        }
        drop(seen);
        shared.changed.notify_all();
    }
    let mut seen = shared.lock();
    if seen.generation == generation {
        seen.exited = true;
    }
    drop(seen);
    shared.changed.notify_all();
}

/// `N` of the `*N` connection number in an nginx log line.
fn connection(line: &str) -> Option<u64> {
    let rest = &line[line.find(": *")? + 3..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// The text between `prefix` and the next `'`.
fn quoted<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    Some(&rest[..rest.find('\'')?])
}

/// Publishes `frames` frames of live test pattern (30 fps, `WIDTH`x`HEIGHT`, x264 at
/// `kbit`) to `url` with gst-launch-1.0, the way an RTMP camera would, and waits (bounded)
/// for it to finish; panics if it fails or hangs.
pub fn push(url: &str, frames: u32, kbit: u32) -> Output {
    let launch = format!(
        "videotestsrc is-live=true num-buffers={frames} \
         ! video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate=30/1 \
         ! x264enc tune=zerolatency bitrate={kbit} ! h264parse ! flvmux streamable=true \
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
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let limit = Duration::from_secs(u64::from(frames / 30 + 1)) + PUSH_SLACK;
    let Ok(out) = rx.recv_timeout(limit) else {
        let _ = kill(pid, Signal::SIGKILL);
        panic!("gst-launch-1.0 did not finish pushing {frames} frames to {url} in {limit:?}");
    };
    let out = out.expect("wait for gst-launch-1.0");
    assert!(
        out.status.success(),
        "gst-launch-1.0 failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
