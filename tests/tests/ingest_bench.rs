//! The ingestion benchmark of issue 10 (a benchmark, not a test: `#[ignore]`d, run by
//! `bash scripts/bench.sh ingest`, or by hand with
//! `cargo build --release -p trellis-server -p trellis-agent && cargo test --release -p trellis-tests
//! --test ingest_bench -- --ignored --nocapture`; a release test binary starts release leaders).
//!
//! A leader (embedded broker and gate, SQLite or Postgres) and, in this process, the publishers:
//! nodes that joined as users join them (a join token and an approval), each then publishing as
//! its own enrolled identity what an agent sends, `ReadingBatch`es of 500 readings over several
//! series at QoS 1, as fast as the broker acknowledges them within a bounded in-flight window.
//! The payloads are encoded before the clock starts, so the publishers cost little of the two
//! cores the leader needs. Every reading's value is unique (its number), so loss and duplicates
//! are counted exactly in the database afterwards. A second phase sends some batches twice (a
//! QoS 1 redelivery, out of order) and checks each reading is still stored once.
//!
//! Knobs (environment): `INGEST_DB` (`sqlite`, or `postgres` with `TRELLIS_TEST_POSTGRES_URL`
//! as the harness's [`Postgres`]), `INGEST_READINGS` (2 000 000), `INGEST_NODES` (2),
//! `INGEST_INFLIGHT` (QoS 1 publishes unacknowledged per node, 100), `INGEST_SERIES` (4),
//! `INGEST_REDELIVERY_READINGS` (200 000; 0 skips that phase). Output: `name value unit` lines
//! on stdout, prefixed `ingest_<db>_`.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::json;
use trellis_tests::{
    Db, Postgres, Server, ServerOpts,
    bench::{BATCH, NodeLogin, Publisher, batches, cpu_secs, env, node_logins, status_kib},
};

/// The benchmark gives up when nothing more is stored for this long.
const STALL: Duration = Duration::from_secs(30);

/// What one phase measured.
struct Phase {
    readings: u64,
    /// First publish to the last broker acknowledgement.
    publish_secs: f64,
    /// First publish to the last reading committed (seen in `telemetry_stream`).
    stored_secs: f64,
    /// Best one-second window of committed readings.
    peak_1s: f64,
    rows: i64,
    distinct: i64,
    leader_cpu_secs: f64,
    publisher_cpu_secs: f64,
    leader_rss_peak_kib: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by scripts/bench.sh ingest"]
async fn ingest_throughput() {
    let kind: String = env("INGEST_DB", "sqlite".to_owned());
    let readings: u64 = env("INGEST_READINGS", 2_000_000);
    let nodes: usize = env("INGEST_NODES", 2);
    let inflight: u16 = env("INGEST_INFLIGHT", 100);
    let series: usize = env("INGEST_SERIES", 4);
    let redelivery: u64 = env("INGEST_REDELIVERY_READINGS", 200_000);
    assert!(nodes > 0 && series > 0 && readings > 0);

    let pg = (kind == "postgres").then(Postgres::create);
    let server = Server::start(ServerOpts {
        local_agent: false,
        db: match &pg {
            Some(p) => Db::Postgres(p.url.clone()),
            None => Db::Sqlite,
        },
        ..ServerOpts::default()
    })
    .await;
    let db_url = match &pg {
        Some(p) => p.url.clone(),
        None => format!(
            "sqlite://{}?mode=ro",
            server.dir.path().join("data/trellis.db").display()
        ),
    };
    let db = Database::connect(&db_url).await.expect("open the database");

    let logins = node_logins(&server, "bench", nodes).await;

    let p = format!("ingest_{kind}");
    let out = |name: &str, value: String, unit: &str| println!("{p}_{name} {value} {unit}");
    let main = phase(&server, &db, &logins, 0, readings, series, inflight, false).await;
    report(&out, "", &main);
    out("nodes", nodes.to_string(), "publishers");
    out("inflight", inflight.to_string(), "batches/node");
    out("batch", BATCH.to_string(), "readings");
    let queue = server
        .graphql("{ ingestQueue { capacity highWater } }", json!({}))
        .await;
    if let Some(q) = queue["data"]["ingestQueue"].as_object() {
        out("queue_capacity", q["capacity"].to_string(), "batches");
        out("queue_high_water", q["highWater"].to_string(), "batches");
    }
    if redelivery > 0 {
        let again = phase(
            &server, &db, &logins, readings, redelivery, series, inflight, true,
        )
        .await;
        report(&out, "redelivery_", &again);
        assert_eq!(
            (again.distinct, again.rows),
            (again.readings as i64, again.readings as i64),
            "every reading stored once despite the batches sent twice"
        );
    }
    assert_eq!(
        (main.distinct, main.rows),
        (main.readings as i64, main.readings as i64),
        "every reading stored once"
    );
    let log = server.proc.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(5)
        .collect();
    if !warnings.is_empty() {
        eprintln!("# leader warnings: {warnings:#?}");
    }
}

fn report(out: &impl Fn(&str, String, &str), prefix: &str, r: &Phase) {
    let rate = |secs: f64| format!("{:.0}", r.readings as f64 / secs);
    out(
        &format!("{prefix}readings"),
        r.readings.to_string(),
        "readings",
    );
    out(
        &format!("{prefix}offered_rate"),
        rate(r.publish_secs),
        "readings/s",
    );
    out(
        &format!("{prefix}stored_rate"),
        rate(r.stored_secs),
        "readings/s",
    );
    out(
        &format!("{prefix}peak_rate_1s"),
        format!("{:.0}", r.peak_1s),
        "readings/s",
    );
    out(
        &format!("{prefix}seconds"),
        format!("{:.2}", r.stored_secs),
        "s",
    );
    out(
        &format!("{prefix}lost"),
        (r.readings as i64 - r.distinct).to_string(),
        "readings",
    );
    out(
        &format!("{prefix}duplicates"),
        (r.rows - r.distinct).to_string(),
        "rows",
    );
    out(
        &format!("{prefix}leader_cpu"),
        format!("{:.0}", r.leader_cpu_secs / r.stored_secs * 100.0),
        "%core",
    );
    out(
        &format!("{prefix}leader_cpu_per_reading"),
        format!("{:.2}", r.leader_cpu_secs * 1e6 / r.readings as f64),
        "us",
    );
    out(
        &format!("{prefix}publisher_cpu"),
        format!("{:.0}", r.publisher_cpu_secs / r.stored_secs * 100.0),
        "%core",
    );
    out(
        &format!("{prefix}leader_rss_peak"),
        format!("{:.1}", r.leader_rss_peak_kib as f64 / 1024.0),
        "MiB",
    );
}

/// Publishes `readings` readings (values `base..base + readings`) spread over the nodes, each
/// node a fresh agent run, and waits until they are all stored (or nothing moves for [`STALL`]).
#[allow(clippy::too_many_arguments)] // One phase's settings, each named where it is called.
async fn phase(
    server: &Server,
    db: &DatabaseConnection,
    logins: &[NodeLogin],
    base: u64,
    readings: u64,
    series: usize,
    inflight: u16,
    redeliver: bool,
) -> Phase {
    let per_node = readings / logins.len() as u64;
    let readings = per_node * logins.len() as u64;
    let mut runs = Vec::new();
    let mut publishers = Vec::new();
    for (k, login) in logins.iter().enumerate() {
        let run = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
        let first = base + k as u64 * per_node;
        let batches = batches(&run, first, per_node, series, redeliver);
        runs.push(run);
        publishers.push(Publisher::connect(server.mqtt_port, login, inflight, batches).await);
    }
    let pid = server.proc.id();
    let leader_cpu0 = cpu_secs(&format!("/proc/{pid}/stat"));
    let own_cpu0 = cpu_secs("/proc/self/stat");
    let start = Instant::now();
    let sent: Vec<_> = publishers
        .into_iter()
        .map(|p| tokio::spawn(p.run()))
        .collect();

    // Committed readings: the streams' next numbers, moved in the transaction that stores them.
    let runs_sql = runs
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(",");
    let stored_sql = format!(
        "SELECT CAST(COALESCE(SUM(next_seq), 0) AS BIGINT) FROM telemetry_stream \
         WHERE kind = 'readings' AND run IN ({runs_sql})"
    );
    let mut samples: Vec<(f64, u64)> = vec![(0.0, 0)];
    let mut rss_peak = 0;
    let mut last_move = Instant::now();
    let mut tick = 0u32;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = query_i64(db, &stored_sql).await as u64;
        let t = start.elapsed().as_secs_f64();
        if n != samples.last().map_or(0, |s| s.1) {
            last_move = Instant::now();
            samples.push((t, n));
        }
        tick += 1;
        if tick.is_multiple_of(5) {
            rss_peak = rss_peak.max(status_kib(pid, "VmRSS:"));
        }
        if n >= readings || last_move.elapsed() > STALL {
            break;
        }
    }
    let stored_secs = samples.last().map_or(0.0, |s| s.0);
    let leader_cpu_secs = cpu_secs(&format!("/proc/{pid}/stat")) - leader_cpu0;
    let publisher_cpu_secs = cpu_secs("/proc/self/stat") - own_cpu0;
    let mut publish_secs: f64 = 0.0;
    for s in sent {
        let acked = s.await.expect("publisher");
        publish_secs = publish_secs.max(acked.duration_since(start).as_secs_f64());
    }
    rss_peak = rss_peak.max(status_kib(pid, "VmHWM:"));
    let in_range = format!(
        "FROM reading WHERE node_id LIKE 'bench%' AND value >= {base} AND value < {}",
        base + readings
    );
    let rows = query_i64(db, &format!("SELECT COUNT(*) {in_range}")).await;
    let distinct = query_i64(db, &format!("SELECT COUNT(DISTINCT value) {in_range}")).await;
    Phase {
        readings,
        publish_secs,
        stored_secs,
        peak_1s: peak_1s(&samples),
        rows,
        distinct,
        leader_cpu_secs,
        publisher_cpu_secs,
        leader_rss_peak_kib: rss_peak,
    }
}

async fn query_i64(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("an integer")
}

/// The most readings committed within any one second, from (seconds, total) samples.
fn peak_1s(samples: &[(f64, u64)]) -> f64 {
    let mut best = 0.0f64;
    let mut j = 0;
    for i in 0..samples.len() {
        while samples[i].0 - samples[j].0 > 1.0 {
            j += 1;
        }
        // The window from sample j (at most 1 s back) to sample i, scaled to a second.
        let span = samples[i].0 - samples[j].0;
        if span >= 0.5 {
            best = best.max((samples[i].1 - samples[j].1) as f64 / span);
        }
    }
    best
}
