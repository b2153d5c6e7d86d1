//! TLS on the leader's own listeners: HTTPS for the web app and API (websockets become `wss://`),
//! MQTT over TLS for the embedded broker's gate.
//!
//! With `tls_cert` and `tls_key` set, both listeners speak TLS only, whatever address they bind,
//! so passwords, session cookies, API tokens, join tokens and node credentials never cross the
//! network in clear. `trellis tls-cert --host <name> --out <dir>` makes a CA and a certificate
//! for the leader; agents then trust the leader with `--broker-ca <dir>/ca.pem`. The leader's own
//! in-process clients (bridge and local agent) trust exactly the leader's certificate.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::TlsAcceptor;

use crate::infra::pki::{load_ca, new_ca, new_server_cert, write_file};

/// Warn at start when the leader's certificate expires within this many days.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// The leader's certificate and key, ready to serve.
#[derive(Clone)]
pub struct LeaderTls {
    /// Accepts TLS connections with the leader's certificate.
    pub acceptor: TlsAcceptor,
    /// The leader's own certificate (the first in `tls_cert`), which its in-process clients trust.
    pub cert: CertificateDer<'static>,
}

impl std::fmt::Debug for LeaderTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderTls").finish_non_exhaustive()
    }
}

impl LeaderTls {
    /// Loads the certificate chain `cert` and private key `key` (PEM). The error names the key
    /// (`tls_cert` or `tls_key`) at fault and why.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, (&'static str, String)> {
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| ("tls_cert", format!("cannot read {}: {e}", cert.display())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                (
                    "tls_cert",
                    format!("{} is not a PEM certificate file: {e}", cert.display()),
                )
            })?;
        let Some(leaf) = chain.first().cloned() else {
            return Err((
                "tls_cert",
                format!("{} holds no PEM certificate", cert.display()),
            ));
        };
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            (
                "tls_key",
                format!("{} holds no usable PEM private key: {e}", key.display()),
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ("tls_cert", e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| {
                (
                    "tls_key",
                    format!(
                        "{} does not go with the certificate in {}: {e}",
                        key.display(),
                        cert.display()
                    ),
                )
            })?;
        Ok(LeaderTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert: leaf,
        })
    }

    /// The names and addresses the certificate is for, and when it expires (UTC seconds).
    pub fn describe(&self) -> Option<(Vec<String>, i64)> {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.cert).ok()?;
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => (*d).to_owned(),
                        x509_parser::extensions::GeneralName::IPAddress(b) => ip_text(b),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some((names, cert.validity().not_after.timestamp()))
    }

    /// Logs which names the certificate is for and warns when it expired or expires soon: the
    /// leader's own clients do not check names or dates (they pin the certificate), so a bad
    /// certificate would show only on the workers.
    pub fn log_summary(&self) {
        let Some((names, not_after)) = self.describe() else {
            tracing::warn!(
                "the leader's TLS certificate could not be read for its names and expiry"
            );
            return;
        };
        let days_left = (not_after - chrono::Utc::now().timestamp()) / 86_400;
        let expires = chrono::DateTime::from_timestamp(not_after, 0)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        if days_left < 0 {
            tracing::error!(
                names = names.join(", "),
                expires,
                "the leader's TLS certificate has EXPIRED: workers cannot connect; issue a new one (trellis tls-cert)"
            );
        } else if days_left < EXPIRY_WARNING_DAYS {
            tracing::warn!(
                names = names.join(", "),
                expires,
                days_left,
                "the leader's TLS certificate expires soon: issue a new one (trellis tls-cert)"
            );
        } else {
            tracing::info!(
                names = names.join(", "),
                expires,
                "serving TLS with the leader's certificate"
            );
        }
    }

    /// A TLS client configuration that trusts exactly this certificate.
    pub fn client_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        trellis_agent::tls::trusting_only(self.cert.clone()).map_err(|e| anyhow::anyhow!(e))
    }
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()).to_string(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()).to_string(),
        _ => format!("{bytes:?}"),
    }
}

/// Whether the CA certificate `ca_pem` may sign for `host`: `Ok(())`, or the names it may sign for.
fn ca_permits(ca_pem: &str, host: &str) -> anyhow::Result<Result<(), Vec<String>>> {
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the CA certificate is not PEM: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("the CA certificate cannot be parsed: {e}"))?;
    let Some(nc) = cert
        .name_constraints()
        .map_err(|e| anyhow::anyhow!("the CA's name constraints cannot be parsed: {e}"))?
    else {
        return Ok(Ok(()));
    };
    let permitted = nc.value.permitted_subtrees.as_deref().unwrap_or_default();
    let ip = host.parse::<std::net::IpAddr>().ok();
    let mut allowed = Vec::new();
    for subtree in permitted {
        use x509_parser::extensions::GeneralName;
        match (&subtree.base, ip) {
            (GeneralName::DNSName(d), None) => {
                let (d, h) = (d.to_ascii_lowercase(), host.to_ascii_lowercase());
                if h == d || h.ends_with(&format!(".{d}")) {
                    return Ok(Ok(()));
                }
                allowed.push(d);
            }
            (GeneralName::IPAddress(b), Some(ip)) => {
                let (addr, mask) = b.split_at(b.len() / 2);
                let octets = match ip {
                    std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
                    std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
                };
                if octets.len() == addr.len()
                    && octets
                        .iter()
                        .zip(addr.iter().zip(mask))
                        .all(|(o, (a, m))| o & m == a & m)
                {
                    return Ok(Ok(()));
                }
                allowed.push(ip_text(addr));
            }
            (GeneralName::DNSName(d), Some(_)) => allowed.push((*d).to_owned()),
            (GeneralName::IPAddress(b), None) => allowed.push(ip_text(&b[..b.len() / 2])),
            (other, _) => allowed.push(other.to_string()),
        }
    }
    Ok(Err(allowed))
}

/// What `trellis tls-cert` wrote.
#[derive(Debug)]
pub struct IssuedLeaderCert {
    /// The CA agents and browsers trust.
    pub ca: PathBuf,
    /// The leader's certificate (`tls_cert`).
    pub cert: PathBuf,
    /// The leader's key (`tls_key`).
    pub key: PathBuf,
    /// Whether the CA was made now (else an existing one in `out` signed the certificate).
    pub new_ca: bool,
}

/// Makes a certificate for the leader, reachable as `hosts` (names or IP addresses), in `out`:
/// `cert.pem` and `key.pem` (0600), signed by the CA in `out` (`ca.pem`, `ca-key.pem`), which is
/// made first when there is none. The CA may sign for those hosts only (name constraints), so a
/// browser or agent that trusts it trusts nothing else. Re-running (to renew) keeps the CA, so
/// agents that trust it keep working; a host the CA may not sign for is refused.
pub fn issue_leader_cert(hosts: &[String], out: &Path) -> anyhow::Result<IssuedLeaderCert> {
    std::fs::create_dir_all(out)?;
    let ca = out.join("ca.pem");
    let ca_key = out.join("ca-key.pem");
    let new = !ca.exists();
    let (key, cert) = if new {
        let (ca_key_pair, ca_cert, issuer) = new_ca("Trellis leader CA", Some(hosts))?;
        let issued = new_server_cert(hosts, &issuer)?;
        write_file(&ca_key, ca_key_pair.serialize_pem().as_bytes(), 0o600)?;
        write_file(&ca, ca_cert.pem().as_bytes(), 0o644)?;
        issued
    } else {
        let (ca_pem, issuer) = load_ca(&ca, &ca_key, "trellis tls-cert")?;
        for host in hosts {
            if let Err(allowed) = ca_permits(&ca_pem, host)? {
                anyhow::bail!(
                    "the CA in {} may only sign for {}, not {host}: make a new CA with another --out \
                     (and give agents its ca.pem)",
                    out.display(),
                    allowed.join(", ")
                );
            }
        }
        new_server_cert(hosts, &issuer)?
    };
    let (cert_path, key_path) = (out.join("cert.pem"), out.join("key.pem"));
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(IssuedLeaderCert {
        ca,
        cert: cert_path,
        key: key_path,
        new_ca: new,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_load_and_bad_files_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("tls");
        let issued =
            issue_leader_cert(&["leader.lab".into(), "10.0.0.2".into()], &out).expect("issue");
        assert!(issued.new_ca);
        let tls = LeaderTls::load(&issued.cert, &issued.key).expect("load");
        assert!(!tls.cert.is_empty());
        let (names, not_after) = tls.describe().expect("describe");
        assert_eq!(names, ["leader.lab", "10.0.0.2"]);
        assert!(not_after > chrono::Utc::now().timestamp() + 3000 * 86_400);
        // A second run (to renew) keeps the CA; the CA signs only for its own hosts.
        let ca_before = std::fs::read(&issued.ca).expect("ca");
        let again =
            issue_leader_cert(&["10.0.0.2".into(), "api.leader.lab".into()], &out).expect("again");
        assert!(!again.new_ca);
        assert_eq!(std::fs::read(&again.ca).expect("ca"), ca_before);
        for other in ["evil.example", "10.0.0.3", "lab"] {
            let e = issue_leader_cert(&[other.into()], &out)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("may only sign for leader.lab, 10.0.0.2") && e.contains(other),
                "{e}"
            );
        }

        let (key, why) = LeaderTls::load(&out.join("missing.pem"), &issued.key).unwrap_err();
        assert_eq!(key, "tls_cert");
        assert!(why.contains("missing.pem"), "{why}");
        let (key, _) = LeaderTls::load(&issued.cert, &issued.cert).unwrap_err();
        assert_eq!(key, "tls_key");
        // A key that belongs to another certificate.
        let (key, why) = LeaderTls::load(&issued.ca, &issued.key).unwrap_err();
        assert_eq!(key, "tls_key", "{why}");
        assert!(
            issue_leader_cert(&[], &dir.path().join("none")).is_err(),
            "a certificate needs a host"
        );
    }

    /// Trusting exactly one certificate: a server showing another one (even from a CA the
    /// client would otherwise trust) gets no handshake; the pinned one does.
    #[tokio::test]
    async fn a_pinned_client_accepts_only_that_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = issue_leader_cert(&["localhost".into()], &dir.path().join("a")).expect("a");
        let b = issue_leader_cert(&["localhost".into()], &dir.path().join("b")).expect("b");
        let a = LeaderTls::load(&a.cert, &a.key).expect("load a");
        let b = LeaderTls::load(&b.cert, &b.key).expect("load b");
        let handshake = |server: &LeaderTls, client: &LeaderTls| {
            let acceptor = server.acceptor.clone();
            let connector =
                tokio_rustls::TlsConnector::from(client.client_config().expect("client config"));
            async move {
                let (c, s) = tokio::io::duplex(64 * 1024);
                let server = tokio::spawn(async move { acceptor.accept(s).await.map(|_| ()) });
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let client = connector.connect(name, c).await.map(|_| ());
                let _ = server.await;
                client
            }
        };
        handshake(&a, &a)
            .await
            .expect("the pinned certificate is accepted");
        let e = handshake(&b, &a)
            .await
            .expect_err("another certificate is refused");
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    }
}
