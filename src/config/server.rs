//! The daemon's own listeners (`[server]`): the local RTSP server that serves every
//! stream, and the Prometheus metrics endpoint. Each is off while its address is unset.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Invalid, quote};

/// The systemd credential read for the RTSP server's users when `users_file` is unset.
pub const USERS_CREDENTIAL: &str = "rtsp-users";

/// Which authentication schemes the RTSP server offers when it has users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethods {
    /// Digest only: the password never crosses the network.
    Digest,
    /// Basic only (use with RTSPS).
    Basic,
    /// Both; the client picks.
    Any,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `host:port` the RTSP server listens on; every stream is served at
    /// `rtsp://<board>:<port>/<stream id>`. Off when unset.
    pub rtsp_listen: Option<String>,
    /// `host:port` of the Prometheus endpoint (`/metrics`). Off when unset.
    pub metrics_listen: Option<String>,
    /// Clients served at once, over all streams; more are refused.
    pub max_clients: u32,
    /// `user:password` lines; else `$CREDENTIALS_DIRECTORY/rtsp-users` if present. No
    /// authentication without either.
    pub users_file: Option<PathBuf>,
    pub auth: AuthMethods,
    /// PEM certificate (chain) and key: the server speaks RTSPS (`rtsps://`) only.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            rtsp_listen: None,
            metrics_listen: None,
            max_clients: 16,
            users_file: None,
            auth: AuthMethods::Digest,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// One user of the RTSP server.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "User({})", self.name)
    }
}

impl ServerConfig {
    /// The RTSP listen address, when the server is on.
    pub fn rtsp_addr(&self) -> Option<SocketAddr> {
        self.rtsp_listen.as_deref().and_then(|a| a.parse().ok())
    }

    /// The metrics listen address, when the endpoint is on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listen.as_deref().and_then(|a| a.parse().ok())
    }

    /// Whether the RTSP server speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls_cert_file.is_some()
    }

    /// The RTSP server's users: from `users_file`, else the `rtsp-users` systemd
    /// credential if present; empty when neither (no authentication).
    pub fn users(&self) -> Result<Vec<User>, String> {
        let path = match &self.users_file {
            Some(f) => f.clone(),
            None => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) if Path::new(&dir).join(USERS_CREDENTIAL).exists() => {
                    Path::new(&dir).join(USERS_CREDENTIAL)
                }
                _ => return Ok(Vec::new()),
            },
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        parse_users(&text).map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
    }

    pub(super) fn validate(&self) -> Result<(), Invalid> {
        for (key, value) in [
            ("server.rtsp_listen", &self.rtsp_listen),
            ("server.metrics_listen", &self.metrics_listen),
        ] {
            if let Some(v) = value
                && v.parse::<SocketAddr>().is_err()
            {
                return Err(Invalid::new(
                    key,
                    format!("{} must be host:port, e.g. 127.0.0.1:8554", quote(v)),
                ));
            }
        }
        if let (Some(a), Some(b)) = (self.rtsp_addr(), self.metrics_addr())
            && a.port() == b.port()
            && a.port() != 0
        {
            return Err(Invalid::new(
                "server.metrics_listen",
                "must not use the RTSP server's port",
            ));
        }
        if !(1..=256).contains(&self.max_clients) {
            return Err(Invalid::new(
                "server.max_clients",
                format!("{} is out of range 1..=256", self.max_clients),
            ));
        }
        self.users()
            .map_err(|why| Invalid::new("server.users_file", why))?;
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(Invalid::new(
                    "server.tls_key_file",
                    "RTSPS needs the key too",
                ));
            }
            (None, Some(_)) => {
                return Err(Invalid::new(
                    "server.tls_cert_file",
                    "RTSPS needs the certificate too",
                ));
            }
            _ => {}
        }
        for (key, file) in [
            ("server.tls_cert_file", &self.tls_cert_file),
            ("server.tls_key_file", &self.tls_key_file),
        ] {
            if let Some(f) = file
                && let Err(e) = std::fs::metadata(f)
            {
                return Err(Invalid::new(
                    key,
                    format!("cannot read {}: {e}", f.display()),
                ));
            }
        }
        Ok(())
    }
}

/// `user:password` lines; blank lines and `#` comments skipped. The error is the line
/// number and why (never the line itself: it holds a password).
pub fn parse_users(text: &str) -> Result<Vec<User>, (usize, &'static str)> {
    let mut users: Vec<User> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, password)) = line.split_once(':') else {
            return Err((n + 1, "must be user:password"));
        };
        if !super::is_valid_id(name, 64) {
            return Err((n + 1, "the user must be 1-64 characters of A-Z a-z 0-9 _ -"));
        }
        if password.is_empty() {
            return Err((n + 1, "the password is empty"));
        }
        if users.iter().any(|u| u.name == name) {
            return Err((n + 1, "the user is listed twice"));
        }
        users.push(User {
            name: name.to_owned(),
            password: password.to_owned(),
        });
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_and_errors_name_the_line_only() {
        let users = parse_users("# viewers\nalice:s3cret:with:colons\n\nbob:pw\n").expect("ok");
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].password, "s3cret:with:colons");
        assert_eq!(parse_users("alice\n"), Err((1, "must be user:password")));
        assert_eq!(
            parse_users("a:b\na:c\n"),
            Err((2, "the user is listed twice"))
        );
        assert_eq!(parse_users("a b:c\n").map_err(|e| e.0), Err(1));
        assert!(!format!("{:?}", users[1]).contains("pw"));
    }

    #[test]
    fn addresses_and_limits_are_checked() {
        let mut s = ServerConfig {
            rtsp_listen: Some("0.0.0.0:8554".into()),
            metrics_listen: Some("127.0.0.1:9108".into()),
            ..ServerConfig::default()
        };
        assert_eq!(s.validate(), Ok(()));
        s.metrics_listen = Some("localhost".into());
        assert_eq!(
            s.validate().map_err(|e| e.key),
            Err("server.metrics_listen".into())
        );
        s.metrics_listen = Some("127.0.0.1:8554".into());
        assert_eq!(
            s.validate().map_err(|e| e.key),
            Err("server.metrics_listen".into())
        );
        s.metrics_listen = None;
        s.max_clients = 0;
        assert_eq!(
            s.validate().map_err(|e| e.key),
            Err("server.max_clients".into())
        );
        s.max_clients = 4;
        s.tls_cert_file = Some("/nonexistent.pem".into());
        assert_eq!(
            s.validate().map_err(|e| e.key),
            Err("server.tls_key_file".into())
        );
        s.tls_key_file = Some("/nonexistent.key".into());
        assert_eq!(
            s.validate().map_err(|e| e.key),
            Err("server.tls_cert_file".into())
        );
        s.tls_cert_file = None;
        s.tls_key_file = None;
        s.users_file = Some("/nonexistent/users".into());
        assert_eq!(
            s.validate().map_err(|e| e.key),
            Err("server.users_file".into())
        );
    }
}
