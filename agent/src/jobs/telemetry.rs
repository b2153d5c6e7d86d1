//! The outage buffers between the jobs and the link: what jobs measure (readings) and say (log
//! lines) waits here, numbered, until the broker has acknowledged it (PUBACK). Jobs never wait on
//! the network: through a broker outage they keep driving the hardware and their output piles up
//! here, up to a bound; past it the oldest items are dropped and counted, and the count travels in
//! every batch, so a loss is reported, never silent.
//!
//! Bounds: [`MAX_READINGS`] readings or [`MAX_READING_BYTES`], and [`MAX_LOG_LINES`] lines or
//! [`MAX_LOG_BYTES`] (whichever is reached first). At one reading per second per metric, 100 000
//! readings hold more than a day of a typical node's jobs (`od_reading`, `stirring` and
//! `temperature_automation` make 6 per 5 s).
//!
//! Delivery: the link takes a batch (up to [`trellis_proto::MAX_BATCH`] items) and publishes it
//! with QoS 1. Items leave only when the leader says they are in its database (its retained
//! `stored` message, [`Outbox::stored_until`]), not on the broker's PUBACK: a leader that dies with
//! batches the broker had already acknowledged loses nothing. When the connection breaks, or the
//! leader has confirmed nothing for a while, the link [`Outbox::rewind`]s and sends again; the
//! leader skips numbers it has stored, so a repeat is harmless.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use trellis_proto::{
    LogBatch, LogLine, LogStream, MAX_BATCH, MAX_LOG_LINE, MAX_METRIC_LEN, ReadingBatch, Series,
};

use super::kinds::Measurement;

/// Most readings kept while the broker is away.
pub const MAX_READINGS: usize = 100_000;
/// Most bytes of readings kept (about 100 bytes each with their series names).
pub const MAX_READING_BYTES: usize = 16 << 20;
/// Most log lines kept while the broker is away.
pub const MAX_LOG_LINES: usize = 10_000;
/// Most bytes of log lines kept.
pub const MAX_LOG_BYTES: usize = 4 << 20;
/// Most bytes in one batch (by the sizes items are counted with, which bound their JSON): well
/// under the 256 KiB MQTT packet limit of the broker and the agent, whatever the lines hold.
pub const MAX_BATCH_BYTES: usize = 128 << 10;

/// A bounded queue of numbered items, acknowledged in order.
pub struct Outbox<T> {
    inner: Mutex<Inner<T>>,
    max_items: usize,
    max_bytes: usize,
}

struct Inner<T> {
    /// (number, item, size in bytes), oldest first.
    queue: VecDeque<(u64, T, usize)>,
    bytes: usize,
    /// The number the next item gets.
    next: u64,
    /// Items numbered below this have been handed to the broker (and await their PUBACK).
    sent: u64,
    /// Items dropped because the queue was full, in total.
    dropped: u64,
    /// When the front item was sent (and not confirmed since): how long the leader has been
    /// silent about what it was sent.
    front_sent: Option<std::time::Instant>,
}

impl<T: Clone> Outbox<T> {
    /// An empty outbox holding at most `max_items` items and `max_bytes` bytes.
    pub fn new(max_items: usize, max_bytes: usize) -> Self {
        Outbox {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                bytes: 0,
                next: 0,
                sent: 0,
                dropped: 0,
                front_sent: None,
            }),
            max_items,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an item of `size` bytes, dropping (and counting) the oldest when full.
    pub fn push(&self, item: T, size: usize) {
        let mut q = self.lock();
        let n = q.next;
        q.next += 1;
        q.bytes += size;
        q.queue.push_back((n, item, size));
        while q.queue.len() > self.max_items || q.bytes > self.max_bytes {
            let Some((_, _, size)) = q.queue.pop_front() else {
                break;
            };
            q.bytes -= size;
            q.dropped += 1;
        }
        // A dropped item that had been sent is not sent again either.
        let front = q.queue.front().map_or(q.next, |f| f.0);
        q.sent = q.sent.max(front);
    }

    /// The next items not yet sent (at most `max`, and at most `max_bytes` by their sizes, but
    /// at least one), marked sent: their first number, the lowest number still held (the
    /// batch's `held`), the total dropped so far, and the items.
    pub fn next_batch(&self, max: usize, max_bytes: usize) -> Option<(u64, u64, u64, Vec<T>)> {
        let mut q = self.lock();
        let sent = q.sent;
        let mut bytes = 0;
        let items: Vec<(u64, T)> = q
            .queue
            .iter()
            .skip_while(|(n, _, _)| *n < sent)
            .take(max)
            .take_while(|(_, _, size)| {
                bytes += size;
                bytes <= max_bytes || bytes == *size
            })
            .map(|(n, item, _)| (*n, item.clone()))
            .collect();
        let first = items.first()?.0;
        q.sent = first + items.len() as u64;
        let held = q.queue.front().map_or(first, |f| f.0);
        if held == first {
            q.front_sent = Some(std::time::Instant::now());
        }
        Some((
            first,
            held,
            q.dropped,
            items.into_iter().map(|(_, i)| i).collect(),
        ))
    }

    /// The leader has stored every item numbered below `next`: they are done.
    pub fn stored_until(&self, next: u64) {
        let mut q = self.lock();
        let before = q.queue.front().map(|f| f.0);
        while q.queue.front().is_some_and(|f| f.0 < next) {
            if let Some((_, _, size)) = q.queue.pop_front() {
                q.bytes -= size;
            }
        }
        if q.queue.front().map(|f| f.0) != before {
            // Progress: what is sent now waits from now.
            let front_is_sent = q.queue.front().is_some_and(|f| f.0 < q.sent);
            q.front_sent = front_is_sent.then(std::time::Instant::now);
        }
    }

    /// How long the oldest item sent has waited for the leader's word, if one waits.
    pub fn waiting(&self) -> Option<std::time::Duration> {
        self.lock().front_sent.map(|t| t.elapsed())
    }

    /// The connection broke, or the leader is silent: what it has not confirmed is sent again.
    pub fn rewind(&self) {
        let mut q = self.lock();
        q.sent = q.queue.front().map_or(q.next, |f| f.0);
        q.front_sent = None;
    }

    /// The batch numbered from `first` could not be queued: it is sent again next time.
    pub fn rewind_to(&self, first: u64) {
        let mut q = self.lock();
        q.sent = q.sent.min(first);
    }

    /// Items waiting (sent or not) and dropped in total.
    pub fn depth(&self) -> (usize, u64) {
        let q = self.lock();
        (q.queue.len(), q.dropped)
    }
}

/// One reading waiting to be sent.
#[derive(Clone)]
pub struct Point {
    series: Arc<Series>,
    at_ms: i64,
    value: f64,
}

/// What the link sends for the jobs: readings and log lines, numbered within this agent run.
#[derive(Clone)]
pub struct Telemetry {
    /// This agent run's id: 16 hex digits, random per start.
    pub run: String,
    /// Readings waiting.
    pub readings: Arc<Outbox<Point>>,
    /// Log lines waiting.
    pub logs: Arc<Outbox<LogLine>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// Milliseconds since the Unix epoch by this node's clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Telemetry {
    /// Empty buffers and a new run id.
    pub fn new() -> Self {
        use std::hash::BuildHasher;
        // The standard library seeds each RandomState from the OS's randomness.
        let random =
            std::collections::hash_map::RandomState::new().hash_one((std::process::id(), now_ms()));
        Telemetry {
            run: format!("{random:016x}"),
            readings: Arc::new(Outbox::new(MAX_READINGS, MAX_READING_BYTES)),
            logs: Arc::new(Outbox::new(MAX_LOG_LINES, MAX_LOG_BYTES)),
        }
    }

    /// Queues a reading of `job`. Its metric and unit are made to pass the leader's check (a
    /// batch that does not is dropped whole): control characters replaced, cut to
    /// [`MAX_METRIC_LEN`] bytes, an empty metric named `value`, an empty unit none.
    pub fn reading(&self, job: &str, m: Measurement, at_ms: i64) {
        let metric = Some(plain(&m.metric, MAX_METRIC_LEN)).filter(|t| !t.is_empty());
        let unit = m
            .unit
            .map(|u| plain(&u, MAX_METRIC_LEN))
            .filter(|u| !u.is_empty());
        let series = Arc::new(Series {
            job: job.to_owned(),
            metric: metric.unwrap_or_else(|| "value".to_owned()),
            unit,
        });
        let size = 48
            + 2 * (job.len() + series.metric.len() + series.unit.as_ref().map_or(0, String::len));
        self.readings.push(
            Point {
                series,
                at_ms,
                value: m.value,
            },
            size,
        );
    }

    /// Queues a log line of `job`: control characters but tabs replaced (JSON would spell each in
    /// six bytes, and a database may refuse NUL), cut to [`MAX_LOG_LINE`] bytes.
    pub fn log(&self, job: &str, stream: LogStream, line: String, at_ms: i64) {
        let line = plain(&line, MAX_LOG_LINE);
        // Quotes and backslashes take two bytes in JSON: counted so.
        let size = 64 + job.len() + 2 * line.len();
        self.logs.push(
            LogLine {
                job: job.to_owned(),
                at_ms,
                stream,
                line,
            },
            size,
        );
    }

    /// The next batch of readings to send, with its number and size for [`Outbox::ack`].
    pub fn next_readings(&self) -> Option<ReadingBatch> {
        let (seq, held, dropped, points) = self.readings.next_batch(MAX_BATCH, MAX_BATCH_BYTES)?;
        let mut series: Vec<Series> = Vec::new();
        let mut out = Vec::with_capacity(points.len());
        for p in points {
            let i = match series.iter().position(|s| *s == *p.series) {
                Some(i) => i,
                None => {
                    series.push((*p.series).clone());
                    series.len() - 1
                }
            };
            out.push((i as u32, p.at_ms, p.value));
        }
        Some(ReadingBatch {
            run: self.run.clone(),
            seq,
            held,
            dropped,
            series,
            points: out,
        })
    }

    /// The next batch of log lines to send.
    pub fn next_logs(&self) -> Option<LogBatch> {
        let (seq, held, dropped, lines) = self.logs.next_batch(MAX_BATCH, MAX_BATCH_BYTES)?;
        Some(LogBatch {
            run: self.run.clone(),
            seq,
            held,
            dropped,
            lines,
        })
    }
}

/// `text` with control characters other than tab replaced by U+FFFD, cut to at most `max` bytes
/// (ending in `...` when cut).
fn plain(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    if out.len() > max {
        let mut cut = max.saturating_sub(3);
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_wait_until_acknowledged_and_are_sent_again_after_a_break() {
        let q: Outbox<u32> = Outbox::new(5, 1000);
        for i in 0..3 {
            q.push(i, 10);
        }
        assert_eq!(q.waiting(), None);
        assert_eq!(q.next_batch(2, 1000), Some((0, 0, 0, vec![0, 1])));
        assert!(q.waiting().is_some(), "the front was sent");
        assert_eq!(q.next_batch(2, 1000), Some((2, 0, 0, vec![2])));
        assert_eq!(q.next_batch(2, 1000), None);
        // The leader stored 0 and 1; item 2 waits on.
        q.stored_until(2);
        assert_eq!(q.depth(), (1, 0));
        assert!(q.waiting().is_some());
        // The connection broke (or the leader was silent too long): item 2 goes again.
        q.rewind();
        assert_eq!(q.waiting(), None);
        assert_eq!(q.next_batch(10, 1000), Some((2, 2, 0, vec![2])));
        q.stored_until(3);
        assert_eq!((q.depth(), q.waiting()), ((0, 0), None));
        // A stale word (an older number) changes nothing.
        q.push(3, 10);
        q.stored_until(1);
        assert_eq!(q.depth(), (1, 0));
        // A batch stops at its byte budget (but takes one item at least).
        let q: Outbox<u32> = Outbox::new(5, 10_000);
        q.push(7, 600);
        q.push(8, 600);
        assert_eq!(q.next_batch(10, 1000), Some((0, 0, 0, vec![7])));
        assert_eq!(q.next_batch(10, 100), Some((1, 0, 0, vec![8])));
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts_them() {
        let q: Outbox<u32> = Outbox::new(3, 1000);
        for i in 0..5 {
            q.push(i, 10);
        }
        assert_eq!(q.depth(), (3, 2));
        assert_eq!(q.next_batch(10, 1000), Some((2, 2, 2, vec![2, 3, 4])));
        // By bytes too.
        let q: Outbox<u32> = Outbox::new(100, 25);
        for i in 0..3 {
            q.push(i, 10);
        }
        assert_eq!(q.depth(), (2, 1));
    }

    #[test]
    fn a_batch_names_each_series_once() {
        let t = Telemetry::new();
        assert_eq!(t.run.len(), 16);
        for v in [1.0, 2.0] {
            t.reading("stirring", Measurement::new("rpm", v, Some("rpm")), 10);
            t.reading("od_reading", Measurement::new("od", v, None), 11);
        }
        let b = t.next_readings().unwrap();
        assert_eq!(b.series.len(), 2);
        assert_eq!(
            b.points,
            vec![(0, 10, 1.0), (1, 11, 1.0), (0, 10, 2.0), (1, 11, 2.0)]
        );
        assert_eq!(b.check(), Ok(()));
        t.log("x", LogStream::Stdout, "é".repeat(MAX_LOG_LINE), 1);
        t.log("x", LogStream::Stderr, "a\0b\x1b[31mc\td".into(), 2);
        let l = t.next_logs().unwrap();
        assert!(l.lines[0].line.len() <= MAX_LOG_LINE && l.lines[0].line.ends_with("..."));
        assert_eq!(l.lines[1].line, "a\u{FFFD}b\u{FFFD}[31mc\td");
        assert_eq!(l.check(), Ok(()));
        // Names a program or a setting made up are made to pass the leader's check.
        t.reading("x", Measurement::new("", 1.0, Some("")), 3);
        t.reading("x", Measurement::new(&"m".repeat(100), 1.0, None), 3);
        let b = t.next_readings().unwrap();
        assert_eq!(b.series[0].metric, "value");
        assert_eq!(b.series[0].unit, None);
        assert!(b.series[1].metric.len() <= MAX_METRIC_LEN);
        assert_eq!(b.check(), Ok(()));
        // A full outage buffer of long lines still goes out in batches the broker takes.
        for _ in 0..600 {
            t.log("x", LogStream::Stdout, "\"".repeat(MAX_LOG_LINE), 4);
        }
        while let Some(b) = t.next_logs() {
            let bytes = trellis_proto::encode(&b).unwrap().len();
            assert!(
                bytes < 256 << 10,
                "{bytes} bytes in {} lines",
                b.lines.len()
            );
        }
    }
}
