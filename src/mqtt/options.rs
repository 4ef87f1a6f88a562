//! rumqttc connection options from `[mqtt]`: endpoint, client id, last will, credentials
//! (from a file or systemd's credential directory) and TLS / mutual TLS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};

use super::MqttError;
use crate::config::MqttConfig;

/// The system CA bundle used for `mqtts://` when `ca_file` is not set.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Largest incoming packet: the protocol's own limit (256 MiB). A command payload above
/// 64 KiB is answered `invalid_argument`; a smaller client limit would instead make the
/// client drop the connection on a large message, and reconnect into it again if it is
/// retained.
const MAX_INCOMING: usize = 268_435_455;
/// Largest outgoing message (JPEG snapshots).
const MAX_OUTGOING: usize = 8 * 1024 * 1024;

pub fn build(
    config: &MqttConfig,
    client_id: &str,
    status_topic: &str,
) -> Result<MqttOptions, MqttError> {
    let (host, port, tls) = config.endpoint().ok_or_else(|| {
        MqttError::Options(format!("bad url {}", crate::redact::redact(&config.url)))
    })?;
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_keep_alive(Duration::from_secs(15))
        // A persistent session: the broker keeps the subscription and queues QoS 1
        // commands while the device is away; unacknowledged messages are sent again.
        .set_clean_session(false)
        // Commands are acknowledged once answered (see outbox.rs).
        .set_manual_acks(true)
        .set_max_packet_size(MAX_INCOMING, MAX_OUTGOING)
        .set_last_will(LastWill::new(
            status_topic,
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(user) = &config.username {
        options.set_credentials(user, password(config)?.unwrap_or_default());
    }
    if tls {
        options.set_transport(Transport::Tls(tls_config(config)?));
    }
    Ok(options)
}

/// The password from `password_file`, else `$CREDENTIALS_DIRECTORY/mqtt-password`.
pub fn password(config: &MqttConfig) -> Result<Option<String>, MqttError> {
    let path = config.password_file.clone().or_else(|| {
        std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(|d| PathBuf::from(d).join("mqtt-password"))
            .filter(|p| p.exists())
    });
    match path {
        Some(p) => read(&p, "password_file").map(|b| {
            Some(
                String::from_utf8_lossy(&b)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
            )
        }),
        None => Ok(None),
    }
}

pub(crate) fn tls_config(config: &MqttConfig) -> Result<TlsConfiguration, MqttError> {
    let ca = match &config.ca_file {
        Some(p) => read(p, "ca_file")?,
        None => read(Path::new(SYSTEM_CA_BUNDLE), "ca_file (system bundle)")?,
    };
    let client_auth = match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => Some((read(cert, "cert_file")?, read(key, "key_file")?)),
        _ => None,
    };
    Ok(TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    })
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, MqttError> {
    std::fs::read(path)
        .map_err(|e| MqttError::Options(format!("mqtt.{key} {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_comes_from_the_file_without_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").expect("write");
        let config = MqttConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            username: Some("cam".into()),
            password_file: Some(file),
            ..MqttConfig::default()
        };
        assert_eq!(password(&config).expect("read").as_deref(), Some("s3cret"));
        let options = build(&config, "edgecam-x", "edgecam/x/status").expect("options");
        assert_eq!(
            options.credentials().map(|l| l.username),
            Some("cam".to_owned())
        );
        assert_eq!(
            options.last_will().map(|w| w.topic),
            Some("edgecam/x/status".to_owned())
        );
        assert!(!options.clean_session());
        assert_eq!(options.client_id(), "edgecam-x");
    }

    #[test]
    fn missing_files_are_named() {
        let config = MqttConfig {
            url: "mqtts://127.0.0.1".into(),
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..MqttConfig::default()
        };
        let e = build(&config, "c", "t").expect_err("missing CA");
        assert!(
            e.to_string().contains("mqtt.ca_file /nonexistent/ca.pem"),
            "{e}"
        );
    }
}
