//! `TlsFiles`: a throwaway PKI made with the `openssl` CLI — a CA, a server certificate
//! for 127.0.0.1/localhost, a client certificate, and an unrelated CA for "wrong CA" tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// PEM files in `dir` (deleted on drop). Keys are EC P-256 in PKCS#8.
pub struct TlsFiles {
    pub dir: TempDir,
    /// The CA that signed `server_cert` and `client_cert`.
    pub ca: PathBuf,
    /// CN 127.0.0.1, SAN IP:127.0.0.1 and DNS:localhost, EKU serverAuth.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// CN edgecam-test-client, EKU clientAuth.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here: trusting only it must fail the handshake.
    pub other_ca: PathBuf,
}

// rustls (webpki) accepts only v3 certificates with these extensions: a CA needs
// basicConstraints CA:TRUE, a server needs its IP in an IP SAN (the CN is ignored).
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

const DAYS: &str = "3650";

/// Generates the CAs, keys and certificates; panics (with openssl's stderr) on failure.
pub fn generate() -> TlsFiles {
    let dir = tempfile::tempdir().expect("tempdir for TLS files");
    let d = dir.path();
    let cnf = d.join("openssl.cnf");
    std::fs::write(&cnf, OPENSSL_CNF).expect("write openssl.cnf");

    let ca = self_signed_ca(d, &cnf, "ca", "edgecam test CA");
    let other_ca = self_signed_ca(d, &cnf, "other-ca", "edgecam other CA");
    let server_cert = signed_cert(d, &cnf, "server", "127.0.0.1", "server", 2);
    let client_cert = signed_cert(d, &cnf, "client", "edgecam-test-client", "client", 3);

    TlsFiles {
        ca,
        other_ca,
        server_cert,
        server_key: d.join("server.key"),
        client_cert,
        client_key: d.join("client.key"),
        dir,
    }
}

/// Writes `<name>.key` and a self-signed `<name>.pem`; returns the certificate's path.
fn self_signed_ca(dir: &Path, cnf: &Path, name: &str, cn: &str) -> PathBuf {
    let key = new_key(dir, name);
    let cert = dir.join(format!("{name}.pem"));
    run(openssl()
        .args(["req", "-x509", "-new", "-extensions", "ca", "-days", DAYS])
        .args(["-subj", &format!("/CN={cn}")])
        .arg("-config")
        .arg(cnf)
        .arg("-key")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    cert
}

/// Writes `<name>.key` and `<name>.pem` signed by `ca.pem`/`ca.key` with the
/// `extensions` section of the config; returns the certificate's path.
fn signed_cert(
    dir: &Path,
    cnf: &Path,
    name: &str,
    cn: &str,
    extensions: &str,
    serial: u32,
) -> PathBuf {
    let key = new_key(dir, name);
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.pem"));
    run(openssl()
        .args(["req", "-new", "-subj", &format!("/CN={cn}")])
        .arg("-config")
        .arg(cnf)
        .arg("-key")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    run(openssl()
        .args(["x509", "-req", "-days", DAYS, "-extensions", extensions])
        .args(["-set_serial", &serial.to_string()])
        .arg("-extfile")
        .arg(cnf)
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(dir.join("ca.pem"))
        .arg("-CAkey")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(&cert));
    cert
}

/// Writes an EC P-256 key in PKCS#8 PEM to `<name>.key`.
fn new_key(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(format!("{name}.key"));
    run(openssl()
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .arg("-out")
        .arg(&key));
    key
}

fn openssl() -> Command {
    Command::new("openssl")
}

/// Runs `cmd` to completion; panics with its stderr unless it succeeds.
fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .expect("run openssl (is the openssl CLI installed?)");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
