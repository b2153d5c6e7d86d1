//! The leader's way to each node's Docker engine, and the certificates it uses.
//!
//! The rules, so no Docker engine is ever open to the network by accident:
//! - `tcp://` endpoints are reached over TLS only: the leader shows its client certificate and
//!   trusts only daemon certificates signed by the CA in the Docker TLS directory. Plain TCP is used
//!   only for a node an admin explicitly marked insecure (`setNodeDockerInsecure`), and the web app
//!   shows that mark.
//! - `unix://` endpoints are used only for the leader's own node: a worker announcing a socket
//!   path must not make the leader drive the leader's own daemon.
//!
//! The TLS directory (`docker_tls_dir`, default `<data_dir>/docker-tls`) has Docker's own layout:
//! `ca.pem`, `cert.pem`, `key.pem` (as in `DOCKER_CERT_PATH`), plus `ca-key.pem` when the leader
//! made the CA itself. At start, when `ca.pem` is missing, the leader makes a CA and its own client
//! certificate there; `trellis docker-tls server-cert` issues a daemon's certificate from that CA.
//! An admin with a CA of their own puts its files there instead.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use bollard::Docker;
use entity::node;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use trellis_proto::DockerEndpoint;

use crate::{
    error::{ApiError, ApiResult},
    infra::pki::{load_ca, new_ca, new_server_cert, validity, write_file},
};

/// How long a Docker call may take before the node counts as unreachable.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The leader's Docker TLS directory.
#[derive(Debug, Clone)]
pub struct DockerTls {
    dir: PathBuf,
}

impl DockerTls {
    /// Uses `dir`, making a CA and the leader's client certificate there when it has no `ca.pem`.
    pub fn ensure(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let tls = DockerTls {
            dir: dir.to_owned(),
        };
        if !tls.ca().exists() {
            tls.make_ca()?;
            tracing::info!(dir = %dir.display(), "made a CA and a client certificate for Docker over TLS");
        }
        for f in [tls.ca(), tls.cert(), tls.key()] {
            if !f.is_file() {
                anyhow::bail!(
                    "{} is missing (a Docker TLS directory holds ca.pem, cert.pem and key.pem)",
                    f.display()
                );
            }
        }
        Ok(tls)
    }

    /// The CA certificate daemons' certificates must be signed by.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The leader's client certificate.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The leader's client key.
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }

    fn make_ca(&self) -> anyhow::Result<()> {
        let (ca_key, ca_cert, issuer) = new_ca("Trellis Docker CA", None)?;

        let client_key = KeyPair::generate()?;
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client
            .distinguished_name
            .push(DnType::CommonName, "trellis-leader");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut client);
        let client_cert = client.signed_by(&client_key, &issuer)?;

        // Keys first and the CA last: a directory with ca.pem is a finished one.
        write_file(&self.ca_key(), ca_key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&self.key(), client_key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&self.cert(), client_cert.pem().as_bytes(), 0o644)?;
        write_file(&self.ca(), ca_cert.pem().as_bytes(), 0o644)?;
        Ok(())
    }

    /// Issues a Docker daemon's server certificate for `hosts` (names or IP addresses) from the
    /// leader's CA, writing `ca.pem`, `server-cert.pem` and `server-key.pem` into `out`.
    pub fn issue_server_cert(&self, hosts: &[String], out: &Path) -> anyhow::Result<()> {
        if hosts.is_empty() {
            anyhow::bail!("name at least one --host the daemon is reached by");
        }
        let (ca_pem, issuer) = load_ca(&self.ca(), &self.ca_key(), "the leader itself")?;
        let (key, cert) = new_server_cert(hosts, &issuer)?;
        std::fs::create_dir_all(out)?;
        write_file(
            &out.join("server-key.pem"),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_file(&out.join("server-cert.pem"), cert.pem().as_bytes(), 0o644)?;
        write_file(&out.join("ca.pem"), ca_pem.as_bytes(), 0o644)?;
        Ok(())
    }
}

/// How the leader reaches a node's Docker engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum DockerTransport {
    /// The Unix socket of the leader's own machine.
    Unix,
    /// TCP with TLS and the leader's client certificate.
    Tls,
    /// Plain TCP: an admin marked this node insecure.
    Plain,
}

/// What a node's Docker engine says about itself.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
pub struct DockerEngine {
    /// Engine version, e.g. `28.2.2`.
    pub version: String,
    /// Docker API version.
    pub api_version: String,
    /// Operating system the engine runs on.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// Containers on the engine, running or not.
    pub containers: i64,
    /// Containers running.
    pub containers_running: i64,
    /// Images on the engine.
    pub images: i64,
    /// Bytes of the images (each image's size; layers shared by images are counted in each).
    pub images_bytes: f64,
    /// Bytes the containers wrote (their writable layers).
    pub containers_bytes: f64,
    /// How the leader reached it.
    pub transport: DockerTransport,
}

/// The leader's access to nodes' Docker engines.
#[derive(Debug, Clone)]
pub struct DockerAccess {
    tls: DockerTls,
    local_node: Option<String>,
}

impl DockerAccess {
    /// Access with the certificates in `tls`; `local_node` is the leader's own node, the only one
    /// whose `unix://` endpoint is used.
    pub fn new(tls: DockerTls, local_node: Option<String>) -> Self {
        DockerAccess { tls, local_node }
    }

    /// The node's endpoint and how it would be reached; `FORBIDDEN` when it may not be.
    pub fn plan(&self, node: &node::Model) -> ApiResult<(DockerEndpoint, DockerTransport)> {
        let id = &node.id;
        let endpoint: DockerEndpoint = node
            .docker_endpoint
            .as_deref()
            .ok_or_else(|| {
                ApiError::NotFound(format!("a Docker endpoint announced by node {id:?}"))
            })?
            .parse()
            .map_err(|e: String| ApiError::BadRequest(e))?;
        let transport = match &endpoint {
            DockerEndpoint::Unix(_) if self.local_node.as_deref() == Some(id.as_str()) => {
                DockerTransport::Unix
            }
            DockerEndpoint::Unix(_) => {
                return Err(ApiError::Forbidden(format!(
                    "node {id:?} announced a unix socket: only the leader's own node may; \
                     give the node's daemon a tcp:// endpoint with TLS"
                )));
            }
            DockerEndpoint::Tcp { .. } if node.docker_insecure => DockerTransport::Plain,
            DockerEndpoint::Tcp { .. } => DockerTransport::Tls,
        };
        Ok((endpoint, transport))
    }

    /// A client for the node's engine, speaking the newest API version both sides know (this
    /// asks the engine, so it also proves the engine is reachable the way the rules allow).
    pub async fn connect(&self, node: &node::Model) -> ApiResult<(Docker, DockerTransport)> {
        let (endpoint, transport) = self.plan(node)?;
        let secs = DOCKER_TIMEOUT.as_secs();
        let v = bollard::API_DEFAULT_VERSION;
        let client = match (&endpoint, transport) {
            (DockerEndpoint::Unix(path), _) => Docker::connect_with_unix(path, secs, v),
            (DockerEndpoint::Tcp { .. }, DockerTransport::Plain) => {
                Docker::connect_with_http(&endpoint.to_string(), secs, v)
            }
            (DockerEndpoint::Tcp { .. }, _) => Docker::connect_with_ssl(
                &endpoint.to_string(),
                &self.tls.key(),
                &self.tls.cert(),
                &self.tls.ca(),
                secs,
                v,
            ),
        };
        let client = client.map_err(|e| {
            ApiError::Internal(format!("cannot make a Docker client for {endpoint}: {e}"))
        })?;
        let client = within_timeout(node, client.negotiate_version())
            .await?
            .map_err(|e| unreachable(node, transport, &e))?;
        Ok((client, transport))
    }

    /// Asks the node's engine what it is. `UNAVAILABLE` when it cannot be reached as the rules
    /// above demand (the reason is logged, never sent: Docker's error text stays on the leader).
    pub async fn engine(&self, node: &node::Model) -> ApiResult<DockerEngine> {
        let (client, transport) = self.connect(node).await?;
        let call = async {
            let version = client.version().await?;
            let info = client.info().await?;
            let images = client
                .list_images(None::<bollard::query_parameters::ListImagesOptions>)
                .await?;
            let containers = client
                .list_containers(Some(
                    bollard::query_parameters::ListContainersOptionsBuilder::default()
                        .all(true)
                        .size(true)
                        .build(),
                ))
                .await?;
            Ok::<_, bollard::errors::Error>((version, info, images, containers))
        };
        let (version, info, images, containers) = within_timeout(node, call)
            .await?
            .map_err(|e| unreachable(node, transport, &e))?;
        Ok(DockerEngine {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            os: version.os.unwrap_or_default(),
            arch: version.arch.unwrap_or_default(),
            containers: info.containers.unwrap_or_default(),
            containers_running: info.containers_running.unwrap_or_default(),
            images: info.images.unwrap_or_default(),
            #[allow(clippy::cast_precision_loss)]
            images_bytes: images.iter().map(|i| i.size.max(0)).sum::<i64>() as f64,
            #[allow(clippy::cast_precision_loss)]
            containers_bytes: containers
                .iter()
                .map(|c| c.size_rw.unwrap_or(0).max(0))
                .sum::<i64>() as f64,
            transport,
        })
    }
}

async fn within_timeout<T>(
    node: &node::Model,
    work: impl std::future::Future<Output = T>,
) -> ApiResult<T> {
    tokio::time::timeout(DOCKER_TIMEOUT, work)
        .await
        .map_err(|_| {
            ApiError::Unavailable(format!(
                "node {:?}'s Docker engine did not answer within {} s",
                node.id,
                DOCKER_TIMEOUT.as_secs()
            ))
        })
}

/// The error a caller sees for an engine that could not be reached; Docker's own text is logged.
fn unreachable(
    node: &node::Model,
    transport: DockerTransport,
    e: &bollard::errors::Error,
) -> ApiError {
    tracing::warn!(node_id = node.id, ?transport, error = ?e, "Docker engine unreachable");
    ApiError::Unavailable(match transport {
        DockerTransport::Tls => format!(
            "cannot reach node {:?}'s Docker engine over TLS: the daemon must run with \
             --tlsverify and a certificate from `trellis docker-tls server-cert` \
             (or an admin marks the node insecure to allow plain TCP)",
            node.id
        ),
        _ => format!("cannot reach node {:?}'s Docker engine", node.id),
    })
}
