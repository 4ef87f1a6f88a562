//! The kernel's own account of an output's TCP connection: the GStreamer sink that owns
//! the socket (rtspclientsink, rtmp2sink) does not expose it, so the session's socket is
//! found among this process's descriptors by its peer address and read with TCP_INFO:
//! bytes the peer acknowledged, bytes still unsent in the socket, RTT, retransmissions.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::{LazyLock, Mutex};

use nix::sys::socket::{SockaddrLike, SockaddrStorage, getpeername, getsockname};

use super::TransportReport;

/// Sockets already taken by a session of this process (by inode), so two sessions to
/// the same server do not read the same connection.
static CLAIMED: LazyLock<Mutex<HashSet<u64>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// One session's TCP connection, borrowed by descriptor number from the sink that owns
/// it. The descriptor is checked to still be the same socket before every read.
#[derive(Debug)]
pub struct TcpSocket {
    fd: RawFd,
    inode: u64,
}

impl TcpSocket {
    /// The connection to one of `peers` not taken by another session, if any. Sessions
    /// to the same server (a stream and its sub-stream, live and a backfill) start at the
    /// same moment: of the connections not taken, the one whose sent bytes are nearest to
    /// `written`, what this session handed its sink, is this session's.
    pub fn find(peers: &[SocketAddr], written: u64) -> Option<TcpSocket> {
        TcpSocket::claim(
            |fd| {
                getpeername::<SockaddrStorage>(fd)
                    .is_ok_and(|peer| peers.iter().any(|p| same_address(&peer, p)))
            },
            |fd| tcp_info(fd).map_or(u64::MAX, |i| i.tcpi_bytes_sent.abs_diff(written)),
        )
    }

    /// A connection accepted on local `port` not taken yet: called as a server accepts
    /// a client (before it accepts another), it is that client's.
    pub fn accepted(port: u16) -> Option<TcpSocket> {
        TcpSocket::claim(
            |fd| {
                getpeername::<SockaddrStorage>(fd).is_ok()
                    && getsockname::<SockaddrStorage>(fd)
                        .is_ok_and(|local| local_port(&local) == Some(port))
            },
            |_| 0,
        )
    }

    /// Of this process's sockets not taken by a session that `wanted` accepts, the one
    /// `distance` puts first.
    fn claim(wanted: impl Fn(RawFd) -> bool, distance: impl Fn(RawFd) -> u64) -> Option<TcpSocket> {
        let mut claimed = CLAIMED.lock().ok()?;
        // (distance, fd, inode): a TcpSocket made here and dropped would release a claim.
        let mut best: Option<(u64, RawFd, u64)> = None;
        for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RawFd>().ok())
            else {
                continue;
            };
            let Some(inode) = socket_inode(fd) else {
                continue;
            };
            if claimed.contains(&inode) || !wanted(fd) {
                continue;
            }
            let d = distance(fd);
            if best.is_none_or(|(b, _, _)| d < b) {
                best = Some((d, fd, inode));
            }
        }
        let (_, fd, inode) = best?;
        claimed.insert(inode);
        Some(TcpSocket { fd, inode })
    }

    /// What the kernel reports of the connection; `None` once the descriptor no longer
    /// holds this socket (the sink closed it).
    pub fn report(&self) -> Option<TransportReport> {
        if socket_inode(self.fd) != Some(self.inode) {
            return None;
        }
        let info = tcp_info(self.fd)?;
        Some(TransportReport {
            acked_bytes: Some(info.tcpi_bytes_acked),
            unsent_bytes: u64::from(info.tcpi_notsent_bytes),
            // Sent (resends aside) and not acknowledged. Segment counts times the MSS
            // would not do: loopback's MSS is 64 KiB.
            in_flight_bytes: info
                .tcpi_bytes_sent
                .saturating_sub(info.tcpi_bytes_retrans)
                .saturating_sub(info.tcpi_bytes_acked),
            rtt_ms: Some(f64::from(info.tcpi_rtt) / 1000.0),
            min_rtt_ms: Some(f64::from(info.tcpi_min_rtt) / 1000.0),
            link_kbps: Some(info.tcpi_delivery_rate as f64 * 8.0 / 1000.0),
            retransmits: Some(u64::from(info.tcpi_total_retrans)),
            ..TransportReport::default()
        })
    }
}

impl Drop for TcpSocket {
    fn drop(&mut self) {
        if let Ok(mut claimed) = CLAIMED.lock() {
            claimed.remove(&self.inode);
        }
    }
}

/// The inode of the socket behind `fd`, from its `/proc/self/fd` link (`socket:[N]`).
fn socket_inode(fd: RawFd) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn local_port(a: &SockaddrStorage) -> Option<u16> {
    a.as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| a.as_sockaddr_in6().map(|a| a.port()))
}

fn same_address(a: &SockaddrStorage, b: &SocketAddr) -> bool {
    match (b, a.as_sockaddr_in(), a.as_sockaddr_in6()) {
        (SocketAddr::V4(b), Some(a), _) => a.ip() == *b.ip() && a.port() == b.port(),
        (SocketAddr::V6(b), _, Some(a)) => a.ip() == *b.ip() && a.port() == b.port(),
        // An IPv4 peer reached over a dual-stack socket shows as ::ffff:a.b.c.d.
        (SocketAddr::V4(b), None, Some(a)) => {
            a.ip().to_ipv4_mapped() == Some(*b.ip()) && a.port() == b.port()
        }
        _ => a.family().is_none(),
    }
}

/// Whether this kernel reports TCP_INFO with the byte counts used here (Linux 4.19 on;
/// an emulator such as qemu-user may answer with four bytes only). Asked once, of a
/// loopback connection of our own.
pub fn supported() -> bool {
    static SUPPORTED: LazyLock<bool> = LazyLock::new(|| {
        use std::os::fd::AsRawFd;
        let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
            return false;
        };
        listener
            .local_addr()
            .and_then(std::net::TcpStream::connect)
            .is_ok_and(|client| tcp_info(client.as_raw_fd()).is_some())
    });
    *SUPPORTED
}

/// getsockopt(TCP_INFO); `None` unless the kernel filled in the fields read here.
/// Neither std nor nix wraps it.
#[allow(unsafe_code)]
fn tcp_info(fd: RawFd) -> Option<libc::tcp_info> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable, aligned `tcp_info` of `len` bytes; the kernel writes
    // at most `len` bytes and sets `len` to what it wrote. The descriptor may belong to
    // another thread's socket: TCP_INFO only reads its state.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    // The last field read is tcpi_bytes_retrans.
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_retrans) + 8;
    if rc != 0 || (len as usize) < needed {
        return None;
    }
    // SAFETY: zero-initialised above (all-zero is a valid `tcp_info`: plain integers)
    // and partly or wholly filled by the kernel.
    Some(unsafe { info.assume_init() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn finds_a_connection_and_reads_what_the_peer_acknowledged() {
        if !supported() {
            // qemu-user answers TCP_INFO with four bytes: nothing to read there.
            eprintln!("TCP_INFO without byte counts here; only the lookup is tested");
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let _client = TcpStream::connect(addr).expect("connect");
            let socket = TcpSocket::find(&[addr], 0).expect("found by peer");
            assert_eq!(socket.report(), None);
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = TcpStream::connect(addr).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let socket = TcpSocket::find(&[addr], 0).expect("found by peer");
        // Claimed: a second session to the same peer does not get it.
        assert!(TcpSocket::find(&[addr], 0).is_none());
        client.write_all(&[7u8; 100_000]).expect("write");
        let mut got = vec![0u8; 100_000];
        server.read_exact(&mut got).expect("read");
        // The acknowledgement may trail the read by a moment on a busy machine.
        let mut report = socket.report().expect("report");
        for _ in 0..200 {
            if report.acked_bytes >= Some(100_000) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            report = socket.report().expect("report");
        }
        assert!(report.acked_bytes >= Some(100_000), "{report:?}");
        assert_eq!(report.unsent_bytes, 0);
        assert!(report.rtt_ms.is_some());
        drop(socket);
        assert!(TcpSocket::find(&[addr], 0).is_some(), "released on drop");
        drop(client);
    }

    #[test]
    fn of_two_connections_to_one_peer_the_one_that_sent_as_much_is_taken() {
        use std::os::fd::AsRawFd;
        if !supported() {
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut small = TcpStream::connect(addr).expect("connect");
        let (mut server_small, _) = listener.accept().expect("accept");
        let mut large = TcpStream::connect(addr).expect("connect");
        let (mut server_large, _) = listener.accept().expect("accept");
        small.write_all(&[1u8; 10_000]).expect("write");
        large.write_all(&[2u8; 200_000]).expect("write");
        let mut got = vec![0u8; 200_000];
        server_small.read_exact(&mut got[..10_000]).expect("read");
        server_large.read_exact(&mut got).expect("read");
        let taken = TcpSocket::find(&[addr], 200_000).expect("found");
        assert_eq!(taken.fd, large.as_raw_fd());
        let other = TcpSocket::find(&[addr], 200_000).expect("the other one");
        assert_eq!(other.fd, small.as_raw_fd());
    }
}
