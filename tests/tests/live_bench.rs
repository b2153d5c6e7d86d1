//! The live-delivery benchmark of issue 10 (a benchmark, not a test: `#[ignore]`d, run by
//! `bash scripts/bench.sh live`, or by hand with
//! `cargo build --release -p trellis-server -p trellis-agent && cargo test --release -p trellis-tests
//! --test live_bench -- --ignored --nocapture`).
//!
//! A leader (embedded broker and gate, SQLite), one node publishing readings as its agent does
//! (a `ReadingBatch` every `LIVE_BATCH_MS`, 100 ms, holding `LIVE_RATE` × 100 ms readings, QoS 1),
//! and `LIVE_CLIENTS` (100) websocket clients, each subscribed to the node's `liveReadings` at 30
//! frames/s. Every reading's value is the wall time of its publish (ms since the epoch, to the
//! µs); a client takes the newest value of each frame it receives from the time it receives it:
//! MQTT publish → broker → gate → bridge → ingester (rows made, deduplicated; stored after) → live
//! feed → throttle → GraphQL → websocket → client's JSON parse. Everything runs on this machine's 2 cores, the
//! clients' parsing included. The first `LIVE_WARMUP_S` (2) seconds are not counted.
//!
//! Output: `name value unit` lines on stdout, prefixed `live_`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::{SinkExt, StreamExt};
use rumqttc::QoS;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use trellis_proto::{ReadingBatch, Series, TopicKind};
use trellis_tests::{
    ADMIN_PASSWORD, Server, ServerOpts,
    bench::{connect_as, cpu_secs, env, node_logins, status_kib},
    ws_session,
};

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// The numbers that follow each `key` in `text`.
fn numbers_after<'a>(text: &'a str, key: &'a str) -> impl Iterator<Item = f64> + 'a {
    text.match_indices(key).filter_map(move |(i, _)| {
        let rest = &text[i + key.len()..];
        let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
        rest[..end].trim().parse().ok()
    })
}

/// The numbers of each array that follows `key` (which ends with its `[`) in `text`.
fn arrays_after<'a>(text: &'a str, key: &'a str) -> impl Iterator<Item = f64> + 'a {
    text.match_indices(key).flat_map(move |(i, _)| {
        let rest = &text[i + key.len()..];
        let end = rest.find(']').unwrap_or(rest.len());
        rest[..end].split(',').filter_map(|n| n.trim().parse().ok())
    })
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Publish → frame, ms, one per frame per client (counted frames only).
    latencies: Vec<f64>,
    /// Readings received (counted or not).
    readings: u64,
    skipped: u64,
    resyncs: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by scripts/bench.sh live"]
async fn live_delivery_latency() {
    let clients: usize = env("LIVE_CLIENTS", 100);
    let rate: u64 = env("LIVE_RATE", 1000);
    let batch_ms: u64 = env("LIVE_BATCH_MS", 100);
    let seconds: u64 = env("LIVE_SECONDS", 20);
    let warmup: u64 = env("LIVE_WARMUP_S", 2);
    let per_batch = (rate * batch_ms / 1000).max(1);

    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let login = node_logins(&server, "live", 1).await.pop().expect("a node");
    let cookie = server.login("admin", ADMIN_PASSWORD).await.expect("login");

    // The clients: subscribed before anything is published.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let counting_from = Arc::new(Mutex::new(f64::INFINITY));
    // `series` (times and values side by side: what the web app's charts take) or `readings`
    // (an object per reading).
    let shape: String = env("LIVE_SHAPE", "series".to_owned());
    let selection = match shape.as_str() {
        "series" => "series { nodeId job metric unit timesMs values }",
        "readings" => "readings { nodeId job metric unit time value }",
        other => panic!("LIVE_SHAPE={other:?}: series or readings"),
    };
    let query = format!(
        "subscription {{ liveReadings(nodeId: \"{}\", fps: 30, maxPerFrame: 1000) {{ {selection} skipped resync }} }}",
        login.id
    );
    let mut readers = Vec::new();
    for _ in 0..clients {
        let mut ws = ws_session(&server, Some(&cookie), json!({})).await;
        let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": query}});
        ws.send(Message::text(sub.to_string()))
            .await
            .expect("subscribe");
        let seen = seen.clone();
        let counting_from = counting_from.clone();
        let series = shape == "series";
        readers.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let at = now_ms();
                // A scan, not a parse: the clients share the leader's 2 cores, and a full JSON
                // parse of every frame by 100 clients would be in the figure. The fields are
                // the query's own, in its order.
                if !text.contains("\"type\":\"next\"") {
                    assert!(!text.contains("\"type\":\"error\""), "{text}");
                    continue;
                }
                let values: Vec<f64> = match series {
                    true => arrays_after(&text, "\"values\":[").collect(),
                    false => numbers_after(&text, "\"value\":").collect(),
                };
                let newest = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let skipped = numbers_after(&text, "\"skipped\":").next().unwrap_or(0.0);
                let resync = text.contains("\"resync\":true");
                let mut s = seen.lock().expect("lock");
                s.readings += values.len() as u64;
                s.skipped += skipped as u64;
                s.resyncs += u64::from(resync);
                let from = *counting_from.lock().expect("lock");
                if newest.is_finite() && newest >= from {
                    s.latencies.push(at - newest);
                }
            }
        }));
    }

    // Let the subscriptions settle before the first reading.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The node: a batch every `batch_ms`, as its agent sends them.
    let (client, mut eventloop) = connect_as(server.mqtt_port, &login, 100).await;
    let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = TopicKind::Readings.topic(&login.id, None);
    let run = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let series = vec![Series {
        job: "od_reading".into(),
        metric: "od".into(),
        unit: Some("OD".into()),
    }];
    let pid = server.proc.id();
    let mut tick = tokio::time::interval(Duration::from_millis(batch_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let (mut seq, mut cpu0, mut counted_from) = (0u64, 0.0, start);
    let mut published = 0u64;
    while start.elapsed() < Duration::from_secs(warmup + seconds) {
        tick.tick().await;
        if cpu0 == 0.0 && start.elapsed() >= Duration::from_secs(warmup) {
            cpu0 = cpu_secs(&format!("/proc/{pid}/stat"));
            counted_from = Instant::now();
            *counting_from.lock().expect("lock") = now_ms();
        }
        let at = now_ms();
        let b = ReadingBatch {
            run: run.clone(),
            seq,
            held: seq,
            dropped: 0,
            series: series.clone(),
            points: (0..per_batch).map(|_| (0, at as i64, at)).collect(),
        };
        client
            .publish(
                topic.clone(),
                QoS::AtLeastOnce,
                false,
                trellis_proto::encode(&b).expect("encode"),
            )
            .await
            .expect("publish");
        seq += per_batch;
        published += per_batch;
    }
    let counted_secs = counted_from.elapsed().as_secs_f64();
    let leader_cpu = cpu_secs(&format!("/proc/{pid}/stat")) - cpu0;
    // The last frames.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = status_kib(pid, "VmRSS:");
    pump.abort();
    for r in readers {
        r.abort();
    }

    let s = seen.lock().expect("lock");
    let mut l = s.latencies.clone();
    l.sort_by(f64::total_cmp);
    assert!(!l.is_empty(), "no frame arrived");
    let pct = |p: f64| l[((l.len() - 1) as f64 * p).round() as usize];
    let out = |name: &str, value: String, unit: &str| println!("live_{name} {value} {unit}");
    out("clients", clients.to_string(), "websockets");
    out("rate", rate.to_string(), "readings/s");
    out("batch_every", batch_ms.to_string(), "ms");
    out("shape", shape.clone(), "selection");
    out("frames", l.len().to_string(), "frames (counted)");
    out("p50", format!("{:.2}", pct(0.50)), "ms");
    out("p90", format!("{:.2}", pct(0.90)), "ms");
    out("p99", format!("{:.2}", pct(0.99)), "ms");
    out("max", format!("{:.2}", pct(1.0)), "ms");
    out("published", published.to_string(), "readings");
    out(
        "received_per_client",
        format!("{:.0}", s.readings as f64 / clients as f64),
        "readings",
    );
    out("skipped", s.skipped.to_string(), "readings");
    out("resyncs", s.resyncs.to_string(), "frames");
    out(
        "leader_cpu",
        format!("{:.0}", leader_cpu / counted_secs * 100.0),
        "%core",
    );
    out("leader_rss", format!("{:.1}", rss as f64 / 1024.0), "MiB");
    // Every client had every reading (none skipped, no resync at this rate).
    assert_eq!((s.skipped, s.resyncs), (0, 0), "a client was left behind");
    assert_eq!(
        s.readings,
        published * clients as u64,
        "readings lost on the way"
    );
}
