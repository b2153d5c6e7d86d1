//! Accounts for an external Mosquitto broker that Trellis manages (`--mosquitto-dir`).
//!
//! The leader writes a password file (Mosquitto's own `$7$` PBKDF2-SHA512 format) with its own
//! account and one per enrolled node, and an ACL file giving each node only its own topics, then
//! asks Mosquitto to reload them (SIGHUP to the pid in `mosquitto.pid`). Mosquitto's side is three
//! lines of its config (printed by `trellis mosquitto-config`):
//!
//! ```text
//! allow_anonymous false
//! password_file <dir>/passwd
//! acl_file <dir>/acl
//! pid_file <dir>/mosquitto.pid
//! user <the leader's user>
//! ```

use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::Sha512;

/// PBKDF2 rounds Mosquitto 2 uses for `$7$` hashes.
const ROUNDS: u32 = 101;

/// A Mosquitto `$7$` hash of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    hash_with_salt(password, &salt)
}

fn hash_with_salt(password: &str, salt: &[u8]) -> String {
    let mut out = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, ROUNDS, &mut out);
    format!(
        "$7${ROUNDS}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(out)
    )
}

/// The ACL, derived from the topic table (`trellis_proto::TOPICS`): the server may do anything;
/// every other user (a node, username = node id) may only write its own node-to-leader topics and
/// read its own leader-to-node ones; anyone may read only the enroll response named by its own
/// client id (`%c`), which for an enrolling agent is the secret nonce of its request; and each join
/// account (`join_users`) may only write enroll requests.
fn acl(join_users: &[&str]) -> String {
    use trellis_proto::{Direction, TOPICS};
    let mut acl = format!(
        "user {}\ntopic readwrite #\n\n",
        super::gate::SERVER_USERNAME
    );
    for t in TOPICS {
        let line = match t.direction {
            Direction::NodeToLeader => {
                format!("pattern write {}", t.kind.with_placeholders("%u", "%c"))
            }
            Direction::LeaderToNode => {
                format!("pattern read {}", t.kind.with_placeholders("%u", "%c"))
            }
            Direction::LeaderToJoiner => {
                format!("pattern read {}", t.kind.with_placeholders("+", "%c"))
            }
            Direction::JoinerToLeader => continue,
        };
        acl.push_str(&line);
        acl.push('\n');
    }
    for u in join_users {
        acl.push_str(&format!("\nuser {u}\n"));
        for t in TOPICS
            .iter()
            .filter(|t| t.direction == Direction::JoinerToLeader)
        {
            acl.push_str(&format!("topic write {}\n", t.kind.filter()));
        }
    }
    acl
}

/// The lines to add to mosquitto.conf for a directory. The files are private to the leader's
/// user, so Mosquitto must run as that user too (`user`), which also lets it write its pid file
/// there for the leader to signal.
pub fn config_lines(dir: &Path) -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    format!(
        "# Accounts managed by the Trellis leader (--mosquitto-dir {0}).\n\
         allow_anonymous false\npassword_file {0}/passwd\nacl_file {0}/acl\npid_file {0}/mosquitto.pid\nuser {user}\n",
        dir.display()
    )
}

/// The managed directory.
#[derive(Debug, Clone)]
pub struct Mosquitto {
    dir: PathBuf,
}

impl Mosquitto {
    /// Manages `dir`, creating it.
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Mosquitto { dir })
    }

    /// Writes the password and ACL files (atomically, owner-only) and asks Mosquitto to reload.
    /// `accounts` (nodes and the server) and `joins` (join tokens) are (username, `$7$` hash)
    /// pairs. Mosquitto disconnects a client whose account is gone when it reloads.
    pub fn write(
        &self,
        accounts: &[(String, String)],
        joins: &[(String, String)],
    ) -> std::io::Result<()> {
        let passwd: String = accounts
            .iter()
            .chain(joins)
            .map(|(u, h)| format!("{u}:{h}\n"))
            .collect();
        crate::infra::pki::write_file(&self.dir.join("passwd"), passwd.as_bytes(), 0o600)?;
        let join_users: Vec<&str> = joins.iter().map(|(u, _)| u.as_str()).collect();
        crate::infra::pki::write_file(&self.dir.join("acl"), acl(&join_users).as_bytes(), 0o600)?;
        self.reload();
        Ok(())
    }

    /// SIGHUP to the broker, when its pid file is there (Mosquitto not started yet is fine: it
    /// reads the files when it starts).
    fn reload(&self) {
        let Ok(pid) = std::fs::read_to_string(self.dir.join("mosquitto.pid")) else {
            return;
        };
        let pid = pid.trim();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            tracing::warn!(pid, "mosquitto.pid does not hold a pid");
            return;
        }
        match std::process::Command::new("kill")
            .args(["-HUP", pid])
            .status()
        {
            Ok(s) if s.success() => tracing::debug!(pid, "asked Mosquitto to reload its accounts"),
            other => tracing::warn!(
                pid,
                ?other,
                "could not signal Mosquitto to reload its accounts"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_comes_from_the_topic_table() {
        assert_eq!(
            acl(&["join.0123456789abcdef"]),
            "user trellis-server\ntopic readwrite #\n\n\
             pattern write trellis/v1/nodes/%u/announce\n\
             pattern write trellis/v1/nodes/%u/status\n\
             pattern write trellis/v1/nodes/%u/heartbeat\n\
             pattern read trellis/v1/nodes/%u/command\n\
             pattern write trellis/v1/nodes/%u/result\n\
             pattern read trellis/v1/enroll/+/response/%c\n\
             pattern write trellis/v1/nodes/%u/kinds\n\
             pattern write trellis/v1/nodes/%u/jobs/+\n\
             pattern write trellis/v1/nodes/%u/readings\n\
             pattern write trellis/v1/nodes/%u/logs\n\
             pattern write trellis/v1/nodes/%u/calibrations\n\
             pattern read trellis/v1/nodes/%u/stored\n\
             \nuser join.0123456789abcdef\ntopic write trellis/v1/enroll/+/request\n"
        );
    }

    #[test]
    fn hashes_match_what_mosquitto_passwd_writes() {
        // From `mosquitto_passwd -b -c pw alice secret-pw` (Mosquitto 2.0).
        let line = "$7$101$3TEo+mOmfhbNoruY$2FUl4ADGck4v34UpsDLQLjlGyfsJ0HDcl7uqNeKUHGdpBIxBEqyL3EnZjXhuZe4mjRasBXlthXWJPgP8tzu67A==";
        let salt = STANDARD.decode(line.split('$').nth(3).unwrap()).unwrap();
        assert_eq!(hash_with_salt("secret-pw", &salt), line);
        assert_ne!(hash_with_salt("other", &salt), line);
        let fresh = hash_password("x");
        assert!(
            fresh.starts_with("$7$101$") && fresh.len() == line.len(),
            "{fresh}"
        );
    }
}
