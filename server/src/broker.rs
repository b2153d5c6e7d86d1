//! The embedded MQTT broker (rumqttd), so one binary is a whole leader. It runs on its own threads
//! (rumqttd brings its own runtimes) and listens on a loopback port that only the MQTT gate
//! (`mqtt_gate`) can log in to, with a password made at start; clients reach it through the gate,
//! which enforces who may publish and subscribe where.

use std::{collections::HashMap, net::SocketAddr};

use rumqttc::mqttbytes::v4::Login;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Largest MQTT payload the embedded broker accepts, bytes.
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// Username the gate logs in to rumqttd with.
const INTERNAL_USER: &str = "trellis-gate";

/// Starts rumqttd (MQTT 3.1.1) on a free loopback port; returns the address and the login that
/// rumqttd accepts (nothing else is accepted).
pub fn start_embedded() -> anyhow::Result<(SocketAddr, Login)> {
    // rumqttd binds on its own thread and only logs a bind failure: pick a port that is free now.
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let password = crate::auth::new_token("");
    let login = Login::new(INTERNAL_USER, password.clone());
    let mut v4 = HashMap::new();
    v4.insert(
        "trellis".to_owned(),
        ServerSettings {
            name: "trellis-v4".to_owned(),
            listen,
            tls: None,
            next_connection_delay_ms: 1,
            connections: ConnectionSettings {
                connection_timeout_ms: 10_000,
                max_payload_size: MAX_PAYLOAD,
                max_inflight_count: 100,
                auth: Some(HashMap::from([(INTERNAL_USER.to_owned(), password)])),
                external_auth: None,
                dynamic_filters: true,
            },
        },
    );
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 2_000,
            max_outgoing_packet_count: 200,
            // Memory held per topic filter: segments of 1 MiB, at most 4 kept.
            max_segment_size: 1024 * 1024,
            max_segment_count: 4,
            ..RouterConfig::default()
        },
        v4: Some(v4),
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })?;
    tracing::debug!(%listen, "embedded MQTT broker started");
    Ok((listen, login))
}
