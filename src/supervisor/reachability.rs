//! The cheap upstream check: does the server accept connections? A TCP connect for
//! RTSP and RTMP; for SRT (UDP, no connection to open) the first step of its handshake,
//! which only a listening SRT server answers.

use std::time::Duration;

use tokio::net::{TcpStream, UdpSocket};

/// Bound on one connection attempt.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

/// `host:port` of an upstream URL (default ports: rtsp 554, rtsps 322, rtmp 1935,
/// rtmps 443; an SRT URL names its port).
pub fn address(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let default = match u.scheme() {
        "rtsps" => 322,
        "rtmp" => 1935,
        "rtmps" => 443,
        _ => 554,
    };
    let host = u.host_str()?;
    let port = u.port().unwrap_or(default);
    Some(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// True when the upstream accepts a connection within [`PROBE_TIMEOUT`].
pub async fn reachable(url: &str) -> bool {
    let Some(addr) = address(url) else {
        return false;
    };
    if url.starts_with("srt://") {
        return tokio::time::timeout(PROBE_TIMEOUT, srt_listening(&addr))
            .await
            .unwrap_or(false);
    }
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Sends an SRT induction handshake (sent twice, in case one is lost) and waits for the
/// listener's induction answer.
async fn srt_listening(addr: &str) -> bool {
    let Ok(target) = tokio::net::lookup_host(addr).await.map(|mut a| a.next()) else {
        return false;
    };
    let Some(target) = target else { return false };
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let Ok(socket) = UdpSocket::bind(local).await else {
        return false;
    };
    if socket.connect(target).await.is_err() {
        return false;
    }
    let request = srt_induction(fastrand::u32(1..0x7fff_ffff));
    let mut answer = [0u8; 1500];
    for _ in 0..2 {
        if socket.send(&request).await.is_err() {
            return false;
        }
        match tokio::time::timeout(PROBE_TIMEOUT / 2, socket.recv(&mut answer)).await {
            // Nothing listening: the port-unreachable answer fails the receive.
            Ok(Err(_)) => return false,
            Ok(Ok(n)) => return is_srt_induction_answer(&answer[..n]),
            Err(_) => {}
        }
    }
    false
}

/// A caller's induction handshake (SRT handshake v4 layout, 16-byte header + 48-byte
/// body); `socket_id` names the caller's side.
fn srt_induction(socket_id: u32) -> [u8; 64] {
    let mut p = [0u8; 64];
    // Control packet, type 0 (handshake); subtype, type info, timestamp, destination 0.
    p[0] = 0x80;
    let words: [u32; 6] = [
        4,                             // version
        2,                             // encryption 0, extension field 2
        fastrand::u32(0..0x7fff_ffff), // initial sequence number
        1500,                          // MTU
        8192,                          // flow window
        1,                             // handshake type: induction
    ];
    for (i, w) in words.iter().enumerate() {
        p[16 + 4 * i..20 + 4 * i].copy_from_slice(&w.to_be_bytes());
    }
    p[40..44].copy_from_slice(&socket_id.to_be_bytes());
    p
}

/// Whether a datagram is a listener's answer to an induction: a handshake control
/// packet of induction type.
fn is_srt_induction_answer(p: &[u8]) -> bool {
    p.len() >= 64 && p[0] == 0x80 && p[1] == 0 && p[36..40] == 1u32.to_be_bytes()
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
        assert_eq!(address("rtmp://h/app/key").as_deref(), Some("h:1935"));
        assert_eq!(address("rtmps://h/app/key").as_deref(), Some("h:443"));
        assert_eq!(
            address("srt://h:9000?streamid=a").as_deref(),
            Some("h:9000")
        );
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

    #[tokio::test]
    async fn srt_probe_needs_an_srt_listener() {
        // A UDP socket that is not SRT stays silent: not reachable.
        let quiet = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = quiet.local_addr().expect("addr").port();
        assert!(!reachable(&format!("srt://127.0.0.1:{port}")).await);
        drop(quiet);
        // Nothing bound: refused at once.
        assert!(!reachable(&format!("srt://127.0.0.1:{port}")).await);
        let mut answer = srt_induction(7);
        answer[36..40].copy_from_slice(&1u32.to_be_bytes());
        assert!(is_srt_induction_answer(&answer));
        assert!(!is_srt_induction_answer(&answer[..40]));
    }
}
