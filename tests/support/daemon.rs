//! Runs the real `edgecam` binary with a config written to a temp dir, a real systemd
//! notification socket, and its log captured to a file; killed on drop.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    notes: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// The extra environment given to `start`, kept for `restart`.
    env: Vec<(String, String)>,
}

/// Writes `config` and returns (dir, path).
pub fn write_config(config: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("edgecam.toml");
    std::fs::write(&path, config).expect("write config");
    (dir, path)
}

/// Runs `edgecam ARGS` to completion, bounded, returning (status, stdout, stderr).
pub fn run_to_end(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(args)
        .output()
        .expect("run edgecam");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

impl Daemon {
    /// Starts `edgecam run` with `config`. Extra environment (e.g. WATCHDOG_USEC) in `env`.
    pub fn start(config: &str, env: &[(&str, &str)]) -> Daemon {
        let (dir, _) = write_config(config);
        let socket_path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
        let (tx, notes) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    if tx.send(line.to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        let log = std::fs::File::create(dir.path().join("edgecam.log")).expect("log file");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let child = spawn(dir.path(), &env, log);
        Daemon {
            child,
            dir,
            notes,
            seen: Vec::new(),
            env,
        }
    }

    /// The configuration file the daemon runs with (`config.set` rewrites it).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("edgecam.toml")
    }

    /// Stops the daemon (SIGTERM, killed if it is not gone within 5 s) and starts it
    /// again with the same configuration file, directory, notify socket and environment.
    /// The log is appended to; notifications of the previous run are forgotten.
    pub fn restart(&mut self) {
        if self.terminate(Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.clear_notes();
        let log = std::fs::File::options()
            .append(true)
            .open(self.dir.path().join("edgecam.log"))
            .expect("log file");
        self.child = spawn(self.dir.path(), &self.env, log);
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits for a notification line matching `pred` (READY=1, STATUS=…).
    pub fn wait_note(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        if let Some(hit) = self.seen.iter().find(|l| pred(l)) {
            return Some(hit.clone());
        }
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.notes.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Every notification received so far.
    pub fn notes(&mut self) -> &[String] {
        while let Ok(line) = self.notes.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// Forgets the notifications seen so far, so the next wait sees only new ones.
    pub fn clear_notes(&mut self) {
        self.notes();
        self.seen.clear();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("edgecam.log")).unwrap_or_default()
    }

    /// Polls the log until `pred` holds for it; returns the log then, or `None` after
    /// `timeout`.
    pub fn wait_log(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if pred(&log) {
                return Some(log);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns the status and how long it took.
    pub fn terminate(&mut self, bound: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        let _ = kill(self.pid(), Signal::SIGTERM);
        let status = self.wait_exit(bound)?;
        Some((status, started.elapsed()))
    }

    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        super::wait_child(&mut self.child, bound)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- edgecam log ---\n{}", self.log());
        }
    }
}

/// Runs `edgecam run --config DIR/edgecam.toml` notifying to `DIR/notify.sock`, its
/// stderr going to `log`.
/// The daemon's state directory when the configuration names none.
fn state_dir(dir: &Path) -> PathBuf {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    state
}

fn spawn(dir: &Path, env: &[(String, String)], log: std::fs::File) -> Child {
    // Like systemd, name the daemon's own pid in WATCHDOG_PID: exec keeps the shell's pid.
    Command::new("sh")
        .args(["-c", "export WATCHDOG_PID=$$; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_edgecam"))
        .args(["run", "--config"])
        .arg(dir.join("edgecam.toml"))
        .env("NOTIFY_SOCKET", dir.join("notify.sock"))
        .env("RUST_LOG", "info")
        // A state directory of its own, as systemd's StateDirectory= gives (kept across
        // `restart`); a configured `state_dir` or the test's environment wins.
        .env("STATE_DIRECTORY", state_dir(dir))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn edgecam")
}

/// A one-stream config publishing the test pattern to `upstreams`.
pub fn stream_config(id: &str, upstreams: &[String], width: u32, height: u32) -> String {
    let list = upstreams
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[stream]]\nid = {id:?}\nsource = \"test\"\nwidth = {width}\nheight = {height}\nframerate = 30\nencoder = \"auto\"\nbitrate_kbps = 800\nkeyframe_interval = 30\nupstream = [{list}]\ntransport = \"tcp\"\n"
    )
}
