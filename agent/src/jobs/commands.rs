//! Runs commands from the server: pings, and job actions handed to the job runtime. QoS 1 delivers
//! at least once, so a command seen again (same id) is not run again: its first result is sent
//! once more (RELIABILITY.md M3).

use std::collections::VecDeque;

use trellis_proto::{Action, CommandResult, decode_command};

use super::runtime::Runtime;

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
    pub fn handle(&mut self, payload: &[u8], jobs: &mut Runtime) -> Option<CommandResult> {
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
        let outcome = match &command.action {
            Action::Ping => Ok("pong".to_owned()),
            Action::StartJob {
                name,
                kind,
                settings,
                start,
            } => jobs.start_as(name.as_deref(), kind, settings, start.clone()),
            Action::StopJob { name } => jobs.stop(name),
            Action::PauseJob { name } => jobs.pause(name),
            Action::ResumeJob { name } => jobs.resume(name),
            Action::SetJobSettings { name, settings } => jobs.set(name, settings),
            Action::SetPumpCalibration(c) => jobs.set_calibration(c.clone()),
        };
        if let Err(reason) = &outcome {
            tracing::info!(id = command.id, reason, "refused a command");
        }
        let (ok, message) = match outcome {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        let result = CommandResult {
            id: command.id,
            ok,
            message,
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

    fn runtime() -> Runtime {
        Runtime::new(
            std::sync::Arc::new(crate::hardware::simulator::Simulator::new()),
            None,
        )
    }

    #[tokio::test]
    async fn a_job_command_delivered_twice_starts_one_job() {
        let mut c = Commands::new();
        let mut jobs = runtime();
        let start =
            br#"{"id":"s1","action":{"type":"start_job","kind":"pwm","settings":{"duty":10}}}"#;
        let first = c.handle(start, &mut jobs).unwrap();
        assert!(first.ok, "{first:?}");
        assert_eq!(
            c.handle(start, &mut jobs).unwrap(),
            first,
            "the repeat is answered, not run"
        );
        // A new command with the same job name is refused, naming the running job.
        let again = br#"{"id":"s2","action":{"type":"start_job","kind":"pwm"}}"#;
        let r = c.handle(again, &mut jobs).unwrap();
        assert!(
            !r.ok && r.message.contains("a job named pwm is already"),
            "{r:?}"
        );
        let bad = br#"{"id":"s3","action":{"type":"set_job_settings","name":"pwm","settings":{"duty":"high"}}}"#;
        let r = c.handle(bad, &mut jobs).unwrap();
        assert_eq!(
            r.message,
            "setting duty = \"high\" refused: must be a number"
        );
    }

    #[test]
    fn ping_answers_and_a_repeat_is_not_run_twice() {
        let mut c = Commands::new();
        let mut jobs = runtime();
        let ping = encode(&Command {
            id: "a".into(),
            action: Action::Ping,
        })
        .unwrap();
        let first = c.handle(&ping, &mut jobs).unwrap();
        assert_eq!(
            first,
            CommandResult {
                id: "a".into(),
                ok: true,
                message: "pong".into()
            }
        );
        assert_eq!(c.handle(&ping, &mut jobs).unwrap(), first);
        assert_eq!(
            c.recent.len(),
            1,
            "the repeat was not recorded as a new command"
        );
    }

    #[test]
    fn bad_commands_are_refused_with_the_reason() {
        let mut c = Commands::new();
        let mut jobs = runtime();
        let r = c
            .handle(br#"{"id":"b","action":{"type":"launch"}}"#, &mut jobs)
            .unwrap();
        assert!(
            !r.ok && r.id == "b" && r.message.contains("unknown variant `launch`"),
            "{r:?}"
        );
        assert_eq!(c.handle(b"\xff\x00garbage", &mut jobs), None);
    }
}
