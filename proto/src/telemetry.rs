//! What jobs report besides their status: readings (measurements with history) and log lines,
//! each sent in batches numbered by the agent so the leader stores every item once; and the
//! node's pump calibrations.
//!
//! Numbering: an agent process picks a random `run` id when it starts and numbers its items
//! 0, 1, 2, ... in that run. A batch carries the number of its first item (the rest follow without
//! gaps), so the leader keeps, per node and run, the next number it expects and skips what it has
//! already stored: a QoS 1 batch delivered twice is stored once. Items the agent had to drop (its
//! outage buffer was full) leave a gap in the numbers and are counted in `dropped`, a total for the
//! run, so a loss is always reported, never silent.

use serde::{Deserialize, Serialize};

/// Most items in one batch (readings or log lines).
pub const MAX_BATCH: usize = 500;
/// Longest metric name, log line and unit accepted from a node, in bytes.
pub const MAX_METRIC_LEN: usize = 64;
/// Longest log line, in bytes; a longer line is cut by the agent.
pub const MAX_LOG_LINE: usize = 2048;

/// One series of a batch: a job's metric.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Series {
    /// The job that measured it.
    pub job: String,
    /// What was measured (`od`, `rpm`, `temperature`).
    pub metric: String,
    /// Its unit, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// Readings from one node: `points` are `[series index, time, value]`, time in milliseconds since
/// the Unix epoch by the node's clock (the leader corrects it by the node's measured offset and
/// keeps both). Columnar, so a batch of 500 readings of one series is a few kilobytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadingBatch {
    /// The agent run that numbered these readings.
    pub run: String,
    /// The number of `points[0]`.
    pub seq: u64,
    /// The lowest number the agent still holds: everything below it is stored or was dropped
    /// (its buffer was full), so a gap below it is no loss in transit.
    #[serde(default)]
    pub held: u64,
    /// Readings this run has dropped so far (its buffer was full), in total.
    #[serde(default)]
    pub dropped: u64,
    /// The series the points refer to.
    pub series: Vec<Series>,
    /// `[series index, time ms, value]`.
    pub points: Vec<(u32, i64, f64)>,
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// A program's standard output (an `exec` job).
    Stdout,
    /// A program's standard error.
    Stderr,
    /// The agent, about the job (a dose given, a setting refused by the program).
    Agent,
}

impl LogStream {
    /// The stream's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Agent => "agent",
        }
    }
}

/// One log line of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// The job.
    pub job: String,
    /// When, milliseconds since the Unix epoch by the node's clock.
    pub at_ms: i64,
    /// Where it came from.
    pub stream: LogStream,
    /// The text (at most [`MAX_LOG_LINE`] bytes).
    pub line: String,
}

/// Log lines from one node, numbered like readings (their own numbers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogBatch {
    /// The agent run that numbered these lines.
    pub run: String,
    /// The number of `lines[0]`.
    pub seq: u64,
    /// The lowest number the agent still holds (see [`ReadingBatch::held`]).
    #[serde(default)]
    pub held: u64,
    /// Lines this run has dropped so far, in total.
    #[serde(default)]
    pub dropped: u64,
    /// The lines, oldest first.
    pub lines: Vec<LogLine>,
}

impl ReadingBatch {
    /// Checks what a well-behaved agent never sends: the error names the first problem.
    pub fn check(&self) -> Result<(), String> {
        check_run(&self.run)?;
        check_seq(self.seq)?;
        if self.points.len() > MAX_BATCH || self.series.len() > MAX_BATCH {
            return Err(format!("more than {MAX_BATCH} points or series"));
        }
        for s in &self.series {
            crate::validate_job_name(&s.job).map_err(|e| e.to_string())?;
            check_text("metric", &s.metric)?;
            if let Some(u) = &s.unit {
                check_text("unit", u)?;
            }
        }
        for (i, _, v) in &self.points {
            if *i as usize >= self.series.len() {
                return Err(format!(
                    "point names series {i}, which the batch does not have"
                ));
            }
            if !v.is_finite() {
                return Err(format!("a reading of {v} (values must be finite numbers)"));
            }
        }
        Ok(())
    }
}

impl LogBatch {
    /// Checks what a well-behaved agent never sends.
    pub fn check(&self) -> Result<(), String> {
        check_run(&self.run)?;
        check_seq(self.seq)?;
        if self.lines.len() > MAX_BATCH {
            return Err(format!("more than {MAX_BATCH} lines"));
        }
        for l in &self.lines {
            crate::validate_job_name(&l.job).map_err(|e| e.to_string())?;
            if l.line.len() > MAX_LOG_LINE {
                return Err(format!("a line longer than {MAX_LOG_LINE} bytes"));
            }
        }
        Ok(())
    }
}

/// The highest first number a batch may carry (the leader stores numbers as signed 64-bit).
const MAX_SEQ: u64 = (i64::MAX as u64) - MAX_BATCH as u64;

fn check_seq(seq: u64) -> Result<(), String> {
    if seq <= MAX_SEQ {
        Ok(())
    } else {
        Err(format!("seq {seq} is beyond {MAX_SEQ}"))
    }
}

fn check_run(run: &str) -> Result<(), String> {
    if run.len() == 16 && run.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("run {run:?} is not 16 hex digits"))
    }
}

fn check_text(what: &str, text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > MAX_METRIC_LEN || text.chars().any(char::is_control) {
        Err(format!(
            "{what} {text:?} must be 1 to {MAX_METRIC_LEN} bytes without control characters"
        ))
    } else {
        Ok(())
    }
}

/// How far the leader has stored one agent run's readings and log lines: the number of the next
/// item it expects in each stream (everything below is stored, in its database, for good). Sent
/// retained to the node after every transaction that moved it; the agent drops from its outage
/// buffers only what this says is stored, so nothing is lost even when the leader dies with
/// batches the broker had already acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The agent run.
    pub run: String,
    /// The next reading number expected.
    pub readings: u64,
    /// The next log-line number expected.
    pub logs: u64,
    /// A batch came with a gap before it that the agent had not dropped (lost on the way: a
    /// broker with no leader to hand it to): it was not stored, and the agent sends again from
    /// what these marks say.
    #[serde(default)]
    pub gap: bool,
}

/// A dosing pump's calibration: where it is wired and how much it moves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PumpCalibration {
    /// The pump's name (`media`, `waste`, `alt_media`).
    pub pump: String,
    /// The BCM pin that switches it.
    pub pin: u8,
    /// Millilitres it moves per second when on (measured by running it and weighing).
    pub ml_per_second: f64,
}

impl PumpCalibration {
    /// Checks a calibration before it is stored.
    pub fn check(&self) -> Result<(), String> {
        crate::validate_job_name(&self.pump)
            .map_err(|_| format!("pump name {:?}: use A-Z, a-z, 0-9, '-' and '_'", self.pump))?;
        if self.pin > 27 {
            return Err(format!("pin {} is not a BCM pin (0-27)", self.pin));
        }
        if !(self.ml_per_second.is_finite()
            && self.ml_per_second >= 0.001
            && self.ml_per_second <= 100.0)
        {
            return Err(format!(
                "ml_per_second {} must be between 0.001 and 100",
                self.ml_per_second
            ));
        }
        Ok(())
    }
}

/// A node's pump calibrations (retained, so the leader always has the current ones).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Calibrations {
    /// One per pump, by name.
    pub pumps: Vec<PumpCalibration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> ReadingBatch {
        ReadingBatch {
            run: "0123456789abcdef".into(),
            seq: 7,
            held: 7,
            dropped: 0,
            series: vec![Series {
                job: "od_reading".into(),
                metric: "od".into(),
                unit: None,
            }],
            points: vec![(0, 1_700_000_000_000, 0.5)],
        }
    }

    #[test]
    fn batches_are_compact_and_checked() {
        let b = batch();
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(
            json,
            r#"{"run":"0123456789abcdef","seq":7,"held":7,"dropped":0,"series":[{"job":"od_reading","metric":"od"}],"points":[[0,1700000000000,0.5]]}"#
        );
        assert_eq!(b.check(), Ok(()));
        let mut bad = b.clone();
        bad.points.push((1, 0, 1.0));
        assert!(bad.check().unwrap_err().contains("series 1"));
        let mut bad = b.clone();
        bad.run = "x".into();
        assert!(bad.check().unwrap_err().contains("16 hex digits"));
        let mut bad = b.clone();
        bad.seq = u64::MAX;
        assert!(bad.check().unwrap_err().contains("is beyond"));
        let mut bad = b;
        bad.series[0].metric = "a\nb".into();
        assert!(bad.check().unwrap_err().contains("control characters"));
    }

    #[test]
    fn calibrations_are_checked() {
        let c = PumpCalibration {
            pump: "media".into(),
            pin: 23,
            ml_per_second: 0.5,
        };
        assert_eq!(c.check(), Ok(()));
        let bad = PumpCalibration {
            ml_per_second: 0.0,
            ..c.clone()
        };
        assert!(
            bad.check()
                .unwrap_err()
                .contains("ml_per_second 0 must be between 0.001 and 100")
        );
        let bad = PumpCalibration { pin: 30, ..c };
        assert!(bad.check().unwrap_err().contains("pin 30"));
    }
}
