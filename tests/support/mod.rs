//! Helpers shared by the integration tests: real helper processes that stop on drop.
// Each test binary uses only some of these helpers.
#![allow(dead_code)]

pub mod broker;
pub mod daemon;
pub mod fleet;
pub mod http;
pub mod media;
pub mod mqtt;
pub mod netns;
pub mod prometheus;
pub mod pull;
pub mod receiver;
pub mod recorded;
pub mod rig;
pub mod rtmp;
pub mod tls;

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Waits for `child` to exit within `bound` (polled: a child's exit has no event to
/// await here); `None` if it is still running then.
pub fn wait_child(
    child: &mut std::process::Child,
    bound: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + bound;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
