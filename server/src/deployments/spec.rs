//! What a deployment asks for: the container, where it runs, how a new revision rolls out and
//! per-node overrides. One [`DeploymentSpec`] is stored as JSON with every revision; the GraphQL
//! input and output types are these same structs.
//!
//! A container's identity on a node is [`spec_hash`] of its [`effective`] spec (the base with the
//! node's override merged over it): the container's name carries it, so a spec that does not
//! change on a node keeps that node's container, and Docker itself refuses a second container of
//! one spec on one engine.

use std::collections::BTreeMap;

use async_graphql::{Enum, InputObject, SimpleObject};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

/// A name and a value (environment variables, labels).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, SimpleObject, InputObject,
)]
#[graphql(input_name = "KeyValueInput")]
pub struct KeyValue {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// A port published on the node.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, SimpleObject, InputObject,
)]
#[graphql(input_name = "PortInput")]
pub struct Port {
    /// The node's port.
    pub host: i32,
    /// The container's port.
    pub container: i32,
    /// `tcp` (default) or `udp`.
    #[graphql(default_with = "String::from(\"tcp\")")]
    #[serde(default = "tcp")]
    pub protocol: String,
}

fn tcp() -> String {
    "tcp".into()
}

/// A volume in the container: a named volume, or (admins only) a path of the node.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, SimpleObject, InputObject,
)]
#[graphql(input_name = "VolumeInput")]
pub struct Volume {
    /// A volume name (`data`), or an absolute path on the node (`/srv/data`: a bind mount).
    pub source: String,
    /// Absolute path in the container.
    pub target: String,
    /// Mounted read-only.
    #[graphql(default)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

/// A device of the node passed into the container (admins only).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, SimpleObject, InputObject,
)]
#[graphql(input_name = "DeviceInput")]
pub struct Device {
    /// Path on the node, e.g. `/dev/i2c-1`.
    pub host: String,
    /// Path in the container; the same as `host` when empty.
    #[graphql(default)]
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
}

/// A health check replacing the image's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, SimpleObject, InputObject)]
#[graphql(input_name = "HealthcheckInput")]
pub struct Healthcheck {
    /// The command, run without a shell (`["/bin/test", "-f", "/tmp/ready"]`); empty turns the
    /// image's health check off.
    pub test: Vec<String>,
    /// Seconds between checks (at least 1).
    #[graphql(default = 10)]
    pub interval_secs: i32,
    /// Seconds a check may take.
    #[graphql(default = 5)]
    pub timeout_secs: i32,
    /// Failed checks in a row that make the container unhealthy.
    #[graphql(default = 3)]
    pub retries: i32,
    /// Seconds after start during which failures do not count.
    #[graphql(default)]
    #[serde(default)]
    pub start_period_secs: i32,
}

/// Whether the image is fetched from its registry before a container is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Pull only when the node does not have the image (the default).
    #[default]
    IfMissing,
    /// Pull every time a container is made.
    Always,
    /// Never pull: the image must already be on the node (loaded offline).
    Never,
    /// The leader loads the image from its own Docker engine into the node's (`docker save` →
    /// `docker load`) when the node lacks it by id; nothing is pulled. For clusters with no
    /// registry and no internet.
    Sideload,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The container a deployment runs on each of its nodes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, SimpleObject, InputObject)]
#[graphql(input_name = "ContainerSpecInput")]
#[serde(default)]
pub struct ContainerSpec {
    /// Image by tag or digest: `name[:tag][@sha256:…]`.
    pub image: String,
    /// Arguments replacing the image's CMD (empty: the image's own).
    #[graphql(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's ENTRYPOINT (empty: the image's own).
    #[graphql(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// Environment variables.
    #[graphql(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<KeyValue>,
    /// Published ports.
    #[graphql(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Volumes and (admins only) bind mounts.
    #[graphql(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Devices of the node (admins only).
    #[graphql(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    /// Full access to the node (admins only).
    #[graphql(default)]
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// `host` shares the node's network (admins only); empty: Docker's bridge.
    #[graphql(default)]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network_mode: String,
    /// `host` shares the node's process ids (admins only).
    #[graphql(default)]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pid_mode: String,
    /// `host` shares the node's IPC (admins only; ROS 2 shared memory needs it).
    #[graphql(default)]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ipc_mode: String,
    /// `unless-stopped` (default), `always`, `on-failure[:N]` or `no`.
    #[graphql(default)]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub restart_policy: String,
    /// Memory limit in MiB (at least 6).
    #[graphql(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<i32>,
    /// CPU limit in cores, e.g. 0.5.
    #[graphql(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Labels on the container (none may start with `io.trellis.`).
    #[graphql(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<KeyValue>,
    /// A health check replacing the image's.
    #[graphql(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Seconds a container has to stop before it is killed (default 10, at most 120).
    #[graphql(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_secs: Option<i32>,
    /// When the image is pulled.
    #[graphql(default)]
    #[serde(skip_serializing_if = "is_default")]
    pub pull: PullPolicy,
}

/// Which nodes a deployment runs on: a node is chosen when `all` is set, its id is listed, or it
/// carries every one of `labels`.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, SimpleObject, InputObject,
)]
#[graphql(input_name = "TargetInput")]
#[serde(default)]
pub struct Target {
    /// Every node.
    #[graphql(default)]
    pub all: bool,
    /// These nodes.
    #[graphql(default)]
    pub node_ids: Vec<String>,
    /// Nodes carrying all of these labels (fliswarm's categories).
    #[graphql(default)]
    pub labels: Vec<KeyValue>,
}

impl Target {
    /// Whether a node with this id and these labels is chosen.
    pub fn selects(&self, node_id: &str, node_labels: &BTreeMap<String, String>) -> bool {
        self.all
            || self.node_ids.iter().any(|n| n == node_id)
            || (!self.labels.is_empty()
                && self
                    .labels
                    .iter()
                    .all(|kv| node_labels.get(&kv.name) == Some(&kv.value)))
    }
}

/// In which order a node's old container makes way for the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOrder {
    /// Pull the new image and make the new container while the old one runs, then swap (the
    /// default: the shortest outage, balena's "download then kill").
    #[default]
    PullFirst,
    /// Stop the old container first: for exclusive hardware (a camera) or a small disk.
    StopFirst,
}

/// What a failed rollout batch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    /// Go back to the last revision that rolled out (the default).
    #[default]
    Rollback,
    /// Stop where it is and wait for `resumeRollout` or `rollbackDeployment`.
    Pause,
}

/// How a new revision rolls out (Docker Swarm's `update_config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, SimpleObject, InputObject)]
#[graphql(input_name = "UpdateConfigInput")]
#[serde(default)]
pub struct UpdateConfig {
    /// Nodes updated at once (0: all).
    #[graphql(default = 1)]
    pub parallelism: i32,
    /// Nodes that may be down at once (0: no limit).
    #[graphql(default = 1)]
    pub max_unavailable: i32,
    /// Old container first or new container first.
    #[graphql(default)]
    pub order: UpdateOrder,
    /// What a failed batch does.
    #[graphql(default)]
    pub failure_action: FailureAction,
    /// Seconds a container without a health check must run, without restarting, to count as
    /// ready. A container with a health check must report `healthy`.
    #[graphql(default = 5)]
    pub min_ready_secs: i32,
    /// Seconds a batch may take to become ready before it fails.
    #[graphql(default = 120)]
    pub health_timeout_secs: i32,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            max_unavailable: 1,
            order: UpdateOrder::PullFirst,
            failure_action: FailureAction::Rollback,
            min_ready_secs: 5,
            health_timeout_secs: 120,
        }
    }
}

impl UpdateConfig {
    /// Nodes per batch, or `None` for all at once.
    pub fn batch_size(&self) -> Option<usize> {
        let p = usize::try_from(self.parallelism).unwrap_or(0);
        let u = usize::try_from(self.max_unavailable).unwrap_or(0);
        match (p, u) {
            (0, 0) => None,
            (0, n) | (n, 0) => Some(n),
            (a, b) => Some(a.min(b)),
        }
    }
}

/// One node's settings merged over the deployment's (balena's device variables).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, SimpleObject, InputObject)]
#[graphql(input_name = "NodeOverrideInput")]
#[serde(default)]
pub struct NodeOverride {
    /// The node.
    pub node_id: String,
    /// Variables set or replaced on this node.
    #[graphql(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<KeyValue>,
    /// Arguments replacing the command on this node.
    #[graphql(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Devices added on this node (admins only).
    #[graphql(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    /// Memory limit in MiB on this node.
    #[graphql(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<i32>,
    /// CPU limit on this node.
    #[graphql(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

/// Everything one revision of a deployment asks for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, SimpleObject, InputObject)]
#[graphql(input_name = "DeploymentSpecInput")]
#[serde(default)]
pub struct DeploymentSpec {
    /// The container.
    pub container: ContainerSpec,
    /// Where it runs.
    pub target: Target,
    /// How a new revision rolls out.
    #[graphql(default)]
    pub update: UpdateConfig,
    /// Per-node settings, at most one per node.
    #[graphql(default)]
    pub overrides: Vec<NodeOverride>,
}

/// The container spec on `node_id`: the base with the node's override merged over it.
pub fn effective(spec: &DeploymentSpec, node_id: &str) -> ContainerSpec {
    let mut c = spec.container.clone();
    if let Some(o) = spec.overrides.iter().find(|o| o.node_id == node_id) {
        for kv in &o.env {
            match c.env.iter_mut().find(|e| e.name == kv.name) {
                Some(e) => e.value.clone_from(&kv.value),
                None => c.env.push(kv.clone()),
            }
        }
        if let Some(cmd) = &o.command {
            c.command.clone_from(cmd);
        }
        c.devices.extend(o.devices.iter().cloned());
        if o.memory_mib.is_some() {
            c.memory_mib = o.memory_mib;
        }
        if o.cpus.is_some() {
            c.cpus = o.cpus;
        }
    }
    c.env.sort();
    c.devices.sort();
    c.devices.dedup();
    c
}

/// The container's identity: 16 hex digits of a SHA-256 over its canonical JSON. The `v1` prefix
/// versions the input: a change here renames (replaces) every container after an upgrade.
pub fn spec_hash(c: &ContainerSpec) -> String {
    let json = serde_json::to_string(c).unwrap_or_default();
    let digest = Sha256::digest(format!("v1\n{json}").as_bytes());
    trellis_proto::hex(&digest[..8])
}

/// Docker's restart policy name and retry count for a spec.
pub fn restart_policy(c: &ContainerSpec) -> (String, i64) {
    let p = if c.restart_policy.is_empty() {
        "unless-stopped"
    } else {
        c.restart_policy.as_str()
    };
    match p.split_once(':') {
        Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(0)),
        None => (p.to_owned(), 0),
    }
}

/// Seconds a container gets to stop.
pub fn stop_grace(c: &ContainerSpec) -> i32 {
    c.stop_grace_secs.unwrap_or(10)
}

const MAX_ENV: usize = 256;
const MAX_VALUE: usize = 32 * 1024;

fn bad(msg: String) -> ApiError {
    ApiError::BadRequest(msg)
}

/// Whether `name` is a deployment name: `[a-z0-9][a-z0-9-]{0,39}`.
pub fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "name {name:?}: use 1 to 40 lowercase letters, digits and '-', not starting with '-'"
        )))
    }
}

fn check_image(image: &str) -> ApiResult<()> {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    let name_ok = !rest.is_empty()
        && rest.len() <= 255
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b))
        && !rest.starts_with(['/', ':', '-', '.'])
        && !rest.ends_with([':', '/']);
    let digest_ok = digest.is_none_or(|d| {
        d.strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if name_ok && digest_ok {
        Ok(())
    } else {
        Err(bad(format!(
            "container.image {image:?}: give name[:tag] or name@sha256:<64 hex digits>, e.g. \
             registry.local/cam:1.2"
        )))
    }
}

fn check_pairs(field: &str, pairs: &[KeyValue], env_names: bool) -> ApiResult<()> {
    if pairs.len() > MAX_ENV {
        return Err(bad(format!("{field}: at most {MAX_ENV} entries")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for kv in pairs {
        let n = &kv.name;
        let name_ok = if env_names {
            n.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        } else {
            !n.is_empty() && n.len() <= 128 && !n.chars().any(char::is_control)
        };
        if !name_ok {
            return Err(bad(format!("{field}: {n:?} is not a valid name")));
        }
        if n.len() + kv.value.len() > MAX_VALUE || kv.value.contains('\0') {
            return Err(bad(format!(
                "{field} {n}: the value is too long or holds a NUL byte"
            )));
        }
        if !seen.insert(n) {
            return Err(bad(format!("{field}: {n:?} given twice")));
        }
    }
    Ok(())
}

fn check_limits(field: &str, memory_mib: Option<i32>, cpus: Option<f64>) -> ApiResult<()> {
    if let Some(m) = memory_mib
        && !(6..=1_048_576).contains(&m)
    {
        return Err(bad(format!(
            "{field}memoryMib {m}: give 6 (Docker's least) to 1048576"
        )));
    }
    if let Some(c) = cpus
        && !(c > 0.0 && c <= 64.0)
    {
        return Err(bad(format!(
            "{field}cpus {c}: give more than 0 and at most 64"
        )));
    }
    Ok(())
}

fn check_devices(field: &str, devices: &[Device]) -> ApiResult<()> {
    for d in devices {
        for p in [&d.host, &d.container] {
            if !p.is_empty() && (!p.starts_with('/') || p.contains(':') || p.contains("..")) {
                return Err(bad(format!("{field}: {p:?} must be an absolute path")));
            }
        }
        if d.host.is_empty() {
            return Err(bad(format!("{field}: a device needs its path on the node")));
        }
    }
    Ok(())
}

/// Checks everything a revision asks for; the error names the field.
pub fn validate(spec: &DeploymentSpec) -> ApiResult<()> {
    let c = &spec.container;
    check_image(&c.image)?;
    for (field, args) in [
        ("container.command", &c.command),
        ("container.entrypoint", &c.entrypoint),
    ] {
        if args.len() > 256 || args.iter().any(|a| a.len() > MAX_VALUE || a.contains('\0')) {
            return Err(bad(format!(
                "{field}: at most 256 arguments of 32 KiB, no NUL"
            )));
        }
    }
    check_pairs("container.env", &c.env, true)?;
    check_pairs("container.labels", &c.labels, false)?;
    if let Some(kv) = c
        .labels
        .iter()
        .find(|kv| kv.name.starts_with("io.trellis."))
    {
        return Err(bad(format!(
            "container.labels {:?}: labels under io.trellis. are Trellis's own",
            kv.name
        )));
    }
    let mut published = std::collections::BTreeSet::new();
    for p in &c.ports {
        if !(1..=65535).contains(&p.host) || !(1..=65535).contains(&p.container) {
            return Err(bad(format!(
                "container.ports {}:{}: ports are 1 to 65535",
                p.host, p.container
            )));
        }
        if p.protocol != "tcp" && p.protocol != "udp" {
            return Err(bad(format!(
                "container.ports protocol {:?}: tcp or udp",
                p.protocol
            )));
        }
        if !published.insert((p.host, p.protocol.clone())) {
            return Err(bad(format!("container.ports: {} published twice", p.host)));
        }
    }
    for v in &c.volumes {
        let named_ok = v
            .source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && !v.source.is_empty();
        if !(named_ok || v.source.starts_with('/')) || v.source.contains(':') {
            return Err(bad(format!(
                "container.volumes source {:?}: a volume name or an absolute path",
                v.source
            )));
        }
        if !v.target.starts_with('/') || v.target.contains(':') {
            return Err(bad(format!(
                "container.volumes target {:?}: an absolute path in the container",
                v.target
            )));
        }
    }
    check_devices("container.devices", &c.devices)?;
    for (field, mode) in [
        ("container.networkMode", &c.network_mode),
        ("container.pidMode", &c.pid_mode),
        ("container.ipcMode", &c.ipc_mode),
    ] {
        let ok = mode.is_empty()
            || mode.len() <= 64
                && mode
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-:".contains(&b));
        if !ok {
            return Err(bad(format!(
                "{field} {mode:?}: host, bridge, none or a network name"
            )));
        }
    }
    let (policy, _) = restart_policy(c);
    let n_ok = c
        .restart_policy
        .split_once(':')
        .is_none_or(|(name, n)| name == "on-failure" && n.parse::<u32>().is_ok());
    if !["no", "always", "unless-stopped", "on-failure"].contains(&policy.as_str()) || !n_ok {
        return Err(bad(format!(
            "container.restartPolicy {:?}: unless-stopped, always, on-failure[:N] or no",
            c.restart_policy
        )));
    }
    check_limits("container.", c.memory_mib, c.cpus)?;
    for (field, n) in [
        ("container.ports", c.ports.len()),
        ("container.volumes", c.volumes.len()),
        ("container.devices", c.devices.len()),
        ("overrides", spec.overrides.len()),
    ] {
        if n > 256 {
            return Err(bad(format!("{field}: at most 256")));
        }
    }
    if let Some(h) = &c.healthcheck {
        if h.test.len() > 64 || h.test.iter().any(|a| a.len() > 4096) {
            return Err(bad(
                "container.healthcheck.test: at most 64 arguments".into()
            ));
        }
        if !(1..=3600).contains(&h.interval_secs)
            || !(1..=3600).contains(&h.timeout_secs)
            || !(1..=100).contains(&h.retries)
            || !(0..=3600).contains(&h.start_period_secs)
        {
            return Err(bad(
                "container.healthcheck: interval and timeout 1 to 3600 s, retries 1 to 100, \
                 start period 0 to 3600 s"
                    .into(),
            ));
        }
    }
    if let Some(g) = c.stop_grace_secs
        && !(0..=120).contains(&g)
    {
        return Err(bad(format!("container.stopGraceSecs {g}: 0 to 120")));
    }
    let t = &spec.target;
    if !t.all && t.node_ids.is_empty() && t.labels.is_empty() {
        return Err(bad(
            "target: choose all nodes, some node ids, or labels".into()
        ));
    }
    check_pairs("target.labels", &t.labels, false)?;
    if t.node_ids.len() > 10_000 {
        return Err(bad("target.nodeIds: at most 10000".into()));
    }
    let u = &spec.update;
    if u.parallelism < 0 || u.max_unavailable < 0 {
        return Err(bad(
            "update: parallelism and maxUnavailable are 0 or more".into()
        ));
    }
    if !(0..=86_400).contains(&u.min_ready_secs)
        || !(1..=86_400).contains(&u.health_timeout_secs)
        || u.min_ready_secs >= u.health_timeout_secs
    {
        return Err(bad(
            "update: minReadySecs 0 to 86400, healthTimeoutSecs 1 to 86400 and more than \
             minReadySecs"
                .into(),
        ));
    }
    let mut nodes = std::collections::BTreeSet::new();
    for o in &spec.overrides {
        if !nodes.insert(&o.node_id) {
            return Err(bad(format!("overrides: node {:?} given twice", o.node_id)));
        }
        let field = format!("overrides[{}].", o.node_id);
        if let Some(cmd) = &o.command
            && (cmd.len() > 256 || cmd.iter().any(|a| a.len() > MAX_VALUE || a.contains('\0')))
        {
            return Err(bad(format!(
                "{field}command: at most 256 arguments of 32 KiB, no NUL"
            )));
        }
        if o.devices.len() > 256 {
            return Err(bad(format!("{field}devices: at most 256")));
        }
        check_pairs(&format!("{field}env"), &o.env, true)?;
        check_devices(&format!("{field}devices"), &o.devices)?;
        check_limits(&field, o.memory_mib, o.cpus)?;
    }
    Ok(())
}

/// The fields only an admin may set, as named in the API; checked on every node's merged spec.
pub fn privileged_fields(spec: &DeploymentSpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    let nodes = std::iter::once(None).chain(spec.overrides.iter().map(|o| Some(&o.node_id)));
    for node in nodes {
        let c = match node {
            Some(n) => effective(spec, n),
            None => spec.container.clone(),
        };
        let found = [
            (c.privileged, "privileged"),
            // host, or another container's (container:<name>) namespaces.
            (
                !matches!(c.network_mode.as_str(), "" | "bridge" | "none"),
                "networkMode",
            ),
            (!matches!(c.pid_mode.as_str(), "" | "private"), "pidMode"),
            (
                !matches!(c.ipc_mode.as_str(), "" | "private" | "shareable" | "none"),
                "ipcMode",
            ),
            (!c.devices.is_empty(), "devices"),
            (
                c.volumes.iter().any(|v| v.source.starts_with('/')),
                "volumes from a node path",
            ),
        ];
        for (hit, name) in found {
            if hit && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// What changed from `a` to `b`, one line per field, for the revision history.
pub fn diff(a: &DeploymentSpec, b: &DeploymentSpec) -> Vec<String> {
    fn flat(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flat(&key, v, out);
                }
            }
            // Name/value lists read best by name.
            serde_json::Value::Array(items)
                if items
                    .iter()
                    .all(|i| i.get("name").is_some() && i.get("value").is_some()) =>
            {
                for i in items {
                    let name = i["name"].as_str().unwrap_or_default();
                    out.insert(format!("{prefix} {name}"), i["value"].to_string());
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flat("", &serde_json::to_value(a).unwrap_or_default(), &mut fa);
    flat("", &serde_json::to_value(b).unwrap_or_default(), &mut fb);
    let keys: std::collections::BTreeSet<_> = fa.keys().chain(fb.keys()).cloned().collect();
    keys.into_iter()
        .filter_map(|k| match (fa.get(&k), fb.get(&k)) {
            (Some(x), Some(y)) if x == y => None,
            (Some(x), Some(y)) => Some(format!("{k}: {x} → {y}")),
            (None, Some(y)) => Some(format!("{k}: added {y}")),
            (Some(x), None) => Some(format!("{k}: removed (was {x})")),
            (None, None) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(n: &str, v: &str) -> KeyValue {
        KeyValue {
            name: n.into(),
            value: v.into(),
        }
    }

    fn spec() -> DeploymentSpec {
        DeploymentSpec {
            container: ContainerSpec {
                image: "registry.local/cam:1.2".into(),
                env: vec![kv("B", "2"), kv("A", "1")],
                ..Default::default()
            },
            target: Target {
                all: true,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_hash_is_fixed_and_ignores_the_order_of_variables() {
        let s = spec();
        let h = spec_hash(&effective(&s, "n1"));
        // A golden value: containers are named by it, so it must not change by accident.
        assert_eq!(h, "c2f0748163d38a93");
        assert_eq!(h, spec_hash(&effective(&s, "n2")));
        assert_eq!(h.len(), 16);
        let mut swapped = s.clone();
        swapped.container.env.reverse();
        assert_eq!(h, spec_hash(&effective(&swapped, "n1")));
        let mut changed = s.clone();
        changed.container.env[0].value = "3".into();
        assert_ne!(h, spec_hash(&effective(&changed, "n1")));
        // The rollout settings and the target are not part of a container's identity.
        let mut other = s;
        other.update.parallelism = 5;
        other.target.node_ids.push("x".into());
        assert_eq!(h, spec_hash(&effective(&other, "n1")));
    }

    #[test]
    fn an_override_changes_only_its_node() {
        let mut s = spec();
        s.overrides.push(NodeOverride {
            node_id: "n2".into(),
            env: vec![kv("A", "9"), kv("C", "3")],
            memory_mib: Some(64),
            ..Default::default()
        });
        let n1 = effective(&s, "n1");
        let n2 = effective(&s, "n2");
        assert_eq!(n1.env, vec![kv("A", "1"), kv("B", "2")]);
        assert_eq!(n2.env, vec![kv("A", "9"), kv("B", "2"), kv("C", "3")]);
        assert_eq!(n2.memory_mib, Some(64));
        assert_eq!(spec_hash(&n1), spec_hash(&effective(&spec(), "n1")));
        assert_ne!(spec_hash(&n1), spec_hash(&n2));
    }

    #[test]
    fn bad_fields_are_named() {
        type Case = (Box<dyn Fn(&mut DeploymentSpec)>, &'static str);
        let cases: Vec<Case> = vec![
            (
                Box::new(|s| s.container.image = "Bad Image".into()),
                "container.image",
            ),
            (
                Box::new(|s| s.container.image = "x@sha256:12".into()),
                "container.image",
            ),
            (
                Box::new(|s| s.container.env.push(kv("1X", "a"))),
                "container.env",
            ),
            (
                Box::new(|s| s.container.env.push(kv("A", "again"))),
                "given twice",
            ),
            (Box::new(|s| s.container.memory_mib = Some(2)), "memoryMib"),
            (Box::new(|s| s.container.cpus = Some(0.0)), "cpus"),
            (
                Box::new(|s| s.container.restart_policy = "sometimes".into()),
                "restartPolicy",
            ),
            (
                Box::new(|s| s.container.labels.push(kv("io.trellis.node", "x"))),
                "io.trellis.",
            ),
            (
                Box::new(|s| {
                    s.container.ports.push(Port {
                        host: 0,
                        container: 80,
                        protocol: "tcp".into(),
                    })
                }),
                "ports",
            ),
            (Box::new(|s| s.target = Target::default()), "target"),
            (
                Box::new(|s| {
                    s.container.volumes.push(Volume {
                        source: "data".into(),
                        target: "relative".into(),
                        read_only: false,
                    })
                }),
                "volumes target",
            ),
        ];
        for (change, named) in cases {
            let mut s = spec();
            change(&mut s);
            match validate(&s) {
                Err(ApiError::BadRequest(m)) => assert!(m.contains(named), "{m:?} names {named}"),
                other => panic!("{named}: expected BAD_REQUEST, got {other:?}"),
            }
        }
        validate(&spec()).expect("the base spec is valid");
        let mut ok = spec();
        ok.container.image = "busybox@sha256:".to_owned() + &"a".repeat(64);
        ok.container.restart_policy = "on-failure:5".into();
        validate(&ok).expect("digest and on-failure:5");
    }

    #[test]
    fn privileged_fields_are_found_also_in_overrides() {
        let mut s = spec();
        assert!(privileged_fields(&s).is_empty());
        s.overrides.push(NodeOverride {
            node_id: "n2".into(),
            devices: vec![Device {
                host: "/dev/video0".into(),
                container: String::new(),
            }],
            ..Default::default()
        });
        assert_eq!(privileged_fields(&s), vec!["devices"]);
        s.container.network_mode = "host".into();
        assert_eq!(privileged_fields(&s), vec!["networkMode", "devices"]);
        s.container.network_mode = "bridge".into();
        s.container.pid_mode = "container:trellis-other-n1-01234567".into();
        assert_eq!(privileged_fields(&s), vec!["pidMode", "devices"]);
    }

    #[test]
    fn a_diff_names_each_changed_field() {
        let a = spec();
        let mut b = spec();
        b.container.env[0].value = "20".into();
        b.container.image = "registry.local/cam:1.3".into();
        let d = diff(&a, &b);
        assert_eq!(
            d,
            vec![
                "container.env B: \"2\" → \"20\"".to_owned(),
                "container.image: \"registry.local/cam:1.2\" → \"registry.local/cam:1.3\""
                    .to_owned(),
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn targets_choose_by_all_ids_or_every_label() {
        let labels: BTreeMap<String, String> = [("role".to_owned(), "cam".to_owned())]
            .into_iter()
            .collect();
        let by_label = Target {
            labels: vec![kv("role", "cam")],
            ..Default::default()
        };
        assert!(by_label.selects("n1", &labels));
        assert!(!by_label.selects("n1", &BTreeMap::new()));
        let by_id = Target {
            node_ids: vec!["n2".into()],
            ..Default::default()
        };
        assert!(by_id.selects("n2", &BTreeMap::new()));
        assert!(!by_id.selects("n1", &labels));
    }

    #[test]
    fn batch_sizes() {
        let mut u = UpdateConfig::default();
        assert_eq!(u.batch_size(), Some(1));
        u.parallelism = 0;
        u.max_unavailable = 0;
        assert_eq!(u.batch_size(), None);
        u.parallelism = 5;
        u.max_unavailable = 2;
        assert_eq!(u.batch_size(), Some(2));
    }
}
