//! TLS on the leader's own listeners: HTTPS for the web app and API (websockets become `wss://`),
//! MQTT over TLS for the embedded broker's gate.
//!
//! With `tls_cert` and `tls_key` set, both listeners speak TLS only, whatever address they bind,
//! so passwords, session cookies, API tokens, join tokens and node credentials never cross the
//! network in clear. `trellis tls-cert --host <name> --out <dir>` makes a CA and a certificate
//! for the leader; agents then trust the leader with `--broker-ca <dir>/ca.pem`. The leader's own
//! in-process clients (bridge and local agent) trust exactly the leader's certificate.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

use crate::docker::{new_ca, new_server_cert, write_file};

/// A client must finish the TLS handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS handshakes in progress at once on the HTTP listener.
const MAX_HANDSHAKES: usize = 256;

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

    /// A TLS client configuration that trusts exactly this certificate.
    pub fn client_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        trellis_agent::tls::trusting_only(self.cert.clone()).map_err(|e| anyhow::anyhow!(e))
    }
}

/// An HTTPS listener for `axum::serve`: handshakes run in their own tasks (a slow client holds
/// up nobody else), and finished connections are handed to axum.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts TCP connections on `listener` and does their TLS handshakes until `shutdown`.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor, shutdown: CancellationToken) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "HTTPS accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "HTTPS connection refused: too many handshakes at once");
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "no TLS handshake in time"),
                    }
                });
            }
        });
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The accept loop ended with the shutdown: nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What `trellis tls-cert` wrote.
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
/// made first when there is none. Re-running with other hosts keeps the CA, so agents that trust
/// it keep working.
pub fn issue_leader_cert(hosts: &[String], out: &Path) -> anyhow::Result<IssuedLeaderCert> {
    std::fs::create_dir_all(out)?;
    let ca = out.join("ca.pem");
    let ca_key = out.join("ca-key.pem");
    let new = !ca.exists();
    let (key, cert) = if new {
        let (ca_key_pair, ca_cert, issuer) = new_ca("Trellis leader CA")?;
        let issued = new_server_cert(hosts, &issuer)?;
        write_file(&ca_key, ca_key_pair.serialize_pem().as_bytes(), 0o600)?;
        write_file(&ca, ca_cert.pem().as_bytes(), 0o644)?;
        issued
    } else {
        let ca_pem = std::fs::read_to_string(&ca)?;
        let key_pem = std::fs::read_to_string(&ca_key).map_err(|e| {
            anyhow::anyhow!(
                "{} exists but {} cannot be read ({e}): only a CA made by trellis tls-cert can sign here",
                ca.display(),
                ca_key.display()
            )
        })?;
        let ca_key_pair = rcgen::KeyPair::from_pem(&key_pem)?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, &ca_key_pair)?;
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
        // A second run keeps the CA.
        let ca_before = std::fs::read(&issued.ca).expect("ca");
        let again = issue_leader_cert(&["leader2.lab".into()], &out).expect("again");
        assert!(!again.new_ca);
        assert_eq!(std::fs::read(&again.ca).expect("ca"), ca_before);

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
}
