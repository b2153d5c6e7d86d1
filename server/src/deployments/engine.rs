//! One node's Docker engine as the reconciler sees it: the labels and names of the containers
//! Trellis owns, the calls it makes, each with a timeout, and Docker's answers sorted into what
//! they mean (gone, in the way, unreachable). Docker's own error text is logged, never shown.
//!
//! Owned containers carry, besides the deployment's own labels:
//! `io.trellis.cluster` (this leader's cluster id), `io.trellis.deployment` (the deployment's
//! id), `io.trellis.deployment-name`, `io.trellis.node` (several node entries can share one
//! engine), `io.trellis.revision` and `io.trellis.spec-hash`. A container without our cluster
//! label is foreign and is never touched, whatever its name.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bollard::{
    Docker,
    models::{
        ContainerCreateBody, ContainerInspectResponse, DeviceMapping, HealthConfig, HostConfig,
        PortBinding, RestartPolicy, RestartPolicyNameEnum,
    },
    query_parameters::{
        CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
        LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
    },
};
use entity::node;
use futures::StreamExt;

use super::{
    plan::{Observed, Status},
    spec::{ContainerSpec, restart_policy, stop_grace},
};
use crate::nodes::docker::DockerAccess;

/// Label: the cluster (leader database) that made the container.
pub const CLUSTER: &str = "io.trellis.cluster";
/// Label: the deployment's id.
pub const DEPLOYMENT: &str = "io.trellis.deployment";
/// Label: the deployment's name, for people reading `docker ps`.
pub const DEPLOYMENT_NAME: &str = "io.trellis.deployment-name";
/// Label: the node the container belongs to.
pub const NODE: &str = "io.trellis.node";
/// Label: the revision that made it.
pub const REVISION: &str = "io.trellis.revision";
/// Label: the spec hash (see `spec::spec_hash`).
pub const SPEC_HASH: &str = "io.trellis.spec-hash";

/// The container's name: `trellis-<deployment>-<node>-<hash8>`. One spec, one name: Docker
/// refuses a second container of it on one engine.
pub fn container_name(deployment: &str, node_id: &str, hash: &str) -> String {
    format!(
        "trellis-{deployment}-{node_id}-{}",
        &hash[..hash.len().min(8)]
    )
}

/// What a Docker call came to, beyond success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// The engine could not be reached, or did not answer in time; the text says which.
    Unreachable(String),
    /// The container or image is not there (404).
    NotFound,
    /// In the way (409): a name taken, a removal under way.
    Conflict,
    /// Docker refused or failed; the text is ours, Docker's is logged.
    Failed(String),
    /// A container Trellis did not make is in the way; it is never touched.
    Foreign(String),
}

impl EngineError {
    /// The words shown to users.
    pub fn public(&self) -> String {
        match self {
            EngineError::Unreachable(r) | EngineError::Failed(r) | EngineError::Foreign(r) => {
                r.clone()
            }
            EngineError::NotFound => "not found on the engine".into(),
            EngineError::Conflict => "in the way of another container on the engine".into(),
        }
    }
}

/// Sorts a bollard error; `what` says what was being done, for the words and the log.
pub fn classify(node_id: &str, what: &str, e: &bollard::errors::Error) -> EngineError {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError { status_code, .. } => {
            tracing::debug!(node_id, what, error = ?e, "Docker refused");
            match status_code {
                404 => EngineError::NotFound,
                409 => EngineError::Conflict,
                _ => EngineError::Failed(format!("Docker on node {node_id:?} refused to {what}")),
            }
        }
        E::DockerStreamError { .. } => {
            tracing::info!(node_id, what, error = ?e, "Docker stream error");
            EngineError::Failed(format!("Docker on node {node_id:?} failed to {what}"))
        }
        E::RequestTimeoutError => EngineError::Unreachable(format!(
            "node {node_id:?}'s Docker engine did not answer in time"
        )),
        E::JsonDataError { .. } | E::JsonSerdeError { .. } => {
            tracing::warn!(node_id, what, error = ?e, "Docker answered in a way not understood");
            EngineError::Failed(format!(
                "node {node_id:?}'s Docker engine gave an answer Trellis does not understand"
            ))
        }
        _ => {
            tracing::info!(node_id, what, error = ?e, "Docker engine unreachable");
            EngineError::Unreachable(format!("cannot reach node {node_id:?}'s Docker engine"))
        }
    }
}

/// A client per node, made once (making one asks the engine its API version) and made again
/// when the node's endpoint or its insecure mark changes, or after the engine was unreachable.
#[derive(Clone, Default)]
pub struct EngineClients {
    clients: Arc<Mutex<HashMap<String, Cached>>>,
}

/// A node's client with the endpoint and insecure mark it was made for.
type Cached = (String, bool, Docker);

impl EngineClients {
    /// The engine of `node`, connecting when there is no client yet.
    pub async fn get(
        &self,
        access: &DockerAccess,
        node: &node::Model,
        timeout: Duration,
    ) -> Result<Engine, EngineError> {
        let endpoint = node.docker_endpoint.clone().unwrap_or_default();
        let cached = self
            .clients
            .lock()
            .expect("engine clients")
            .get(&node.id)
            .filter(|(e, i, _)| *e == endpoint && *i == node.docker_insecure)
            .map(|(_, _, d)| d.clone());
        let docker = match cached {
            Some(d) => d,
            None => {
                let (d, _) = access
                    .connect(node)
                    .await
                    .map_err(|e| EngineError::Unreachable(e.public_message()))?;
                self.clients
                    .lock()
                    .expect("engine clients")
                    .insert(node.id.clone(), (endpoint, node.docker_insecure, d.clone()));
                d
            }
        };
        Ok(Engine {
            node_id: node.id.clone(),
            docker,
            timeout,
        })
    }

    /// Forgets a node's client (it was unreachable: the next call connects afresh).
    pub fn forget(&self, node_id: &str) {
        self.clients.lock().expect("engine clients").remove(node_id);
    }
}

/// One node's engine.
#[derive(Clone)]
pub struct Engine {
    /// The node.
    pub node_id: String,
    docker: Docker,
    timeout: Duration,
}

/// One owned container as listed.
#[derive(Debug, Clone)]
pub struct Listed {
    /// What the planner needs.
    pub observed: Observed,
    /// Its deployment's id.
    pub deployment: String,
    /// Its name, without the leading `/`.
    pub name: String,
}

impl Engine {
    /// An engine over a client made elsewhere.
    pub fn new(node_id: &str, docker: Docker, timeout: Duration) -> Self {
        Engine {
            node_id: node_id.to_owned(),
            docker,
            timeout,
        }
    }

    async fn call<T>(
        &self,
        what: &str,
        limit: Duration,
        work: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, EngineError> {
        match tokio::time::timeout(limit, work).await {
            Ok(r) => r.map_err(|e| classify(&self.node_id, what, &e)),
            Err(_) => Err(EngineError::Unreachable(format!(
                "node {:?}'s Docker engine did not answer within {} s",
                self.node_id,
                limit.as_secs()
            ))),
        }
    }

    /// The raw client, for logs, stats and exec.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Every container of `cluster` on this node (of one deployment when given), running or not.
    pub async fn list_owned(
        &self,
        cluster: &str,
        deployment: Option<&str>,
    ) -> Result<Vec<Listed>, EngineError> {
        let mut labels = vec![
            format!("{CLUSTER}={cluster}"),
            format!("{NODE}={}", self.node_id),
        ];
        if let Some(d) = deployment {
            labels.push(format!("{DEPLOYMENT}={d}"));
        }
        let filters = HashMap::from([("label", labels)]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .call(
                "list containers",
                self.timeout,
                self.docker.list_containers(Some(opts)),
            )
            .await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                // The filter did this already; a container is ours only by both labels.
                if labels.get(CLUSTER).map(String::as_str) != Some(cluster)
                    || labels.get(NODE) != Some(&self.node_id)
                {
                    return None;
                }
                let status = c
                    .state
                    .map(|s| Status::parse(s.as_ref()))
                    .unwrap_or(Status::Exited);
                Some(Listed {
                    observed: Observed {
                        id: c.id?,
                        hash: labels.get(SPEC_HASH).cloned().unwrap_or_default(),
                        status,
                    },
                    deployment: labels.get(DEPLOYMENT).cloned().unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_owned(),
                })
            })
            .collect())
    }

    /// A container's details; `None` when it is gone.
    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>, EngineError> {
        match self
            .call(
                "inspect a container",
                self.timeout,
                self.docker.inspect_container(id, None),
            )
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(EngineError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the node has the image.
    pub async fn has_image(&self, image: &str) -> Result<bool, EngineError> {
        match self
            .call(
                "inspect an image",
                self.timeout,
                self.docker.inspect_image(image),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(EngineError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Pulls the image from its registry (`limit` bounds the whole pull), with the registry's
    /// credentials when the leader keeps some.
    pub async fn pull(
        &self,
        image: &str,
        limit: Duration,
        credentials: Option<bollard::auth::DockerCredentials>,
    ) -> Result<(), EngineError> {
        let (from, tag) = split_reference(image);
        let mut opts = CreateImageOptionsBuilder::default().from_image(from);
        if let Some(t) = tag {
            opts = opts.tag(t);
        }
        let opts = opts.build();
        let pull = async {
            let mut stream = self.docker.create_image(Some(opts), None, credentials);
            while let Some(item) = stream.next().await {
                item?;
            }
            Ok(())
        };
        match self.call("pull the image", limit, pull).await {
            Err(EngineError::Failed(_) | EngineError::NotFound) => {
                Err(EngineError::Failed(format!(
                    "image {image} could not be pulled on node {:?}",
                    self.node_id
                )))
            }
            r => r,
        }
    }

    /// Makes the container, not started; its id.
    pub async fn create(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, EngineError> {
        let opts = CreateContainerOptionsBuilder::default().name(name).build();
        self.call(
            "create the container",
            self.timeout,
            self.docker.create_container(Some(opts), body),
        )
        .await
        .map(|r| r.id)
    }

    /// Starts a container (already running is fine: Docker's 304).
    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.call(
            "start the container",
            self.timeout,
            self.docker.start_container(id, None),
        )
        .await
    }

    /// Unpauses a container (one that is not paused is Docker's 409, taken as done).
    pub async fn unpause(&self, id: &str) -> Result<(), EngineError> {
        match self
            .call(
                "unpause the container",
                self.timeout,
                self.docker.unpause_container(id),
            )
            .await
        {
            Err(EngineError::Conflict) => Ok(()),
            other => other,
        }
    }

    /// Stops a container within `grace` seconds, then kills it (already stopped is fine).
    pub async fn stop(&self, id: &str, grace: i32) -> Result<(), EngineError> {
        let opts = StopContainerOptionsBuilder::default().t(grace).build();
        let limit = self.timeout + Duration::from_secs(u64::try_from(grace).unwrap_or(0) + 5);
        // bollard's own timeout covers the wait for the answer: give the stop its grace.
        let docker = self.docker.clone().with_timeout(limit);
        match self
            .call(
                "stop the container",
                limit,
                docker.stop_container(id, Some(opts)),
            )
            .await
        {
            Err(EngineError::NotFound) => Ok(()),
            r => r,
        }
    }

    /// Restarts a container.
    pub async fn restart(&self, id: &str, grace: i32) -> Result<(), EngineError> {
        self.stop(id, grace).await?;
        self.start(id).await
    }

    /// Removes a container (and its anonymous volumes); gone already is fine.
    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self
            .call(
                "remove the container",
                self.timeout,
                self.docker.remove_container(id, Some(opts)),
            )
            .await
        {
            Err(EngineError::NotFound) => Ok(()),
            r => r,
        }
    }

    /// The container's last `n` log lines, stdout and stderr together, at most 4 KiB.
    pub async fn log_tail(&self, id: &str, n: usize) -> Result<String, EngineError> {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&n.to_string())
            .build();
        let read = async {
            let mut out = String::new();
            let mut logs = self.docker.logs(id, Some(opts));
            while let Some(item) = logs.next().await {
                out.push_str(&String::from_utf8_lossy(&item?.into_bytes()));
            }
            Ok(out)
        };
        let mut out = self.call("read the logs", self.timeout, read).await?;
        if out.len() > 4096 {
            let mut cut = out.len() - 4096;
            while !out.is_char_boundary(cut) {
                cut += 1;
            }
            out = out.split_off(cut);
        }
        Ok(out)
    }
}

/// `name[:tag][@digest]` into what the pull API takes: the image and its tag or digest.
pub fn split_reference(image: &str) -> (&str, Option<&str>) {
    if let Some((name, digest)) = image.split_once('@') {
        return (name, Some(digest));
    }
    // A `:` after the last `/` is a tag; before it, a registry port.
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], Some(&image[i + 1..])),
        _ => (image, Some("latest")),
    }
}

/// Everything a container is made with.
pub struct Identity<'a> {
    /// This leader's cluster id.
    pub cluster: &'a str,
    /// The deployment's id.
    pub deployment_id: &'a str,
    /// The deployment's name.
    pub deployment_name: &'a str,
    /// The node.
    pub node_id: &'a str,
    /// The revision asked for.
    pub revision: i32,
    /// The effective spec's hash.
    pub hash: &'a str,
}

/// The labels Trellis puts on a container, the deployment's own included.
pub fn labels(spec: &ContainerSpec, id: &Identity<'_>) -> HashMap<String, String> {
    let mut l: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|kv| (kv.name.clone(), kv.value.clone()))
        .collect();
    l.insert(CLUSTER.into(), id.cluster.into());
    l.insert(DEPLOYMENT.into(), id.deployment_id.into());
    l.insert(DEPLOYMENT_NAME.into(), id.deployment_name.into());
    l.insert(NODE.into(), id.node_id.into());
    l.insert(REVISION.into(), id.revision.to_string());
    l.insert(SPEC_HASH.into(), id.hash.into());
    l
}

fn env(spec: &ContainerSpec) -> Vec<String> {
    spec.env
        .iter()
        .map(|kv| format!("{}={}", kv.name, kv.value))
        .collect()
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

const MIB: i64 = 1024 * 1024;
const NANO: f64 = 1e9;

/// The create request for a spec.
pub fn create_body(spec: &ContainerSpec, id: &Identity<'_>) -> ContainerCreateBody {
    let (policy, retries) = restart_policy(spec);
    let policy_name = match policy.as_str() {
        "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => RestartPolicyNameEnum::UNLESS_STOPPED,
    };
    let mut ports: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        ports
            .entry(format!("{}/{}", p.container, p.protocol))
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: None,
                host_port: Some(p.host.to_string()),
            });
    }
    let binds: Vec<String> = spec
        .volumes
        .iter()
        .map(|v| {
            let ro = if v.read_only { ":ro" } else { "" };
            format!("{}:{}{ro}", v.source, v.target)
        })
        .collect();
    let devices: Vec<DeviceMapping> = spec
        .devices
        .iter()
        .map(|d| DeviceMapping {
            path_on_host: Some(d.host.clone()),
            path_in_container: Some(if d.container.is_empty() {
                d.host.clone()
            } else {
                d.container.clone()
            }),
            cgroup_permissions: Some("rwm".into()),
        })
        .collect();
    let healthcheck = spec.healthcheck.as_ref().map(|h| {
        let secs = |s: i32| i64::from(s) * 1_000_000_000;
        HealthConfig {
            test: Some(if h.test.is_empty() {
                vec!["NONE".into()]
            } else {
                std::iter::once("CMD".to_owned())
                    .chain(h.test.iter().cloned())
                    .collect()
            }),
            interval: Some(secs(h.interval_secs)),
            timeout: Some(secs(h.timeout_secs)),
            retries: Some(i64::from(h.retries)),
            start_period: Some(secs(h.start_period_secs)),
            start_interval: None,
        }
    });
    let exposed: Vec<String> = ports.keys().cloned().collect();
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
        env: Some(env(spec)),
        labels: Some(labels(spec, id)),
        healthcheck,
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        stop_timeout: Some(i64::from(stop_grace(spec))),
        host_config: Some(HostConfig {
            restart_policy: Some(RestartPolicy {
                name: Some(policy_name),
                maximum_retry_count: (policy == "on-failure").then_some(retries),
            }),
            port_bindings: (!ports.is_empty()).then_some(ports),
            binds: (!binds.is_empty()).then_some(binds),
            devices: (!devices.is_empty()).then_some(devices),
            privileged: Some(spec.privileged),
            network_mode: non_empty(&spec.network_mode),
            pid_mode: non_empty(&spec.pid_mode),
            ipc_mode: non_empty(&spec.ipc_mode),
            memory: spec.memory_mib.map(|m| i64::from(m) * MIB),
            memory_swap: spec.memory_mib.map(|m| i64::from(m) * MIB),
            #[allow(clippy::cast_possible_truncation)]
            nano_cpus: spec.cpus.map(|c| (c * NANO).round() as i64),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Why a container whose labels match is not what its spec asks for (changed by hand:
/// `docker update`), or `None`. What `docker update` can change is checked, and the image.
pub fn drift(spec: &ContainerSpec, c: &ContainerInspectResponse) -> Option<&'static str> {
    let config = c.config.as_ref()?;
    let host = c.host_config.as_ref()?;
    if config.image.as_deref() != Some(spec.image.as_str()) {
        return Some("image");
    }
    let have_env = config.env.clone().unwrap_or_default();
    if env(spec).iter().any(|e| !have_env.contains(e)) {
        return Some("environment");
    }
    let (policy, _) = restart_policy(spec);
    let have_policy = host
        .restart_policy
        .as_ref()
        .and_then(|p| p.name)
        .map(|n| n.to_string())
        .unwrap_or_default();
    let have_policy = if have_policy.is_empty() {
        "no".into()
    } else {
        have_policy
    };
    if have_policy != policy {
        return Some("restart policy");
    }
    if host.memory.unwrap_or(0) != spec.memory_mib.map_or(0, |m| i64::from(m) * MIB) {
        return Some("memory limit");
    }
    #[allow(clippy::cast_possible_truncation)]
    let cpus = spec.cpus.map_or(0, |c| (c * NANO).round() as i64);
    if host.nano_cpus.unwrap_or(0) != cpus {
        return Some("CPU limit");
    }
    if host.privileged.unwrap_or(false) != spec.privileged {
        return Some("privileged");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_image_and_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", Some("latest")));
        assert_eq!(split_reference("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(
            split_reference("registry.local:5000/cam"),
            ("registry.local:5000/cam", Some("latest"))
        );
        assert_eq!(
            split_reference("registry.local:5000/cam:2"),
            ("registry.local:5000/cam", Some("2"))
        );
        assert_eq!(
            split_reference("cam@sha256:abc"),
            ("cam", Some("sha256:abc"))
        );
    }

    #[test]
    fn names_carry_deployment_node_and_hash() {
        assert_eq!(
            container_name("cam", "pi-1", "0123456789abcdef"),
            "trellis-cam-pi-1-01234567"
        );
    }
}
