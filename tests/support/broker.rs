//! `Broker`: a real `mosquitto` on 127.0.0.1 with a generated config in a temp dir,
//! plain, TLS or password-protected; killed on drop.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::free_port;
use super::tls::TlsFiles;

/// How long mosquitto may take to log that it is running.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh ports tried by the constructors that pick one, should another process take
/// the free port between `free_port()` and mosquitto's bind.
const PORT_ATTEMPTS: usize = 3;

/// A running `mosquitto`. Its log (stderr) is kept in memory, readable with `log()`,
/// waitable with `wait_log()`, and printed if a test panics while the broker lives.
pub struct Broker {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    settings: Settings,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<String>>,
}

/// What the config says beyond the listener and logging.
#[derive(Clone, Default)]
struct Settings {
    /// TLS listener from `ca.pem`, `server.pem`, `server.key` in the broker's dir;
    /// the flag is `require_certificate`.
    tls: Option<bool>,
    /// Anonymous clients refused; accounts in `passwd` in the broker's dir.
    password: bool,
    /// Sessions, subscriptions and queued messages saved in the broker's dir on a clean
    /// stop and loaded at start.
    persistence: bool,
    /// No limit on the messages queued for a client (mosquitto drops beyond 1000 by
    /// default), so a burst reaches the daemon whole.
    unbounded_queues: bool,
    /// A bridge to the broker on this port carrying `<prefix>/#` both ways at QoS 1.
    bridge: Option<(u16, String)>,
}

impl Broker {
    /// A plain broker allowing anonymous clients, on a free port.
    pub fn start() -> Broker {
        Broker::start_any_port(tempdir(), Settings::default())
    }

    /// A plain broker that keeps persistent sessions (and their queued messages) across
    /// a `stop` and `restart`.
    pub fn start_persistent() -> Broker {
        let settings = Settings {
            persistence: true,
            ..Settings::default()
        };
        Broker::start_any_port(tempdir(), settings)
    }

    /// A plain broker that queues any number of messages for a slow client instead of
    /// dropping beyond 1000: every message of a burst is delivered.
    pub fn start_unbounded() -> Broker {
        let settings = Settings {
            unbounded_queues: true,
            ..Settings::default()
        };
        Broker::start_any_port(tempdir(), settings)
    }

    /// A plain broker (a site's) bridged to `central`: `<prefix>/#` goes both ways at
    /// QoS 1, retained flags kept. Returns once `central` logged the bridge's connection.
    pub fn start_bridged_to(central: &mut Broker, prefix: &str) -> Broker {
        let settings = Settings {
            bridge: Some((central.port(), prefix.to_owned())),
            ..Settings::default()
        };
        let site = Broker::start_any_port(tempdir(), settings);
        central
            .wait_log(|l| l.contains("New bridge connected"), START_TIMEOUT)
            .unwrap_or_else(|| {
                panic!(
                    "the bridge from port {} never reached port {}; site log:\n{}",
                    site.port(),
                    central.port(),
                    site.log()
                )
            });
        site
    }

    /// A plain broker on `port`, e.g. to bring back one that was killed (see also `restart`).
    pub fn start_on(port: u16) -> Broker {
        Broker::start_in(tempdir(), port, Settings::default())
            .unwrap_or_else(|log| panic!("mosquitto did not start on port {port}; log:\n{log}"))
    }

    /// A TLS-only broker serving `tls.server_cert` and trusting `tls.ca` for client
    /// certificates, which it demands from every client if `require_client_cert`.
    /// The files are copied, so `tls` need not outlive the broker.
    pub fn start_tls(tls: &TlsFiles, require_client_cert: bool) -> Broker {
        let dir = tempdir();
        for (from, to) in [
            (&tls.ca, "ca.pem"),
            (&tls.server_cert, "server.pem"),
            (&tls.server_key, "server.key"),
        ] {
            std::fs::copy(from, dir.path().join(to)).expect("copy TLS file for mosquitto");
        }
        let settings = Settings {
            tls: Some(require_client_cert),
            ..Settings::default()
        };
        Broker::start_any_port(dir, settings)
    }

    /// A plain broker that refuses anonymous clients and knows only `user`/`password`.
    pub fn start_with_password(user: &str, password: &str) -> Broker {
        let dir = tempdir();
        let out = Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(dir.path().join("passwd"))
            .args([user, password])
            .output()
            .expect("run mosquitto_passwd");
        assert!(
            out.status.success(),
            "mosquitto_passwd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let settings = Settings {
            password: true,
            ..Settings::default()
        };
        Broker::start_any_port(dir, settings)
    }

    fn start_any_port(dir: tempfile::TempDir, settings: Settings) -> Broker {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match spawn(dir.path(), port, &settings, &Arc::default()) {
                Ok((child, lines, log)) => {
                    return Broker {
                        child,
                        port,
                        dir,
                        settings,
                        lines,
                        log,
                    };
                }
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => panic!("mosquitto did not start; log:\n{log}"),
            }
        }
        panic!("mosquitto found no free port in {PORT_ATTEMPTS} attempts; log:\n{last}")
    }

    fn start_in(dir: tempfile::TempDir, port: u16, settings: Settings) -> Result<Broker, String> {
        let (child, lines, log) = spawn(dir.path(), port, &settings, &Arc::default())?;
        Ok(Broker {
            child,
            port,
            dir,
            settings,
            lines,
            log,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:PORT`, or `mqtts://…` for a TLS broker.
    pub fn url(&self) -> String {
        let scheme = if self.settings.tls.is_some() {
            "mqtts"
        } else {
            "mqtt"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `url()` with `user:password@` (percent-encoded), for the test-side `MqttClient`.
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        let mut url = url::Url::parse(&self.url()).expect("broker URL parses");
        url.set_username(user).expect("URL takes a username");
        url.set_password(Some(password))
            .expect("URL takes a password");
        url.into()
    }

    /// The broker's temp dir (config, copied certificates, password file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything mosquitto logged so far, across restarts.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Consumes log lines until one matches `pred` and returns it, or `None` after
    /// `timeout` or once mosquitto has exited.
    pub fn wait_log(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills mosquitto (SIGKILL) and reaps it; clients see their connection drop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops mosquitto with SIGTERM (a persistent broker saves its sessions) and reaps it;
    /// clients see their connection drop.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// Kills mosquitto if it runs, then starts it again with the same config on the
    /// same port (without persistence, retained messages and sessions are lost; call
    /// `stop` first to let a persistent broker save them).
    pub fn restart(&mut self) {
        self.kill();
        self.log_line("--- restart ---");
        let (child, lines, _) = spawn(self.dir.path(), self.port, &self.settings, &self.log)
            .unwrap_or_else(|log| {
                panic!(
                    "mosquitto did not restart on port {}; log:\n{log}",
                    self.port
                )
            });
        self.child = child;
        self.lines = lines;
    }

    fn log_line(&self, line: &str) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(log, "{line}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- mosquitto log (port {}) ---\n{}", self.port, self.log());
        }
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir for mosquitto")
}

/// The config for `settings` on 127.0.0.1:`port`, files taken from `dir`.
fn config(dir: &Path, port: u16, settings: &Settings) -> String {
    // Run as root, mosquitto 2 switches to the `mosquitto` user unless told `user root`,
    // and then cannot read the 0700 temp dir. Run as anyone else, `user` is ignored.
    let mut conf = String::from("user root\n");
    if settings.persistence {
        let _ = writeln!(
            conf,
            "persistence true\npersistence_location {}/",
            dir.display()
        );
    } else {
        conf.push_str("persistence false\n");
    }
    conf.push_str(
        "log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         connection_messages true\n",
    );
    if settings.unbounded_queues {
        conf.push_str("max_queued_messages 0\n");
    }
    // mosquitto 2 defaults `allow_anonymous` to false as soon as a `listener` is configured.
    let _ = writeln!(conf, "allow_anonymous {}", !settings.password);
    if settings.password {
        let _ = writeln!(conf, "password_file {}", dir.join("passwd").display());
    }
    let _ = writeln!(conf, "listener {port} 127.0.0.1");
    // Listener options must follow their `listener` line.
    if let Some(require_client_cert) = settings.tls {
        let _ = writeln!(conf, "cafile {}", dir.join("ca.pem").display());
        let _ = writeln!(conf, "certfile {}", dir.join("server.pem").display());
        let _ = writeln!(conf, "keyfile {}", dir.join("server.key").display());
        let _ = writeln!(conf, "require_certificate {require_client_cert}");
        conf.push_str("use_identity_as_username false\n");
    }
    if let Some((central, prefix)) = &settings.bridge {
        // try_private (the default) tells the central mosquitto this is a bridge: it
        // keeps retained flags and sends nothing back the way it came.
        let _ = writeln!(
            conf,
            "connection site-{port}\naddress 127.0.0.1:{central}\n\
             bridge_protocol_version mqttv311\ncleansession true\nnotifications false\n\
             restart_timeout 1\ntopic {prefix}/# both 1"
        );
    }
    conf
}

type Spawned = (Child, mpsc::Receiver<String>, Arc<Mutex<String>>);

/// Writes the config into `dir`, runs mosquitto and waits for its "running" line,
/// appending its stderr to `log`. On failure reaps it and returns the log.
fn spawn(
    dir: &Path,
    port: u16,
    settings: &Settings,
    log: &Arc<Mutex<String>>,
) -> Result<Spawned, String> {
    let conf_path = dir.join("mosquitto.conf");
    std::fs::write(&conf_path, config(dir, port, settings)).expect("write mosquitto.conf");
    let mut child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mosquitto (run scripts/install-deps.sh)");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, lines) = mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut log = sink.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = writeln!(log, "{line}");
            drop(log);
            // The broker may be dropped first; the log above still has the line.
            let _ = tx.send(line);
        }
    });

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            // "mosquitto version 2.0.11 running" comes after every listener is bound.
            Ok(line) if line.ends_with(" running") => return Ok((child, lines, log.clone())),
            Ok(_) => {}
            Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                let text = log.lock().unwrap_or_else(PoisonError::into_inner).clone();
                return Err(text);
            }
        }
    }
}
