//! The `[mqtt]` and `[homeassistant]` sections: broker, topics, intervals, credentials,
//! TLS, the command allowlist, and Home Assistant discovery.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Invalid, quote};
use crate::command::CommandName;

/// The MQTT connection and what is published over it. Absent = MQTT off.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://host[:1883]` or `mqtts://host[:8883]`.
    pub url: String,
    pub topic_prefix: String,
    pub health_interval_s: u32,
    pub stats_interval_s: u32,
    pub username: Option<String>,
    /// File holding the password; else `$CREDENTIALS_DIRECTORY/mqtt-password` if present.
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Command names (or `*`) allowed; `daemon.restart` only when named.
    pub commands_allow: Vec<String>,
    /// Events kept while the broker is unreachable; the oldest are dropped beyond this.
    pub event_queue: usize,
    /// Upper bound of the reconnection backoff, seconds (full jitter: each wait is
    /// anywhere between 0 and the exponential delay, so a fleet spreads out).
    pub reconnect_max_s: u32,
    /// After losing a connection, the first attempt comes at a random moment within this
    /// many seconds (at most `reconnect_max_s`; within the backoff's window when that is
    /// longer), so that the boards of a broker that restarts come back spread out rather
    /// than in one wave.
    pub reconnect_spread_s: u32,
}

/// Home Assistant MQTT discovery.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantConfig {
    pub enabled: bool,
    pub discovery_prefix: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: String::new(),
            topic_prefix: "edgecam".into(),
            health_interval_s: 10,
            stats_interval_s: 5,
            username: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            commands_allow: vec!["*".into()],
            event_queue: 1000,
            reconnect_max_s: 60,
            reconnect_spread_s: 10,
        }
    }
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig {
            enabled: false,
            discovery_prefix: "homeassistant".into(),
        }
    }
}

impl MqttConfig {
    /// Whether `command` may run under `commands_allow`.
    pub fn allows(&self, command: CommandName) -> bool {
        self.commands_allow
            .iter()
            .any(|a| a == command.as_str() || (a == "*" && !command.explicit_only()))
    }

    /// Host, port and whether TLS is on, from `url`.
    pub fn endpoint(&self) -> Option<(String, u16, bool)> {
        let u = url::Url::parse(&self.url).ok()?;
        let tls = u.scheme() == "mqtts";
        let host = u
            .host_str()?
            .trim_matches(|c| c == '[' || c == ']')
            .to_owned();
        Some((host, u.port().unwrap_or(if tls { 8883 } else { 1883 }), tls))
    }

    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let u = url::Url::parse(&self.url).map_err(|_| {
            Invalid::new(
                "mqtt.url",
                format!(
                    "{} is not a URL such as mqtt://127.0.0.1:1883",
                    quote(&self.url)
                ),
            )
        })?;
        if !matches!(u.scheme(), "mqtt" | "mqtts") || u.host_str().is_none_or(str::is_empty) {
            return Err(Invalid::new(
                "mqtt.url",
                "must be mqtt://host[:port] or mqtts://host[:port]",
            ));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(Invalid::new(
                "mqtt.url",
                "put credentials in mqtt.username and mqtt.password_file, not in the URL",
            ));
        }
        let p = &self.topic_prefix;
        if p.is_empty() || p.starts_with('/') || p.ends_with('/') || p.contains(['+', '#', '\0']) {
            return Err(Invalid::new(
                "mqtt.topic_prefix",
                format!(
                    "{} must be a topic without wildcards or leading/trailing '/'",
                    quote(p)
                ),
            ));
        }
        for (key, v) in [
            ("mqtt.health_interval_s", self.health_interval_s),
            ("mqtt.stats_interval_s", self.stats_interval_s),
        ] {
            if !(1..=3600).contains(&v) {
                return Err(Invalid::new(key, format!("{v} is out of range 1..=3600")));
            }
        }
        if !(1..=3600).contains(&self.reconnect_max_s) {
            return Err(Invalid::new(
                "mqtt.reconnect_max_s",
                format!("{} is out of range 1..=3600", self.reconnect_max_s),
            ));
        }
        if self.reconnect_spread_s > 3600 {
            return Err(Invalid::new(
                "mqtt.reconnect_spread_s",
                format!("{} is out of range 0..=3600", self.reconnect_spread_s),
            ));
        }
        if !(1..=100_000).contains(&self.event_queue) {
            return Err(Invalid::new(
                "mqtt.event_queue",
                format!("{} is out of range 1..=100000", self.event_queue),
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            let key = if self.cert_file.is_some() {
                "mqtt.key_file"
            } else {
                "mqtt.cert_file"
            };
            return Err(Invalid::new(
                key,
                "cert_file and key_file go together (mutual TLS)",
            ));
        }
        for (i, c) in self.commands_allow.iter().enumerate() {
            if c != "*" && CommandName::parse(c).is_none() {
                return Err(Invalid::new(
                    format!("mqtt.commands_allow[{i}]"),
                    format!("unknown command {}", quote(c)),
                ));
            }
        }
        Ok(())
    }
}

impl HomeAssistantConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let p = &self.discovery_prefix;
        if p.is_empty() || p.contains(['+', '#', '\0']) || p.starts_with('/') || p.ends_with('/') {
            return Err(Invalid::new(
                "homeassistant.discovery_prefix",
                format!("{} is not a valid topic prefix", quote(p)),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> MqttConfig {
        MqttConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            ..MqttConfig::default()
        }
    }

    #[test]
    fn wildcard_allows_all_but_restart() {
        let m = good();
        assert!(m.allows(CommandName::Ping));
        assert!(m.allows(CommandName::ConfigSet));
        assert!(!m.allows(CommandName::DaemonRestart));
        let m = MqttConfig {
            commands_allow: vec!["*".into(), "daemon.restart".into()],
            ..good()
        };
        assert!(m.allows(CommandName::DaemonRestart));
        let m = MqttConfig {
            commands_allow: vec!["ping".into()],
            ..good()
        };
        assert!(!m.allows(CommandName::Info));
    }

    #[test]
    fn endpoints() {
        assert_eq!(good().endpoint(), Some(("127.0.0.1".into(), 1883, false)));
        let m = MqttConfig {
            url: "mqtts://broker.example".into(),
            ..good()
        };
        assert_eq!(m.endpoint(), Some(("broker.example".into(), 8883, true)));
    }

    #[test]
    fn validation_names_keys() {
        let key = |m: MqttConfig| m.validate().expect_err("invalid").key;
        assert_eq!(good().validate(), Ok(()));
        assert_eq!(
            key(MqttConfig {
                url: "http://x".into(),
                ..good()
            }),
            "mqtt.url"
        );
        assert_eq!(
            key(MqttConfig {
                url: "mqtt://u:p@x".into(),
                ..good()
            }),
            "mqtt.url"
        );
        assert_eq!(
            key(MqttConfig {
                topic_prefix: "a/#".into(),
                ..good()
            }),
            "mqtt.topic_prefix"
        );
        assert_eq!(
            key(MqttConfig {
                stats_interval_s: 0,
                ..good()
            }),
            "mqtt.stats_interval_s"
        );
        assert_eq!(
            key(MqttConfig {
                cert_file: Some("c.pem".into()),
                ..good()
            }),
            "mqtt.key_file"
        );
        assert_eq!(
            key(MqttConfig {
                commands_allow: vec!["ping".into(), "reboot".into()],
                ..good()
            }),
            "mqtt.commands_allow[1]"
        );
    }
}
