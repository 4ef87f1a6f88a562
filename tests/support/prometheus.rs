//! `Prometheus`: a real Prometheus server on 127.0.0.1 scraping given targets every
//! second, its configuration and storage in a temp dir; killed on drop. Also
//! `check_metrics`, Prometheus' own `promtool check metrics`.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::free_port;
use super::http;

/// How long Prometheus may take to answer `/-/ready` (it replays an empty WAL first).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Prometheus {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) every 1 s and
    /// waits until it is ready.
    pub fn start(targets: &[String]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: edgecam\n    static_configs:\n      - targets: [{list}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus (Debian package `prometheus`)");
        let prometheus = Prometheus { child, addr, dir };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !http::get(&prometheus.addr, "/-/ready").is_ok_and(|r| r.status == 200) {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready; log:\n{}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `data` of an API call (`/api/v1/...`) whose status is `success`.
    pub fn api(&self, path: &str) -> Option<Value> {
        let response = http::get(&self.addr, path).ok()?;
        let v: Value = serde_json::from_str(&response.body).ok()?;
        (v["status"] == "success").then(|| v["data"].clone())
    }

    /// An instant query's value, when it has exactly one series.
    pub fn value(&self, expr: &str) -> Option<f64> {
        let data = self.api(&http::with_query("/api/v1/query", "query", expr))?;
        let result = data["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Polls `expr` until `pred` holds for its value; the last value seen otherwise.
    pub fn wait_value(
        &self,
        expr: &str,
        pred: impl Fn(f64) -> bool,
        timeout: Duration,
    ) -> Result<f64, Option<f64>> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(v) = self.value(expr) {
                if pred(v) {
                    return Ok(v);
                }
                last = Some(v);
            }
            if Instant::now() >= deadline {
                return Err(last);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- prometheus log ---\n{}", self.log());
        }
    }
}

/// Runs `promtool check metrics` on `text`: its exit status and what it printed (lint
/// findings, parse errors).
pub fn check_metrics(text: &str) -> (std::process::ExitStatus, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool (Debian package `prometheus`)");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, printed)
}
