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

/// Connections rumqttd allows beyond the gate's client limit: the gate's own checks
/// (`check_embedded`) and connections closing while new ones open.
const INTERNAL_CONNECTION_SLACK: usize = 16;

/// Starts rumqttd (MQTT 3.1.1) on a free loopback port; returns the address and the login that
/// rumqttd accepts (nothing else is accepted). `max_clients` is the gate's limit
/// (`mqtt_max_connections`): every client comes through the gate, so rumqttd's own limit is that
/// plus a little slack, and the two never disagree.
pub fn start_embedded(max_clients: usize) -> anyhow::Result<(SocketAddr, Login)> {
    // rumqttd binds on its own thread and only logs a bind failure: pick a port that is free now.
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let password = crate::access::new_token("");
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
            max_connections: max_clients + INTERNAL_CONNECTION_SLACK,
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

/// Starts rumqttd as [`start_embedded`] does and checks it is the one answering on its port,
/// trying another port (up to three) when something else took the port first.
pub async fn start_embedded_checked(max_clients: usize) -> anyhow::Result<(SocketAddr, Login)> {
    let mut failure = None;
    for _ in 0..3 {
        let (addr, login) = start_embedded(max_clients)?;
        match check_embedded(addr, &login, std::time::Duration::from_secs(5)).await {
            Ok(()) => return Ok((addr, login)),
            Err(e) => {
                tracing::warn!(error = %e, "starting the embedded MQTT broker on another port");
                failure = Some(e);
            }
        }
    }
    Err(failure.unwrap_or_else(|| anyhow::anyhow!("the embedded MQTT broker did not start")))
}

/// Waits until the broker on `addr` accepts `login`, for at most `patience`. rumqttd binds its
/// port on its own thread and only logs a failure, and between picking the free port and binding
/// it another process may take it: then something else answers there, which this tells apart
/// (only our rumqttd knows the password made at start), so the leader stops with a clear error
/// instead of running without a broker.
pub async fn check_embedded(
    addr: SocketAddr,
    login: &Login,
    patience: std::time::Duration,
) -> anyhow::Result<()> {
    use rumqttc::mqttbytes::v4::{Connect, Packet};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut connect = Connect::new(format!("trellis-check-{}", uuid::Uuid::new_v4().simple()));
    connect.login = Some(login.clone());
    let mut frame = bytes::BytesMut::new();
    Packet::Connect(connect)
        .write(&mut frame, 4096)
        .map_err(|e| anyhow::anyhow!("cannot encode CONNECT: {e:?}"))?;
    let deadline = tokio::time::Instant::now() + patience;
    let mut last = String::from("no answer");
    while tokio::time::Instant::now() < deadline {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(&frame).await?;
            let mut ack = [0u8; 4];
            s.read_exact(&mut ack).await?;
            // CONNACK (0x20, length 2) with return code 0, then DISCONNECT.
            if ack == [0x20, 2, 0, 0] || ack == [0x20, 2, 1, 0] {
                // DISCONNECT, then let the broker close first.
                s.write_all(&[0xe0, 0]).await?;
                let mut rest = [0u8; 16];
                let _ =
                    tokio::time::timeout(std::time::Duration::from_millis(500), s.read(&mut rest))
                        .await;
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "answered {ack:02x?}, not our broker's CONNACK"
                )))
            }
        };
        match tokio::time::timeout(std::time::Duration::from_secs(1), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no CONNACK within 1 s".into(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "the embedded MQTT broker did not start on its internal port {addr} ({last}); \
         another process may have taken the port"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_check_tells_our_broker_from_whatever_else_holds_the_port() {
        let (addr, login) = start_embedded(10).expect("start");
        check_embedded(addr, &login, std::time::Duration::from_secs(10))
            .await
            .expect("our broker answers");
        let wrong = Login::new(INTERNAL_USER, "not-the-password");
        assert!(
            check_embedded(addr, &wrong, std::time::Duration::from_secs(2))
                .await
                .is_err(),
            "a wrong password passed"
        );
        // Something else on the port (say another program's HTTP server).
        let other = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let other_addr = other.local_addr().expect("addr");
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut s, _)) = other.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let e = check_embedded(other_addr, &login, std::time::Duration::from_secs(2))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&other_addr.port().to_string()) && e.contains("not our broker"),
            "{e}"
        );
    }
}
