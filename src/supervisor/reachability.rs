//! The cheap upstream check: can a TCP connection be opened to the RTSP server?

use std::time::Duration;

use tokio::net::TcpStream;

/// Bound on one connection attempt.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

/// `host:port` of an RTSP URL (default port 554, 322 for rtsps).
pub fn address(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let default = if u.scheme() == "rtsps" { 322 } else { 554 };
    let host = u.host_str()?;
    let port = u.port().unwrap_or(default);
    Some(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// True when a TCP connection to the upstream opens within [`PROBE_TIMEOUT`].
pub async fn reachable(url: &str) -> bool {
    let Some(addr) = address(url) else {
        return false;
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// The index of the first reachable upstream, in list order.
pub async fn first_reachable(urls: &[String]) -> Option<usize> {
    for (i, u) in urls.iter().enumerate() {
        if reachable(u).await {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(address("rtsp://h:8554/a/b").as_deref(), Some("h:8554"));
        assert_eq!(address("rtsp://u:p@h/a").as_deref(), Some("h:554"));
        assert_eq!(address("rtsps://h/a").as_deref(), Some("h:322"));
        assert_eq!(address("rtsp://[::1]:9/a").as_deref(), Some("[::1]:9"));
    }

    #[tokio::test]
    async fn probes_a_real_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = format!("rtsp://127.0.0.1:{port}/x");
        assert!(reachable(&up).await);
        drop(listener);
        assert!(!reachable(&up).await);
        assert_eq!(first_reachable(std::slice::from_ref(&up)).await, None);
    }
}
