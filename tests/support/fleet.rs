//! `Fleet`: a few real daemons, each with one tiny test stream to one real receiver, on
//! a real mosquitto, a client watching all their topics, and the real `edgecam fleet`
//! run to its end under a bound.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::broker::Broker;
use super::daemon::Daemon;
use super::mqtt::{MqttClient, Msg};
use super::receiver::Receiver;

/// Bound on a daemon coming online, a stream streaming, a report.
pub const WAIT: Duration = Duration::from_secs(20);
/// Bound on one run of the CLI (its own timeouts are shorter).
const CLI_BOUND: Duration = Duration::from_secs(60);

/// One device of the fleet.
pub struct Member {
    pub id: String,
    pub daemon: Daemon,
}

/// Fields drop in order: the daemons first, the broker last.
pub struct Fleet {
    pub members: Vec<Member>,
    /// Subscribed to `edgecam/#` on the broker the daemons use.
    pub watcher: MqttClient,
    pub rx: Receiver,
    pub broker: Broker,
}

/// What one CLI run printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The line of `device` (the first one starting with its id and a space).
    pub fn line(&self, device: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(device))
            .unwrap_or_else(|| panic!("no line for {device}:\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The config of device `id` in `groups`, its one stream `cam0` (160x120 at 5 fps,
/// x264) to `upstream`, MQTT on `url` with 1 s intervals. The state directory is the
/// one `Daemon` gives each daemon.
pub fn device_config(id: &str, groups: &[&str], url: &str, upstream: &str) -> String {
    let groups = if groups.is_empty() {
        String::new()
    } else {
        format!("groups = {groups:?}\n")
    };
    format!(
        "device_id = {id:?}\n{groups}\n[mqtt]\nurl = {url:?}\n\
         stats_interval_s = 1\nhealth_interval_s = 1\n\n\
         [[stream]]\nid = \"cam0\"\nsource = \"test\"\nwidth = 160\nheight = 120\nframerate = 5\n\
         encoder = \"x264\"\nbitrate_kbps = 800\nkeyframe_interval = 10\n\
         upstream = [{upstream:?}]\ntransport = \"tcp\"\n"
    )
}

/// Whether a `status` payload says online.
pub fn is_online(m: &Msg) -> bool {
    m.state() == "online"
}

/// Whether a `status` payload says offline.
pub fn is_offline(m: &Msg) -> bool {
    m.state() == "offline"
}

impl Fleet {
    /// Starts a receiver and one daemon per (id, groups) on `broker` (whose devices
    /// publish there, or to a broker bridged to `watch`'s), and waits until each is
    /// online with `cam0` streaming and its stats showing frames.
    pub fn start(broker: Broker, devices: &[(&str, &[&str])]) -> Fleet {
        let rx = Receiver::start(0, None);
        let watcher = MqttClient::connect(&broker.url(), &["edgecam/#"]);
        let members = devices
            .iter()
            .map(|(id, groups)| {
                let upstream = rx.url(&format!("/{id}/cam0"));
                let config = device_config(id, groups, &broker.url(), &upstream);
                Member {
                    id: (*id).to_owned(),
                    daemon: Daemon::start(&config, &[]),
                }
            })
            .collect();
        let mut fleet = Fleet {
            members,
            watcher,
            rx,
            broker,
        };
        let ids: Vec<String> = fleet.members.iter().map(|m| m.id.clone()).collect();
        for id in &ids {
            fleet.wait_ready(id);
        }
        fleet
    }

    /// Waits until `id` is online, `cam0` streaming and its latest stats show frames.
    pub fn wait_ready(&mut self, id: &str) {
        let w = &mut self.watcher;
        let topic = |leaf: &str| format!("edgecam/{id}/{leaf}");
        w.wait_latest(&topic("status"), is_online, WAIT)
            .unwrap_or_else(|| panic!("{id} never came online"));
        w.wait_latest(
            &topic("streams/cam0/state"),
            |m| m.json()["state"] == "streaming",
            WAIT,
        )
        .unwrap_or_else(|| panic!("{id}/cam0 never streamed"));
        w.wait_latest(
            &topic("streams/cam0/stats"),
            |m| m.json()["fps"].as_f64().is_some_and(|f| f > 0.0),
            WAIT,
        )
        .unwrap_or_else(|| panic!("{id}/cam0 stats never showed frames"));
    }

    pub fn member(&mut self, id: &str) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("no member {id}"))
    }

    /// `edgecam fleet --broker <this broker> ARGS`.
    pub fn cli(&self, args: &[&str]) -> Run {
        let url = self.broker.url();
        let mut all = vec!["--broker", url.as_str()];
        all.extend_from_slice(args);
        cli(&all)
    }

    /// `config.get` of `id`'s running configuration, asked directly.
    pub fn config_get(&mut self, id: &str) -> Value {
        let reply = self
            .watcher
            .request(
                &format!("edgecam/{id}/cmd/config.get"),
                r#"{"id": "t"}"#,
                &format!("edgecam/{id}/cmd/config.get/reply"),
                WAIT,
            )
            .unwrap_or_else(|| panic!("{id}: no reply to config.get"));
        assert_eq!(reply["ok"], true, "{reply}");
        reply["result"].clone()
    }
}

/// Starts `edgecam fleet ARGS`, stdout piped.
fn spawn(args: &[&str], stderr: Stdio) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .arg("fleet")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn edgecam fleet")
}

/// `edgecam fleet ARGS` to its end within [`CLI_BOUND`] (killed and a panic past it).
pub fn cli(args: &[&str]) -> Run {
    let mut child = spawn(args, Stdio::piped());
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let status = super::wait_child(&mut child, CLI_BOUND);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let run = Run {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "edgecam fleet {args:?} ran past {CLI_BOUND:?}:\n{run}"
    );
    run
}

/// A running `edgecam fleet ARGS` whose output is read as it comes (`watch`); killed on
/// drop if still running.
pub struct Live {
    child: std::process::Child,
    chunks: std::sync::mpsc::Receiver<String>,
    pub stdout: String,
}

impl Live {
    pub fn start(args: &[&str]) -> Live {
        let mut child = spawn(args, Stdio::null());
        let mut pipe = child.stdout.take().expect("piped stdout");
        let (tx, chunks) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0
                    || tx
                        .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                        .is_err()
                {
                    break;
                }
            }
        });
        Live {
            child,
            chunks,
            stdout: String::new(),
        }
    }

    /// Reads output until the text after the last screen clear satisfies `pred`; returns
    /// that screen, or `None` after `timeout` or at the end of the output.
    pub fn wait_screen(
        &mut self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(screen) = self.stdout.rsplit("\x1b[2J").next()
                && pred(screen)
            {
                return Some(screen.to_owned());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stdout.push_str(&self.chunks.recv_timeout(left).ok()?);
        }
    }

    /// SIGINT (Ctrl-C), then the exit code, waited for within `bound`.
    pub fn interrupt(&mut self, bound: Duration) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        super::wait_child(&mut self.child, bound)?.code()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
