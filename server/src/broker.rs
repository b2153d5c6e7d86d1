//! The embedded MQTT broker (rumqttd), so one binary is a whole leader. It runs on its own threads
//! (rumqttd brings its own runtimes); the server talks to it over TCP like any other client, so the
//! embedded and an external broker behave the same.

use std::{collections::HashMap, net::SocketAddr};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Largest MQTT payload the embedded broker accepts, bytes.
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// Starts rumqttd listening on `listen` (MQTT 3.1.1). Fails at once when the address is taken,
/// instead of leaving a broker thread that logs the error and serves nothing.
pub fn start_embedded(listen: SocketAddr) -> anyhow::Result<()> {
    // rumqttd binds on its own thread and only logs a bind failure; probe the address first.
    std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("cannot listen for MQTT on {listen} (mqtt_listen): {e}"))?;
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
                auth: None,
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
    tracing::info!(%listen, "embedded MQTT broker started");
    Ok(())
}
