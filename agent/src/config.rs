//! Agent configuration: parsed once at start from flags, `TRELLIS_AGENT_*` environment variables
//! and an optional TOML file (flags win over the environment, which wins over the file).

use std::{path::PathBuf, sync::Arc, time::Duration};

use clap::Parser;
use serde::Deserialize;
use trellis_proto::BrokerAddr;

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Broker to connect to.
    pub broker: BrokerAddr,
    /// Which broker certificates to trust when `broker` is `mqtts://` (required then).
    pub broker_tls: Option<Arc<rustls::ClientConfig>>,
    /// Node id; `None` derives it from the primary MAC address.
    pub node_id: Option<String>,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// MQTT keepalive; the broker declares the node lost after 1.5 × this (MQTT-3.1.2-24).
    pub keepalive: Duration,
    /// Longest wait between reconnect attempts.
    pub max_backoff: Duration,
    /// Hardware backend: `simulator` or `rppal`.
    pub hardware: String,
    /// How many times faster than real time the simulator's time runs (1 on real hardware).
    pub sim_speed: f64,
    /// Join token to enroll with when the node has no credentials yet.
    pub join_token: Option<String>,
    /// Where the node's credentials are kept; `None` keeps nothing.
    pub state_dir: Option<PathBuf>,
    /// MQTT username and password to use as they are (the leader's local agent, or a broker
    /// whose accounts are managed elsewhere).
    pub credentials: Option<(String, String)>,
    /// Where this node's Docker engine listens, announced to the leader.
    pub docker_endpoint: Option<trellis_proto::DockerEndpoint>,
    /// The node's Docker data root, whose filesystem's free space the heartbeat reports.
    pub docker_root: PathBuf,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            broker: BrokerAddr {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false,
            },
            broker_tls: None,
            node_id: None,
            heartbeat_interval: Duration::from_secs(5),
            keepalive: Duration::from_secs(10),
            max_backoff: Duration::from_secs(30),
            hardware: "simulator".into(),
            sim_speed: 1.0,
            join_token: None,
            state_dir: None,
            credentials: None,
            docker_endpoint: None,
            docker_root: PathBuf::from(DEFAULT_DOCKER_ROOT),
        }
    }
}

impl AgentConfig {
    /// MQTT options for a connection to the broker as `client_id`, over TLS for `mqtts://`.
    pub fn mqtt_options(&self, client_id: String) -> anyhow::Result<rumqttc::MqttOptions> {
        let mut opts =
            rumqttc::MqttOptions::new(client_id, self.broker.host.clone(), self.broker.port);
        // rumqttc's default of 10 KiB would drop the connection on a large job status and retry
        // it for ever; the embedded broker takes 256 KiB, and statuses are bounded well below.
        opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        if self.broker.tls {
            let tls = self.broker_tls.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "broker {} is over TLS but no certificates to trust were given",
                    self.broker
                )
            })?;
            crate::tls::apply(&mut opts, Some(tls));
        }
        Ok(opts)
    }
}

/// Largest MQTT packet the agent sends or takes, bytes (the embedded broker's payload limit).
pub const MAX_PACKET: usize = 256 * 1024;

/// Command-line flags of the `trellis-agent` binary.
#[derive(Debug, Parser)]
#[command(
    name = "trellis-agent",
    version,
    about = "Trellis node agent",
    // A flag given twice takes its last value (a wrapper script's default, then the user's).
    args_override_self = true
)]
pub struct Args {
    /// TOML file with any of the keys below (snake_case).
    #[arg(long, env = "TRELLIS_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Broker URL, mqtt://host:port, or mqtts://host:port for MQTT over TLS.
    #[arg(long, env = "TRELLIS_AGENT_BROKER_URL")]
    pub broker_url: Option<String>,
    /// PEM file of the CA that signed the broker's certificate (for mqtts://; the `ca.pem` of
    /// `trellis tls-cert`). Without it the system's trusted CAs are used.
    #[arg(long, env = "TRELLIS_AGENT_BROKER_CA")]
    pub broker_ca: Option<PathBuf>,
    /// Node id (A-Z, a-z, 0-9, '-', '_'); defaults to one derived from the MAC address.
    #[arg(long, env = "TRELLIS_AGENT_NODE_ID")]
    pub node_id: Option<String>,
    /// Seconds between heartbeats.
    #[arg(long, env = "TRELLIS_AGENT_HEARTBEAT_SECS")]
    pub heartbeat_secs: Option<u64>,
    /// MQTT keepalive in seconds.
    #[arg(long, env = "TRELLIS_AGENT_KEEPALIVE_SECS")]
    pub keepalive_secs: Option<u64>,
    /// Longest wait between reconnect attempts, seconds.
    #[arg(long, env = "TRELLIS_AGENT_MAX_BACKOFF_SECS")]
    pub max_backoff_secs: Option<u64>,
    /// Hardware backend: simulator or rppal.
    #[arg(long, env = "TRELLIS_AGENT_HARDWARE")]
    pub hardware: Option<String>,
    /// Run the simulator's time this many times faster than real time (0.1-10000), so a
    /// day-long culture can be watched in minutes. Simulator only.
    #[arg(long, env = "TRELLIS_AGENT_SIM_SPEED")]
    pub sim_speed: Option<f64>,
    /// Join token from the leader (`createJoinToken`), used once to enroll this node.
    #[arg(long, env = "TRELLIS_AGENT_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Directory for the node's credentials.
    #[arg(long, env = "TRELLIS_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// MQTT username, for brokers whose accounts are managed outside Trellis.
    #[arg(long, env = "TRELLIS_AGENT_USERNAME")]
    pub username: Option<String>,
    /// MQTT password that goes with --username.
    #[arg(long, env = "TRELLIS_AGENT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Where this node's Docker engine listens for the leader: tcp://<address>:2376 (with
    /// dockerd's --tlsverify and a certificate from `trellis docker-tls server-cert`).
    #[arg(long, env = "TRELLIS_AGENT_DOCKER_ENDPOINT")]
    pub docker_endpoint: Option<String>,
    /// The node's Docker data root (dockerd's --data-root): the heartbeat reports its
    /// filesystem's free space, which the leader checks before it loads an image here.
    #[arg(long, env = "TRELLIS_AGENT_DOCKER_ROOT")]
    pub docker_root: Option<PathBuf>,
}

/// Docker's data root unless told otherwise.
pub const DEFAULT_DOCKER_ROOT: &str = "/var/lib/docker";

/// Where the agent keeps its credentials unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/trellis-agent";

/// The TOML file's keys; unknown keys are an error so typos do not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    broker_url: Option<String>,
    broker_ca: Option<PathBuf>,
    node_id: Option<String>,
    heartbeat_secs: Option<u64>,
    keepalive_secs: Option<u64>,
    max_backoff_secs: Option<u64>,
    hardware: Option<String>,
    sim_speed: Option<f64>,
    join_token: Option<String>,
    state_dir: Option<PathBuf>,
    username: Option<String>,
    password: Option<String>,
    docker_endpoint: Option<String>,
    docker_root: Option<PathBuf>,
}

/// Bad configuration, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A key has a value that cannot be used.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// The key (flag name with underscores).
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// Reads the TOML configuration file at `path` (the defaults when there is none). Unknown keys
/// and bad values are errors naming the file and what is wrong. The leader reads its file with
/// this too.
pub fn read_file<T: serde::de::DeserializeOwned + Default>(
    path: Option<&std::path::Path>,
) -> Result<T, ConfigError> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let failed = |reason: String| ConfigError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    toml::from_str(&text).map_err(|e| failed(e.to_string()))
}

/// A [`ConfigError::Invalid`] for `key`.
pub fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl Args {
    /// Merges flags, environment and file into an [`AgentConfig`].
    pub fn resolve(self) -> Result<AgentConfig, ConfigError> {
        let file: FileConfig = read_file(self.config.as_deref())?;
        let mut c = AgentConfig::default();
        if let Some(url) = self.broker_url.or(file.broker_url) {
            c.broker = url.parse().map_err(|reason| ConfigError::Invalid {
                key: "broker_url",
                reason,
            })?;
        }
        c.broker_tls = broker_tls(&c.broker, self.broker_ca.or(file.broker_ca).as_deref())?;
        if let Some(id) = self.node_id.or(file.node_id) {
            trellis_proto::validate_node_id(&id).map_err(|e| ConfigError::Invalid {
                key: "node_id",
                reason: e.to_string(),
            })?;
            c.node_id = Some(id);
        }
        c.heartbeat_interval = secs(
            "heartbeat_secs",
            self.heartbeat_secs.or(file.heartbeat_secs),
            c.heartbeat_interval,
        )?;
        c.keepalive = secs(
            "keepalive_secs",
            self.keepalive_secs.or(file.keepalive_secs),
            c.keepalive,
        )?;
        c.max_backoff = secs(
            "max_backoff_secs",
            self.max_backoff_secs.or(file.max_backoff_secs),
            c.max_backoff,
        )?;
        c.join_token = self
            .join_token
            .or(file.join_token)
            .filter(|t| !t.is_empty());
        c.state_dir = Some(
            self.state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        );
        match (
            self.username.or(file.username),
            self.password.or(file.password),
        ) {
            (Some(u), Some(p)) => c.credentials = Some((u, p)),
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    key: "password",
                    reason: "is required with username".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "username",
                    reason: "is required with password".into(),
                });
            }
        }
        if let Some(hw) = self.hardware.or(file.hardware) {
            crate::hardware::check_name(&hw).map_err(|reason| ConfigError::Invalid {
                key: "hardware",
                reason,
            })?;
            c.hardware = hw;
        }
        if let Some(speed) = self.sim_speed.or(file.sim_speed) {
            if !(0.1..=10_000.0).contains(&speed) {
                return Err(ConfigError::Invalid {
                    key: "sim_speed",
                    reason: format!("{speed} is outside 0.1-10000"),
                });
            }
            if c.hardware != "simulator" && speed != 1.0 {
                return Err(ConfigError::Invalid {
                    key: "sim_speed",
                    reason: format!(
                        "applies to the simulator only; hardware {} runs in real time",
                        c.hardware
                    ),
                });
            }
            c.sim_speed = speed;
        }
        if let Some(e) = self.docker_endpoint.or(file.docker_endpoint) {
            c.docker_endpoint = Some(e.parse().map_err(|reason| ConfigError::Invalid {
                key: "docker_endpoint",
                reason,
            })?);
        }
        if let Some(root) = self.docker_root.or(file.docker_root) {
            if !root.is_absolute() {
                return Err(ConfigError::Invalid {
                    key: "docker_root",
                    reason: format!("{} is not an absolute path", root.display()),
                });
            }
            c.docker_root = root;
        }
        Ok(c)
    }
}

/// The TLS client settings for `broker`: `None` for plain MQTT, else trusting `ca` or, without
/// it, the system's CAs.
pub fn broker_tls(
    broker: &BrokerAddr,
    ca: Option<&std::path::Path>,
) -> Result<Option<Arc<rustls::ClientConfig>>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        key: "broker_ca",
        reason,
    };
    match (broker.tls, ca) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(invalid(format!(
            "is for a broker over TLS, but broker_url {broker} is plain MQTT (use mqtts://)"
        ))),
        (true, Some(ca)) => crate::tls::trusting_ca_file(ca).map(Some).map_err(invalid),
        (true, None) => crate::tls::trusting_system_store()
            .map(Some)
            .map_err(invalid),
    }
}

fn secs(key: &'static str, value: Option<u64>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(ConfigError::Invalid {
            key,
            reason: "must be at least 1 second".into(),
        }),
        Some(s) if s > 86_400 => Err(ConfigError::Invalid {
            key,
            reason: "must be at most 86400 seconds".into(),
        }),
        Some(s) => Ok(Duration::from_secs(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("trellis-agent").chain(list.iter().copied())).unwrap()
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "broker_url = \"mqtt://10.1.1.1:1999\"\nheartbeat_secs = 7\n",
        )
        .unwrap();
        let c = args(&["--config", path.to_str().unwrap(), "--heartbeat-secs", "2"])
            .resolve()
            .unwrap();
        assert_eq!(c.broker.to_string(), "mqtt://10.1.1.1:1999");
        assert_eq!(c.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(c.keepalive, Duration::from_secs(10));
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = args(&["--broker-url", "http://x"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid broker_url"), "{e}");
        let e = args(&["--broker-url", "mqtt://x", "--broker-ca", "/ca.pem"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid broker_ca") && e.contains("mqtts://"),
            "{e}"
        );
        let e = args(&[
            "--broker-url",
            "mqtts://x",
            "--broker-ca",
            "/nonexistent.pem",
        ])
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("invalid broker_ca") && e.contains("/nonexistent.pem"),
            "{e}"
        );
        let e = args(&["--node-id", "a/b"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid node_id"), "{e}");
        let e = args(&["--heartbeat-secs", "0"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid heartbeat_secs"), "{e}");
        let e = args(&["--docker-endpoint", "tcp://pi:http"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid docker_endpoint"), "{e}");
        let e = args(&["--hardware", "gpio9000"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid hardware"), "{e}");
        let e = args(&["--sim-speed", "0"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sim_speed") && e.contains("0 is outside 0.1-10000"),
            "{e}"
        );
        let e = args(&["--hardware", "rppal", "--sim-speed", "60"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("applies to the simulator only"), "{e}");
        assert_eq!(
            args(&["--sim-speed", "60"]).resolve().unwrap().sim_speed,
            60.0
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "heartbeet_secs = 7\n").unwrap();
        let e = args(&["--config", path.to_str().unwrap()])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `heartbeet_secs`"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 128, ..Default::default() })]

        /// Hostile input (issue 13): an agent config file of any values for its keys, or any
        /// text, resolves or is refused naming the file or the key; nothing panics.
        #[test]
        fn a_config_file_of_any_values_resolves_or_names_the_key(
            lines in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "broker_url", "broker_ca", "node_id", "heartbeat_secs", "keepalive_secs",
                        "max_backoff_secs", "hardware", "sim_speed", "join_token", "state_dir",
                        "username", "password", "docker_endpoint", "docker_root",
                    ]),
                    proptest::prop_oneof![
                        "\"[ -~]{0,30}\"",
                        "-?[0-9]{1,25}",
                        "-?[0-9]{1,5}\\.[0-9]{1,5}",
                        proptest::strategy::Just("true".to_owned()),
                        proptest::strategy::Just("[1, \"x\"]".to_owned()),
                        "[ -~]{0,20}",
                    ],
                ),
                0..6,
            ),
            junk in proptest::option::weighted(0.2, ".{0,200}"),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("agent.toml");
            let text = junk.unwrap_or_else(|| lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect());
            std::fs::write(&path, &text).expect("write");
            let parsed = Args::try_parse_from(["trellis-agent", "--config", path.to_str().expect("path")]).expect("flags");
            if let Err(e) = parsed.resolve() {
                let said = e.to_string();
                proptest::prop_assert!(
                    said.contains("agent.toml") || lines.iter().any(|(k, _)| said.contains(k)),
                    "{} for:\n{}", said, text
                );
            }
        }
    }
}
