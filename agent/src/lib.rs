//! The Trellis agent: one small process per node. It announces the node over MQTT (retained), sends
//! heartbeats with system stats, holds a last-will so the leader sees it as lost when it dies, and
//! reconnects with capped backoff, re-subscribing and re-announcing after every reconnect (rumqttc
//! does not resubscribe by itself: bytebeamio/rumqtt#250).
//!
//! The leader runs the same code as its local agent through [`run`].

pub mod backoff;
pub mod config;
pub mod credentials;
pub mod files;
pub mod hardware;
pub mod jobs;
pub mod link;
pub mod system;
pub mod tls;

use tokio_util::sync::CancellationToken;
use trellis_proto::Announce;

use link::{Ended, session};

pub use config::AgentConfig;

/// The agent's version, as announced.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the agent until `shutdown` is cancelled, then publishes `offline` and disconnects cleanly
/// (so the broker discards the last-will: MQTT-3.1.2-10).
///
/// Credentials come from the configuration, else from the state directory, else by enrolling
/// with the join token. When the broker refuses stored credentials (the node was removed) and a
/// join token is configured, the agent forgets them and enrolls again.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let facts = system::facts();
    let node_id = config
        .node_id
        .clone()
        .unwrap_or_else(|| facts.default_node_id());
    trellis_proto::validate_node_id(&node_id)?;
    let hardware = hardware::open(&config.hardware, seed(&node_id), config.sim_speed)?;
    let announce = Announce {
        node_id: node_id.clone(),
        hostname: facts.hostname.clone(),
        mac: facts.mac.clone(),
        ip_addresses: facts.ip_addresses.clone(),
        arch: std::env::consts::ARCH.to_owned(),
        os: facts.os.clone(),
        model: facts.model.clone(),
        agent_version: VERSION.to_owned(),
        hardware: hardware.name().to_owned(),
        heartbeat_interval_secs: config.heartbeat_interval.as_secs().max(1),
        docker_endpoint: config.docker_endpoint.as_ref().map(ToString::to_string),
    };
    tracing::info!(node_id, broker = %config.broker, hardware = hardware.name(), "agent starting");
    let mut work = link::Work {
        jobs: jobs::runtime::Runtime::new(hardware.clone(), config.state_dir.as_deref()),
        commands: jobs::commands::Commands::new(),
    };
    for problem in work.jobs.restore() {
        tracing::error!(problem, "a job kept on disk did not start again");
    }
    loop {
        let (login, stored) = match &config.credentials {
            Some(c) => (Some(c.clone()), false),
            None => match credentials::load(config.state_dir.as_deref(), &node_id)? {
                Some(c) => (Some(c), true),
                None => match &config.join_token {
                    Some(token) => {
                        match credentials::enroll(&config, &announce, token, &shutdown).await? {
                            Some(c) => (Some(c), true),
                            // Shut down while waiting for approval: the jobs release their outputs.
                            None => {
                                work.jobs.halt_all(link::HALT_LIMIT).await;
                                return Ok(());
                            }
                        }
                    }
                    None => (None, false),
                },
            },
        };
        match session(&config, &announce, login, &mut work, &shutdown).await? {
            Ended::Shutdown => return Ok(()),
            Ended::Refused if stored && config.join_token.is_some() => {
                tracing::warn!(
                    node_id,
                    "the broker refused this node's credentials (removed?): enrolling again"
                );
                credentials::forget(config.state_dir.as_deref())?;
            }
            Ended::Refused => {}
        }
    }
}

/// A stable 64-bit seed from a node id (FNV-1a: the same on every build and machine, unlike the
/// standard library's hasher), so each node's simulator differs and runs repeat.
fn seed(node_id: &str) -> u64 {
    node_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
