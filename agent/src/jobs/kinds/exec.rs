//! `exec`: any program as a job, in any language: how hardware Trellis has no kind for is added.
//! The program runs under `/bin/sh -c <command>` and speaks JSON lines (docs/jobs.md):
//!
//! - on its stdout, one JSON object per line: `{"reading": {"od": 0.52}}` (its latest values, as a
//!   `pid` job's), `{"setting": {"speed": 3}}` (a setting it now uses, published as the job's), or
//!   `{"log": "text"}`; any other line is a log line as it is, and so is every stderr line;
//! - on its stdin, each accepted setting change: `{"set": {"speed": 4}}`;
//! - at start, every setting in the environment variable `TRELLIS_SETTINGS` (a JSON object).
//!
//! Settings beyond `command` and `grace` are the program's own (the kind is open). Stopping sends
//! SIGTERM, then SIGKILL when the program is still running after `grace` seconds. A program that
//! ends by itself fails the job with its exit status.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    os::unix::process::CommandExt,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use trellis_proto::{KindSpec, LogStream, SettingType, Settings};

use super::{Driver, Kind, Measurement, Setting, number};
use crate::hardware::{Hardware, HardwareError};

/// Most lines taken from the program per tick; the rest wait for the next (a chatty program cannot
/// starve the others).
const LINES_PER_TICK: usize = 1000;
/// Lines waiting between the program and the job (reader threads block when it is full, and so
/// does the program: back-pressure, not memory).
const LINE_QUEUE: usize = 4096;
/// Longest line kept, bytes; longer ones are cut (and say so).
const MAX_LINE: usize = 16 * 1024;
/// Setting changes waiting for a program that does not read its stdin; past this a change is
/// refused instead of blocking the job.
const STDIN_QUEUE: usize = 64;
/// Most values and settings a program may report; more are ignored (a job's status must stay
/// small enough for one MQTT message).
const MAX_REPORTED: usize = 64;
/// Environment variables handed to the program from the agent's own (never the agent's secrets,
/// such as its join token).
const PASSED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER"];

/// The kind's declaration.
pub fn kind() -> Kind {
    Kind {
        spec: KindSpec {
            kind: "exec".into(),
            description: "Run any program as a job; it speaks JSON lines on stdin and stdout"
                .into(),
            settings: vec![
                Setting {
                    name: "command",
                    ty: SettingType::String,
                    unit: None,
                    range: None,
                    choices: &[],
                    default: json!("true"),
                    live: false,
                    description: "The program and its arguments, run by /bin/sh -c",
                }
                .into(),
                Setting {
                    name: "grace",
                    ty: SettingType::Float,
                    unit: Some("s"),
                    range: Some((0.0, 600.0)),
                    choices: &[],
                    default: json!(5.0),
                    live: true,
                    description: "Time between SIGTERM and SIGKILL when stopping",
                }
                .into(),
            ],
            open: true,
        },
        make: |_| Box::new(Exec::default()),
        restarts: true,
    }
}

/// A line from the program.
enum Line {
    Out(String),
    Err(String),
}

/// The running program and what it said.
#[derive(Default)]
struct Exec {
    child: Option<Child>,
    stdin: Option<mpsc::SyncSender<String>>,
    lines: Option<mpsc::Receiver<Line>>,
    /// The settings last handed to the program.
    sent: Settings,
    /// The metrics the program has reported (at most [`MAX_REPORTED`] names).
    metrics: BTreeSet<String>,
    readings: Vec<Measurement>,
    echoed: Settings,
    logs: Vec<(LogStream, String)>,
}

fn backend(what: &str, e: impl std::fmt::Display) -> HardwareError {
    HardwareError::Backend(format!("{what}: {e}"))
}

/// Writes queued lines to the program's stdin on its own thread, so a program that does not read
/// blocks nobody; ends when the queue or the pipe closes.
fn feed(mut stdin: ChildStdin) -> mpsc::SyncSender<String> {
    let (tx, rx) = mpsc::sync_channel::<String>(STDIN_QUEUE);
    std::thread::spawn(move || {
        for line in rx {
            if stdin
                .write_all(line.as_bytes())
                .and_then(|()| stdin.flush())
                .is_err()
            {
                return;
            }
        }
    });
    tx
}

/// Sends `signal` (`TERM`, `KILL`) to the program's whole process group: a pipeline or a program
/// `sh` started goes too, not only the shell.
fn signal_group(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
        .status();
}

/// Reads `from` line by line into `tx` until the program closes it.
fn pump(from: impl std::io::Read + Send + 'static, tx: mpsc::SyncSender<Line>, err: bool) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            // At most MAX_LINE bytes of one line in memory; the rest of a longer one is skipped.
            match (&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
                let mut rest = Vec::new();
                if reader.read_until(b'\n', &mut rest).is_err() {
                    return;
                }
            }
            let mut text = String::from_utf8_lossy(&buf).trim_end().to_owned();
            if text.len() > MAX_LINE {
                let mut cut = MAX_LINE;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str(" … (line cut)");
            }
            let line = if err {
                Line::Err(text)
            } else {
                Line::Out(text)
            };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
}

impl Exec {
    fn start(&mut self, settings: &Settings) -> Result<(), HardwareError> {
        let command = settings
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("true");
        let env = serde_json::to_string(settings).map_err(|e| backend("settings", e))?;
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", command]).env_clear();
        for key in PASSED_ENV {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        // Its own process group, so stopping reaches every process it started.
        let mut child = cmd
            .process_group(0)
            .env("TRELLIS_SETTINGS", env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| backend("cannot start /bin/sh", e))?;
        let (tx, rx) = mpsc::sync_channel(LINE_QUEUE);
        if let Some(out) = child.stdout.take() {
            pump(out, tx.clone(), false);
        }
        if let Some(err) = child.stderr.take() {
            pump(err, tx, true);
        }
        self.stdin = child.stdin.take().map(feed);
        self.lines = Some(rx);
        self.child = Some(child);
        self.sent = settings.clone();
        Ok(())
    }

    /// Hands the program every setting that changed since it last heard.
    fn send_changes(&mut self, settings: &Settings) -> Result<(), HardwareError> {
        let changed: Settings = settings
            .iter()
            .filter(|(k, v)| self.sent.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        if let Some(stdin) = self.stdin.as_ref() {
            let line = json!({ "set": changed }).to_string();
            stdin.try_send(format!("{line}\n")).map_err(|e| {
                backend(
                    "the program does not take its setting changes (stdin full or closed)",
                    e,
                )
            })?;
        }
        self.sent = settings.clone();
        Ok(())
    }

    fn take(&mut self, line: Line) {
        let text = match line {
            Line::Err(t) => {
                self.logs.push((LogStream::Stderr, t));
                return;
            }
            Line::Out(t) => t,
        };
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(&text) else {
            self.logs.push((LogStream::Stdout, text));
            return;
        };
        let mut understood = false;
        if let Some(Value::Object(r)) = msg.get("reading") {
            understood = true;
            for (k, v) in r {
                let fits = self.metrics.len() < MAX_REPORTED || self.metrics.contains(k);
                if let Some(n) = v.as_f64()
                    && fits
                    && !k.is_empty()
                    && k.len() <= trellis_proto::MAX_METRIC_LEN
                    && !k.chars().any(char::is_control)
                {
                    self.metrics.insert(k.clone());
                    self.readings.push(Measurement::new(k, n, None));
                }
            }
        }
        if let Some(Value::Object(s)) = msg.get("setting") {
            understood = true;
            for (k, v) in s {
                // Only settings that would be accepted from a user (plain, small) are echoed.
                if self.echoed.len() < MAX_REPORTED
                    && trellis_proto::validate_job_name(k).is_ok()
                    && (v.is_number()
                        || v.is_boolean()
                        || v.as_str().is_some_and(|t| t.len() <= 1024))
                {
                    self.echoed.insert(k.clone(), v.clone());
                }
            }
        }
        if let Some(log) = msg.get("log") {
            understood = true;
            let line = log.as_str().map_or_else(|| log.to_string(), str::to_owned);
            self.logs.push((LogStream::Stdout, line));
        }
        if !understood {
            self.logs.push((LogStream::Stdout, text));
        }
    }
}

impl Exec {
    /// Takes what the ended program wrote before it ended: its last readings and lines are
    /// kept, not lost with it. Waits until its pipes close, at most [`DRAIN_LIMIT`] (a process
    /// it left behind may hold them open).
    fn drain(&mut self) {
        let Some(rx) = self.lines.take() else { return };
        let deadline = Instant::now() + DRAIN_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => self.take(line),
                Err(_) => return,
            }
        }
    }
}

/// Longest wait for an ended program's pipes to close.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);

impl Driver for Exec {
    fn apply(&mut self, _hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        if self.child.is_none() {
            self.start(settings)
        } else {
            self.send_changes(settings)
        }
    }

    fn period(&self, _settings: &Settings) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }

    fn tick(&mut self, _hw: &dyn Hardware, _settings: &Settings) -> Result<(), HardwareError> {
        if let Some(rx) = self.lines.take() {
            for line in rx.try_iter().take(LINES_PER_TICK) {
                self.take(line);
            }
            self.lines = Some(rx);
        }
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait().map_err(|e| backend("wait", e))?
        {
            self.child = None;
            // What it wrote before it ended is kept.
            self.drain();
            return Err(HardwareError::Backend(format!(
                "the program ended by itself ({status})"
            )));
        }
        Ok(())
    }

    fn release(&mut self, _hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        self.stdin = None;
        let grace = Duration::from_secs_f64(number(settings, "grace").unwrap_or(5.0));
        // SIGTERM first (std has only SIGKILL): the program may put its hardware in a safe state.
        signal_group(&child, "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if child.try_wait().map_err(|e| backend("wait", e))?.is_some() {
                self.drain();
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.logs.push((
            LogStream::Agent,
            format!("the program was still running {grace:?} after SIGTERM: killed"),
        ));
        signal_group(&child, "KILL");
        child.wait().map_err(|e| backend("wait", e))?;
        self.drain();
        Ok(())
    }

    fn take_readings(&mut self) -> Vec<Measurement> {
        std::mem::take(&mut self.readings)
    }

    fn take_echoed(&mut self) -> Settings {
        std::mem::take(&mut self.echoed)
    }

    fn take_logs(&mut self) -> Vec<(LogStream, String)> {
        std::mem::take(&mut self.logs)
    }
}

impl Drop for Exec {
    /// The agent is going away (or the job's task ended without a stop): no program outlives its
    /// job, or a restart would run a second copy beside it.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_group(&child, "KILL");
            let _ = child.wait();
        }
    }
}
