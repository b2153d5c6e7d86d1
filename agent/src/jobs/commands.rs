//! Runs commands from the server. QoS 1 delivers at least once, so a command seen again (same id)
//! is not run again: its first result is sent once more (RELIABILITY.md M3).

use std::collections::VecDeque;

use trellis_proto::{Action, CommandResult, decode_command};

/// How many recent command ids are remembered for de-duplication.
const REMEMBERED: usize = 256;

/// The command runner with its memory of recent results.
#[derive(Debug, Default)]
pub struct Commands {
    recent: VecDeque<CommandResult>,
}

impl Commands {
    /// A runner that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one command payload and returns the result to publish; `None` when the payload is
    /// so broken that it has no id to answer to (it is logged).
    pub fn handle(&mut self, payload: &[u8]) -> Option<CommandResult> {
        let command = match decode_command(payload) {
            Ok(c) => c,
            Err(reason) => {
                // Answer if at least the id can be read, so the caller gets the reason at once.
                let id = serde_json::from_slice::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| v.get("id")?.as_str().map(str::to_owned));
                tracing::warn!(reason, "refused a command");
                return id.map(|id| CommandResult {
                    id,
                    ok: false,
                    message: reason,
                });
            }
        };
        if let Some(done) = self.recent.iter().find(|r| r.id == command.id) {
            tracing::debug!(id = command.id, "duplicate command; resending its result");
            return Some(done.clone());
        }
        let result = match command.action {
            Action::Ping => CommandResult {
                id: command.id,
                ok: true,
                message: "pong".into(),
            },
        };
        if self.recent.len() == REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back(result.clone());
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::{Command, encode};

    #[test]
    fn ping_answers_and_a_repeat_is_not_run_twice() {
        let mut c = Commands::new();
        let ping = encode(&Command {
            id: "a".into(),
            action: Action::Ping,
        })
        .unwrap();
        let first = c.handle(&ping).unwrap();
        assert_eq!(
            first,
            CommandResult {
                id: "a".into(),
                ok: true,
                message: "pong".into()
            }
        );
        assert_eq!(c.handle(&ping).unwrap(), first);
        assert_eq!(
            c.recent.len(),
            1,
            "the repeat was not recorded as a new command"
        );
    }

    #[test]
    fn bad_commands_are_refused_with_the_reason() {
        let mut c = Commands::new();
        let r = c
            .handle(br#"{"id":"b","action":{"type":"launch"}}"#)
            .unwrap();
        assert!(
            !r.ok && r.id == "b" && r.message.contains("unknown variant `launch`"),
            "{r:?}"
        );
        assert_eq!(c.handle(b"\xff\x00garbage"), None);
    }
}
