//! The node's MQTT credentials: kept in the state directory (`credentials.json`, mode 0600), and
//! obtained by enrolling with a join token when there are none.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use rumqttc::{AsyncClient, ConnectionError, Event, Packet, QoS};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use trellis_proto::{Announce, EnrollRequest, EnrollResponse, encode, topic};

use crate::AgentConfig;

/// What is stored.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    node_id: String,
    username: String,
    password: String,
}

fn file(dir: &Path) -> PathBuf {
    dir.join("credentials.json")
}

/// Stored credentials for `node_id`, if any. Credentials stored for another node id are ignored.
pub fn load(dir: Option<&Path>, node_id: &str) -> anyhow::Result<Option<(String, String)>> {
    let Some(dir) = dir else { return Ok(None) };
    let path = file(dir);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let stored: Stored = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid credentials ({e}); delete it to enroll again",
            path.display()
        )
    })?;
    if stored.node_id != node_id {
        tracing::warn!(path = %path.display(), stored = stored.node_id, node_id, "credentials are for another node id; ignoring them");
        return Ok(None);
    }
    Ok(Some((stored.username, stored.password)))
}

/// Stores credentials, readable by the owner only.
pub fn save(dir: Option<&Path>, node_id: &str, login: &(String, String)) -> anyhow::Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create state directory {}: {e}", dir.display()))?;
    let path = file(dir);
    let stored = Stored {
        node_id: node_id.to_owned(),
        username: login.0.clone(),
        password: login.1.clone(),
    };
    crate::files::write_private(&path, &serde_json::to_vec_pretty(&stored)?, 0o600)?;
    Ok(())
}

/// Deletes stored credentials (and any enroll nonce, so the next request gets a fresh one).
pub fn forget(dir: Option<&Path>) -> anyhow::Result<()> {
    if let Some(dir) = dir {
        for path in [file(dir), dir.join(NONCE_FILE)] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Where the nonce of a pending enroll request is kept, so a restart while waiting for approval
/// asks again as the same request.
const NONCE_FILE: &str = "enroll-nonce";

/// The nonce of this agent's enroll request: kept in the state directory, else made from 128
/// random bits.
fn enroll_nonce(dir: Option<&Path>) -> anyhow::Result<String> {
    if let Some(dir) = dir
        && let Ok(n) = fs::read_to_string(dir.join(NONCE_FILE))
        && trellis_proto::valid_nonce(n.trim())
    {
        return Ok(n.trim().to_owned());
    }
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut fs::File::open("/dev/urandom")?, &mut bytes)?;
    let nonce = trellis_proto::hex(&bytes);
    if let Some(dir) = dir {
        fs::create_dir_all(dir)?;
        crate::files::write_private(&dir.join(NONCE_FILE), nonce.as_bytes(), 0o600)?;
    }
    Ok(nonce)
}

/// Asks to join with `token` and waits for an operator's approval. Returns the credentials (also
/// stored), or `None` when shut down first.
pub async fn enroll(
    config: &AgentConfig,
    announce: &Announce,
    token: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(String, String)>> {
    let node_id = announce.node_id.as_str();
    // The nonce is the client id too: a broker's ACL (Mosquitto's `%c`) then lets only this
    // connection read the response topic it names.
    let nonce = enroll_nonce(config.state_dir.as_deref())?;
    let mut opts = config.mqtt_options(nonce.clone())?;
    opts.set_keep_alive(config.keepalive);
    opts.set_clean_session(true);
    opts.set_credentials(trellis_proto::join_username(token), token.to_owned());
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let response_topic = topic::enroll_response(node_id, &nonce);
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(250), config.max_backoff);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                let request = encode(&EnrollRequest {
                    announce: announce.clone(),
                    nonce: nonce.clone(),
                    join_token: Some(token.to_owned()),
                })?;
                // The request first: the leader lets this connection read only the response
                // topic named in its request.
                client.try_publish(
                    topic::enroll_request(node_id),
                    QoS::AtLeastOnce,
                    false,
                    request,
                )?;
                client.try_subscribe(response_topic.clone(), QoS::AtLeastOnce)?;
                tracing::info!(
                    node_id,
                    "asked to join the cluster; waiting for an operator to approve this node"
                );
            }
            Ok(Event::Incoming(Packet::Publish(p)))
                if p.topic == response_topic && !p.payload.is_empty() =>
            {
                match serde_json::from_slice::<EnrollResponse>(&p.payload) {
                    Ok(r) => {
                        let login = (r.username, r.password);
                        save(config.state_dir.as_deref(), node_id, &login)?;
                        if let Some(dir) = config.state_dir.as_deref() {
                            let _ = fs::remove_file(dir.join(NONCE_FILE));
                        }
                        let _ = client.try_disconnect();
                        let _ =
                            tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await;
                        tracing::info!(node_id, "approved: credentials stored");
                        return Ok(Some(login));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "malformed enroll response; still waiting")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if let ConnectionError::ConnectionRefused(code) = &e {
                    tracing::error!(
                        ?code,
                        "the broker refused the join token (wrong, revoked or expired?)"
                    );
                } else {
                    tracing::warn!(error = %e, "enrollment: broker connection failed");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(backoff.next_wait()) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_privately_and_only_for_their_node() {
        let dir = tempfile::tempdir().unwrap();
        let login = ("n1".to_owned(), "secret".to_owned());
        save(Some(dir.path()), "n1", &login).unwrap();
        let mode = fs::metadata(dir.path().join("credentials.json"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert_eq!(load(Some(dir.path()), "n1").unwrap(), Some(login));
        assert_eq!(load(Some(dir.path()), "n2").unwrap(), None);
        forget(Some(dir.path())).unwrap();
        assert_eq!(load(Some(dir.path()), "n1").unwrap(), None);
        fs::write(dir.path().join("credentials.json"), "{broken").unwrap();
        let e = load(Some(dir.path()), "n1").unwrap_err().to_string();
        assert!(e.contains("delete it to enroll again"), "{e}");
    }
}
