//! What jobs measure and say, end to end on real agent processes: a culture on a sped-up
//! simulator read by `od_reading`, followed by `growth_rate_calculating` and held by
//! `dosing_automation` (a turbidostat), doses given by `add_media` through the pump's calibration,
//! calibrations changed by an operator, stored presets; and readings and log lines kept through a
//! broker outage and delivered once each afterwards; three agents' readings once each across a
//! broker restart, an agent restart and a redelivered batch.

use std::time::Duration;

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use trellis_tests::{
    Mosquitto, PATIENCE, Server, ServerOpts, error_code, until_closed, wait_for, ws_session,
};

async fn start_preset(server: &Server, node: &str, preset: &str, settings: Value) -> Value {
    let r = server
        .graphql(
            "mutation($n: String!, $p: String!, $s: JSON) {
               startJob(nodeId: $n, preset: $p, settings: $s) { name kind state settings error } }",
            json!({"n": node, "p": preset, "s": settings}),
        )
        .await;
    assert_eq!(r["data"]["startJob"]["state"], "READY", "{preset}: {r}");
    r["data"]["startJob"].clone()
}

async fn readings(server: &Server, node: &str, job: &str, metric: &str) -> Vec<Value> {
    let r = server
        .graphql(
            "query($n: String!, $j: String, $m: String) {
               readings(nodeId: $n, job: $j, metric: $m, limit: 10000) { job metric unit time nodeTime value } }",
            json!({"n": node, "j": job, "m": metric}),
        )
        .await;
    r["data"]["readings"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{r}"))
}

async fn logs(server: &Server, node: &str, job: &str) -> Vec<String> {
    let r = server
        .graphql(
            "query($n: String!, $j: String!) { job(nodeId: $n, name: $j) { logs(last: 1000) { stream line } } }",
            json!({"n": node, "j": job}),
        )
        .await;
    r["data"]["job"]["logs"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|x| {
                    format!(
                        "{}: {}",
                        x["stream"].as_str().unwrap_or("?"),
                        x["line"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A node's pump calibrations and drop counts.
async fn pumps(server: &Server, node: &str) -> Value {
    let r = server
        .graphql(
            "query($n: String!) { node(id: $n) { pumpCalibrations { pump pin mlPerSecond } readingsDropped logLinesDropped } }",
            json!({"n": node}),
        )
        .await;
    r["data"]["node"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_culture_is_read_held_at_its_target_and_its_growth_followed() {
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    // 1200 simulated seconds per real second: the culture (OD 0.05, growing ~0.6/h) passes
    // OD 0.2 after about 2.4 simulated hours, 7 real seconds.
    let _agent = server
        .join_agent_with("bio", &["--sim-speed", "1200"])
        .await;
    server.wait_state("bio", "ONLINE", PATIENCE).await;
    wait_for("bio's presets", PATIENCE, || async {
        let r = server
            .graphql("{ jobPresets(nodeId: \"bio\") { name } }", json!({}))
            .await;
        (r["data"]["jobPresets"].as_array()?.len() >= 8).then_some(())
    })
    .await;

    // An OD reading every simulated minute, the growth rate from it, and a turbidostat at 0.2.
    start_preset(&server, "bio", "od_reading", json!({"interval": 60})).await;
    start_preset(
        &server,
        "bio",
        "growth_rate_calculating",
        json!({"interval": 60}),
    )
    .await;
    start_preset(
        &server,
        "bio",
        "dosing_automation",
        json!({"target_od": 0.2, "interval": 60}),
    )
    .await;

    // The turbidostat doses once the culture passes its target...
    let doses = wait_for("the turbidostat to dose", PATIENCE * 3, || async {
        let d = readings(&server, "bio", "dosing_automation", "media_ml").await;
        (d.len() >= 2).then_some(d)
    })
    .await;
    assert_eq!(
        (doses[0]["value"].as_f64(), doses[0]["unit"].as_str()),
        (Some(1.0), Some("ml"))
    );
    let said = logs(&server, "bio", "dosing_automation").await;
    assert!(
        said.iter().any(|l| l.starts_with("AGENT: exchanged 1 ml: OD ") && l.ends_with("above target 0.2")),
        "{said:?}"
    );
    // ...and holds it there: a dose of 1 ml into 14 dilutes by 1/15, a minute's growth is 1 %.
    let od = readings(&server, "bio", "od_reading", "od").await;
    assert!(od.len() >= 60, "{} readings", od.len());
    assert_eq!(od[0]["unit"], "OD");
    let first = od[0]["value"].as_f64().unwrap_or_default();
    assert!(
        (0.03..0.08).contains(&first),
        "the culture starts near OD 0.05: {first}"
    );
    let last_few: Vec<f64> = od[od.len() - 5..]
        .iter()
        .filter_map(|r| r["value"].as_f64())
        .collect();
    assert!(
        last_few.iter().all(|v| (0.17..0.24).contains(v)),
        "held near 0.2: {last_few:?}"
    );
    // Times are the node's, corrected by its measured clock offset: the same clock here, so the
    // correction is the heartbeat's transit time, a few milliseconds.
    let at = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|e| panic!("{v}: {e}"))
    };
    let last = &od[od.len() - 1];
    assert!(
        (at(&last["time"]) - at(&last["nodeTime"])).abs() < 500,
        "{last}"
    );

    // The growth rate, from ln(OD), near the simulated culture's 0.6/h ± 10 % (slowed a little
    // by the logistic term at OD 0.2).
    let rate = readings(&server, "bio", "growth_rate_calculating", "growth_rate").await;
    let latest = rate
        .last()
        .and_then(|r| r["value"].as_f64())
        .unwrap_or_default();
    assert!((0.4..0.75).contains(&latest), "growth rate {latest}/h");
    assert_eq!(rate.last().map(|r| r["unit"].clone()), Some(json!("1/h")));

    // A pulse by volume goes through the pump's calibration, then ends by itself. At 1200x a
    // millisecond the agent's thread waits for a core is 0.6 ml of media, so the pulse is long
    // (100 simulated seconds, 83 ms real) beside a loaded machine's scheduling delays; a pump
    // can only be switched off late, never early, and the reading says what it really moved.
    server
        .graphql(
            "mutation { stopJob(nodeId: \"bio\", name: \"dosing_automation\") { state } }",
            json!({}),
        )
        .await;
    // The automation may have run add_media before: only a reading taken after this pulse
    // began is this pulse's (an earlier one may still arrive late, with its earlier time).
    let pulse_started = chrono::Utc::now().timestamp_millis() - 50;
    let r = server
        .graphql(
            "mutation { startJob(nodeId: \"bio\", preset: \"add_media\", settings: {volume: 50}) { state } }",
            json!({}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let given = wait_for("this add_media's reading", PATIENCE, || async {
        readings(&server, "bio", "add_media", "media_ml")
            .await
            .into_iter()
            .rfind(|r| at(&r["time"]) >= pulse_started)
    })
    .await;
    wait_for("add_media to finish", PATIENCE, || async {
        let r = server
            .graphql(
                "{ job(nodeId: \"bio\", name: \"add_media\") { state } }",
                json!({}),
            )
            .await;
        (r["data"]["job"]["state"] == "STOPPED").then_some(())
    })
    .await;
    let ml = given["value"].as_f64().unwrap_or_default();
    assert!((49.99..55.0).contains(&ml), "{ml} ml");

    // Calibrations: the simulator's pumps, changed by an operator, refused in words.
    let n = pumps(&server, "bio").await;
    assert_eq!(
        n["pumpCalibrations"],
        json!([
            {"pump": "alt_media", "pin": 22, "mlPerSecond": 0.5},
            {"pump": "media", "pin": 23, "mlPerSecond": 0.5},
            {"pump": "waste", "pin": 24, "mlPerSecond": 1.0}
        ])
    );
    assert_eq!(
        (&n["readingsDropped"], &n["logLinesDropped"]),
        (&json!(0), &json!(0))
    );
    let set = |pump: &str, pin: i64, rate: f64| {
        server.graphql(
            "mutation($p: String!, $pin: Int!, $r: Float!) {
               setPumpCalibration(nodeId: \"bio\", pump: $p, pin: $pin, mlPerSecond: $r) { pump pin mlPerSecond } }",
            json!({"p": pump, "pin": pin, "r": rate}),
        )
    };
    let r = set("media", 23, 0.62).await;
    assert_eq!(r["data"]["setPumpCalibration"]["mlPerSecond"], 0.62, "{r}");
    wait_for(
        "the node to publish its new calibration",
        PATIENCE,
        || async {
            let n = pumps(&server, "bio").await;
            (n["pumpCalibrations"][1]["mlPerSecond"] == 0.62).then_some(())
        },
    )
    .await;
    let r = set("acid", 24, 0.1).await;
    assert_eq!(error_code(&r), "BAD_REQUEST");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("pin 24 is pump waste's")),
        "{r}"
    );
    let r = set("media", 23, 0.0).await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ml_per_second 0 must be between 0.001 and 100")),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_store_presets_of_their_own() {
    let server = Server::start(ServerOpts::default()).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    wait_for("the leader's kinds", PATIENCE, || async {
        let r = server
            .graphql("{ jobKinds(nodeId: \"leader\") { kind } }", json!({}))
            .await;
        (!r["data"]["jobKinds"].as_array()?.is_empty()).then_some(())
    })
    .await;
    let save = |name: &str, kind: &str, settings: Value| {
        server.graphql(
            "mutation($n: String!, $k: String!, $s: JSON) {
               saveJobPreset(name: $n, kind: $k, description: \"slow\", settings: $s) { name kind settings builtIn } }",
            json!({"n": name, "k": kind, "s": settings}),
        )
    };
    let r = save(
        "gentle_stirring",
        "pid",
        json!({"target": 300, "sensor": "rpm", "input": 25, "pin": 13}),
    )
    .await;
    assert_eq!(
        r["data"]["saveJobPreset"],
        json!({"name": "gentle_stirring", "kind": "pid", "settings": {"target": 300, "sensor": "rpm", "input": 25, "pin": 13}, "builtIn": false}),
        "{r}"
    );
    // Refused in words: a built-in name, a value outside its rule, a kind no node offers.
    let r = save("stirring", "pid", json!({})).await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("stirring is a built-in preset")),
        "{r}"
    );
    let r = save("fast", "pid", json!({"target": -5})).await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("setting target = -5 refused")),
        "{r}"
    );
    let r = save("laser", "laser", json!({})).await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no node offers job kind \"laser\"")),
        "{r}"
    );

    // It is offered like a built-in one and starts the same way.
    let r = server
        .graphql(
            "{ jobPresets(nodeId: \"leader\") { name builtIn } }",
            json!({}),
        )
        .await;
    assert!(
        r["data"]["jobPresets"].as_array().is_some_and(|l| l
            .iter()
            .any(|p| p["name"] == "gentle_stirring" && p["builtIn"] == false)),
        "{r}"
    );
    let j = start_preset(&server, "leader", "gentle_stirring", json!({})).await;
    assert_eq!(
        (&j["kind"], &j["settings"]["target"]),
        (&json!("pid"), &json!(300))
    );

    let r = server
        .graphql(
            "mutation { deleteJobPreset(name: \"gentle_stirring\") }",
            json!({}),
        )
        .await;
    assert_eq!(r["data"]["deleteJobPreset"], true, "{r}");
    let r = server
        .graphql(
            "mutation { deleteJobPreset(name: \"gentle_stirring\") }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&r), "NOT_FOUND");
    let log = server.audit_log(20).await;
    assert!(trellis_tests::audit_has(
        &log,
        &[("action", "saveJobPreset"), ("target", "gentle_stirring")]
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn readings_and_log_lines_outlive_a_broker_outage_and_arrive_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut mosquitto = Mosquitto::start_managed(&dir.path().join("accounts")).await;
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..mosquitto.server_opts()
    })
    .await;
    let _agent = server.join_agent("counter").await;
    server.wait_state("counter", "ONLINE", PATIENCE).await;
    // A program that counts: a reading and a log line every 20 ms.
    let program = r#"python3 -u -c '
import json, time
n = 0
while True:
    print(json.dumps({"reading": {"n": n}}))
    print("line %d" % n)
    n += 1
    time.sleep(0.02)
'"#;
    let r = server
        .graphql(
            "mutation($s: JSON) { startJob(nodeId: \"counter\", kind: \"exec\", name: \"count\", settings: $s) { state } }",
            json!({"s": {"command": program}}),
        )
        .await;
    assert_eq!(r["data"]["startJob"]["state"], "READY", "{r}");
    wait_for("the first readings", PATIENCE, || async {
        (readings(&server, "counter", "count", "n").await.len() > 20).then_some(())
    })
    .await;

    // Every node event from here on: the node must never be marked lost for the broker's outage.
    let mut ws = ws_session(&server, server.admin_cookie.as_deref(), json!({})).await;
    let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { nodeEvents { kind nodeId } }"}});
    ws.send(Message::text(sub.to_string())).await.expect("send");

    // Three seconds without a broker: the job keeps counting into the agent's outage buffer.
    mosquitto.restart_after(Duration::from_secs(3)).await;
    server.wait_state("counter", "ONLINE", PATIENCE).await;
    let before = readings(&server, "counter", "count", "n").await.len();
    let all = wait_for("the buffered readings", PATIENCE, || async {
        let r = readings(&server, "counter", "count", "n").await;
        (r.len() > before + 150).then_some(r)
    })
    .await;
    // Every number once, in order, with no gap across the outage.
    let ns: Vec<i64> = all
        .iter()
        .filter_map(|r| r["value"].as_f64())
        .map(|v| v as i64)
        .collect();
    let expected: Vec<i64> = (0..ns.len() as i64).collect();
    assert_eq!(ns, expected, "readings 0..{} each once", ns.len());
    // The log lines come in their own batches, a moment after the readings.
    let want = ns.len().saturating_sub(50);
    let lines = wait_for("the buffered log lines", PATIENCE, || async {
        let lines = logs(&server, "counter", "count").await;
        let n = lines
            .iter()
            .filter(|l| l.starts_with("STDOUT: line "))
            .count();
        (n >= want).then_some(lines)
    })
    .await;
    let numbered: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("STDOUT: line "))
        .collect();
    for (i, w) in numbered.windows(2).enumerate() {
        let n = |l: &str| {
            l.trim_start_matches("STDOUT: line ")
                .parse::<i64>()
                .unwrap_or(-1)
        };
        assert_eq!(n(w[1]), n(w[0]) + 1, "line {i}: {w:?}");
    }
    // The heartbeats' overdue limit (3 s at 1 s) passed during the outage, yet no LOST: the
    // leader heard nothing from the broker either, so silence proved nothing.
    let (events, _) = until_closed(&mut ws, Duration::from_secs(2)).await;
    assert!(events.iter().any(|e| e.contains("HEARTBEAT")), "{events:?}");
    assert!(!events.iter().any(|e| e.contains("LOST")), "{events:?}");
    let r = server
        .graphql("{ job(nodeId: \"counter\", name: \"count\") { state } node(id: \"counter\") { readingsDropped } }", json!({}))
        .await;
    assert_eq!(
        (
            &r["data"]["job"]["state"],
            &r["data"]["node"]["readingsDropped"]
        ),
        (&json!("READY"), &json!(0)),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readings_outlive_a_leader_killed_while_the_broker_took_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mosquitto = Mosquitto::start_managed(&dir.path().join("accounts")).await;
    let mut server = Server::start(ServerOpts {
        local_agent: false,
        ..mosquitto.server_opts()
    })
    .await;
    let _agent = server.join_agent("counter").await;
    server.wait_state("counter", "ONLINE", PATIENCE).await;
    let program = r#"python3 -u -c '
import json, time
n = 0
while True:
    print(json.dumps({"reading": {"n": n}}))
    n += 1
    time.sleep(0.02)
'"#;
    let r = server
        .graphql(
            "mutation($s: JSON) { startJob(nodeId: \"counter\", kind: \"exec\", name: \"count\", settings: $s) { state } }",
            json!({"s": {"command": program}}),
        )
        .await;
    assert_eq!(r["data"]["startJob"]["state"], "READY", "{r}");
    wait_for("the first readings", PATIENCE, || async {
        (readings(&server, "counter", "count", "n").await.len() > 20).then_some(())
    })
    .await;
    // kill -9 of the leader for 3 s: the broker stays up and acknowledges the agent's batches,
    // with no leader to hand them to. The agent keeps them until the leader says they are stored.
    server.restart_after(Duration::from_secs(3)).await;
    let all = wait_for(
        "every reading, the outage's too",
        Duration::from_secs(60),
        || async {
            let r = readings(&server, "counter", "count", "n").await;
            let ns: Vec<i64> = r
                .iter()
                .filter_map(|r| r["value"].as_f64())
                .map(|v| v as i64)
                .collect();
            let complete = ns.len() > 250 && ns.iter().enumerate().all(|(i, n)| *n == i as i64);
            complete.then_some(ns)
        },
    )
    .await;
    assert_eq!(all.len() as i64, all[all.len() - 1] + 1, "each once");
}

/// Issue 10's exactly-once test: three agents count (a reading every 20 ms each, the count kept
/// in a file so a restarted job counts on); the broker restarts under all three; agent `tb` is
/// stopped, and while it is down an exact copy of one of its batches, taken off the broker
/// earlier, is published again in its name (a QoS 1 redelivery); then it starts again and its
/// job resumes. Every reading lands once: `ta` and `tc` have every number once with no gap
/// across the broker's restart; `tb` has no number twice (its redelivered batch included) and
/// misses none across its stop (its job hands over its last readings, and the agent waits for
/// the leader's word that they are stored before it disconnects), but for the one number a
/// program stopped between saving and printing it skips.
#[tokio::test(flavor = "multi_thread")]
async fn three_agents_readings_land_once_across_restarts_and_a_redelivered_batch() {
    use trellis_tests::{MqttProbe, agent_credentials};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut mosquitto = Mosquitto::start_managed(&dir.path().join("accounts")).await;
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..mosquitto.server_opts()
    })
    .await;
    let nodes = ["ta", "tb", "tc"];
    let mut agents = Vec::new();
    for id in nodes {
        agents.push(server.join_agent(id).await);
        server.wait_state(id, "ONLINE", PATIENCE).await;
    }
    for id in nodes {
        // The next number is saved before it is printed: a job stopped in between skips one,
        // never repeats one. Saved whole (a new file renamed over the old), so a stop halfway
        // through a save never leaves an empty file that the restarted job cannot read.
        let file = dir.path().join(format!("count-{id}"));
        let program = format!(
            r#"python3 -u -c '
import json, os, time
p = "{}"
n = int(open(p).read()) if os.path.exists(p) else 0
while True:
    with open(p + ".new", "w") as f:
        f.write(str(n + 1))
    os.replace(p + ".new", p)
    print(json.dumps({{"reading": {{"n": n}}}}))
    n += 1
    time.sleep(0.02)
'"#,
            file.display()
        );
        let r = server
            .graphql(
                "mutation($n: String!, $s: JSON) { startJob(nodeId: $n, kind: \"exec\", name: \"count\", settings: $s) { state } }",
                json!({"n": id, "s": {"command": program}}),
            )
            .await;
        assert_eq!(r["data"]["startJob"]["state"], "READY", "{id}: {r}");
    }
    let numbers = |node: &'static str| {
        let server = &server;
        async move {
            readings(server, node, "count", "n")
                .await
                .iter()
                .filter_map(|r| r["value"].as_f64())
                .map(|v| v as i64)
                .collect::<Vec<i64>>()
        }
    };
    wait_for("the first readings of all three", PATIENCE, || async {
        for id in nodes {
            if numbers(id).await.len() < 20 {
                return None;
            }
        }
        Some(())
    })
    .await;

    // The broker restarts (2 s down) with an account that may read everything added.
    mosquitto.add_reader_account("spy", "spy-password");
    mosquitto.restart_after(Duration::from_secs(2)).await;
    for id in nodes {
        server.wait_state(id, "ONLINE", PATIENCE).await;
    }
    // One of tb's batches, exactly as it crossed the broker.
    let topic = trellis_proto::TopicKind::Readings.topic("tb", None);
    let mut spy = MqttProbe::connect_as(
        mosquitto.port,
        "spy",
        Some(("spy", "spy-password")),
        Some(&topic),
    )
    .await
    .expect("the reader account");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let copied = loop {
        let got = spy.collect(Duration::from_millis(500)).await;
        if let Some(p) = got.into_iter().find(|p| p.topic == topic) {
            break p.payload.to_vec();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no batch of tb seen on the broker"
        );
    };
    let batch: trellis_proto::ReadingBatch = serde_json::from_slice(&copied).expect("a batch");
    assert!(!batch.points.is_empty());

    // tb stops; while it is down its batch comes again, in its own name.
    let tb = &mut agents[1];
    tb.proc.signal("-TERM");
    assert!(tb.proc.wait_exit(PATIENCE).is_some(), "tb stopped");
    let (user, password) = agent_credentials(tb);
    let again = MqttProbe::connect_as(
        mosquitto.port,
        &trellis_proto::node_client_id("tb", Some(&password)),
        Some((&user, &password)),
        None,
    )
    .await
    .expect("tb's login");
    again.publish(&topic, &copied, false).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = again.client.disconnect().await;
    let before_restart = numbers("tb").await;
    let stop_log = agents[1].proc.log_text();
    agents[1].respawn();
    server.wait_state("tb", "ONLINE", PATIENCE).await;
    let last = *before_restart.last().expect("tb's readings");
    let counting_from = tokio::time::Instant::now();
    while numbers("tb").await.last().copied().unwrap_or(0) <= last + 50 {
        if counting_from.elapsed() > PATIENCE {
            let job = server
                .graphql(
                    "{ job(nodeId: \"tb\", name: \"count\") { state error logs(last: 20) { stream line } } }",
                    json!({}),
                )
                .await;
            panic!(
                "tb did not count on past {last} within {PATIENCE:?} of its restart; its job: {job}\nits log:\n{}",
                agents[1].proc.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for id in ["ta", "tc"] {
        let ns = numbers(id).await;
        let expected: Vec<i64> = (0..ns.len() as i64).collect();
        assert_eq!(ns, expected, "{id}: every number once, none missing");
    }
    let ns = numbers("tb").await;
    let mut sorted = ns.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ns.len(), "tb: no number twice");
    assert_eq!(sorted, ns, "tb: in order");
    let missing = ns.last().copied().unwrap_or(0) + 1 - ns.len() as i64;
    assert!(
        (0..=1).contains(&missing),
        "tb: {missing} numbers missing across its restart: {:?}; its log as it stopped:\n{}",
        ns.windows(2).find(|w| w[1] != w[0] + 1),
        stop_log
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (_, _, value) in &batch.points {
        assert_eq!(
            ns.iter().filter(|n| **n as f64 == *value).count(),
            1,
            "the redelivered reading {value} stored once"
        );
    }
}

/// Issue 10's back-pressure test: a node floods readings (batches of 500 at QoS 1, as fast as the
/// broker takes them) while another process holds SQLite's write lock for 4 s, a database far
/// slower than the stream. The ingester's transaction waits, its queue fills, and the MQTT gate
/// holds the node's publishes back (MQTT flow control) instead of anything being dropped: the
/// queue's high-water mark reaches its capacity, the publisher waits, and once the lock goes
/// every reading is stored exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_database_holds_the_node_back_and_loses_nothing() {
    use trellis_tests::bench::{Publisher, batches, node_logins};
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let login = node_logins(&server, "flood", 1)
        .await
        .pop()
        .expect("a node");
    let db = server.dir.path().join("data/trellis.db");
    let mut locker = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
             c.execute('BEGIN IMMEDIATE')\n\
             print('locked', flush=True)\n\
             time.sleep(4)\n\
             c.execute('COMMIT')",
        ])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(locker.stdout.take().expect("stdout")),
        &mut said,
    )
    .expect("the locker's word");
    assert_eq!(said.trim(), "locked");

    let readings = 300_000u64;
    let run = "0123456789abcdef";
    let publisher = Publisher::connect(
        server.mqtt_port,
        &login,
        100,
        batches(run, 0, readings, 4, false),
    )
    .await;
    let sent = tokio::spawn(publisher.run());
    let queue = || async {
        server
            .graphql("{ ingestQueue { depth highWater capacity } }", json!({}))
            .await["data"]["ingestQueue"]
            .clone()
    };
    // While the lock is held the queue fills up to its capacity, and no further.
    let full = wait_for("the ingest queue full", PATIENCE, || async {
        let q = queue().await;
        (q["highWater"].as_i64()? >= q["capacity"].as_i64()?).then_some(q)
    })
    .await;
    assert!(!sent.is_finished(), "the publisher was held back: {full}");
    assert!(locker.wait().expect("the locker").success());

    sent.await.expect("every batch acknowledged");
    let stored = wait_for("every reading stored", Duration::from_secs(60), || async {
        let r = server.graphql("{ storage { readings } }", json!({})).await;
        let n = r["data"]["storage"]["readings"].as_u64()?;
        (n >= readings).then_some(n)
    })
    .await;
    assert_eq!(stored, readings, "every reading once");
    // Counted in the table itself, not only in the catalog: each value once.
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\n\
             c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)\n\
             print(*c.execute(\"SELECT COUNT(*), COUNT(DISTINCT value) FROM reading WHERE node_id = 'flood0'\").fetchone())",
        ])
        .arg(&db)
        .output()
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{readings} {readings}"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Bounded: the gate admits a publish while fewer than `capacity` batches are pending; one
    // relayed just as another was counted can pass it by a few, never by many.
    let q = queue().await;
    let (high, cap) = (
        q["highWater"].as_i64().unwrap_or(i64::MAX),
        q["capacity"].as_i64().unwrap_or(0),
    );
    assert!(
        high <= cap + cap / 8,
        "the queue stayed near its bound: {q}"
    );
    let r = server
        .graphql("{ node(id: \"flood0\") { readingsDropped } }", json!({}))
        .await;
    assert_eq!(r["data"]["node"]["readingsDropped"], 0, "{r}");
}

/// Live charts that follow the same readings with the same selection share one rendering of a
/// frame; each still gets exactly its own frames: the same selection twice, another field order
/// with aliases, a filter that takes half of each chunk of the feed, and the older protocol
/// (`graphql-ws`, `data` messages). Every reading once, in order, nothing skipped.
#[tokio::test(flavor = "multi_thread")]
async fn live_frames_rendered_once_reach_each_subscriber_as_its_own() {
    use futures::StreamExt;
    use trellis_proto::{ReadingBatch, Series, TopicKind};
    use trellis_tests::bench::{batches, connect_as, node_logins};
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let login = node_logins(&server, "shared", 1)
        .await
        .pop()
        .expect("a node");
    let node = &login.id;
    let cookie = server.admin_cookie.clone();
    let same = format!(
        "subscription {{ liveReadings(nodeId: \"{node}\", fps: 30, maxPerFrame: 10000) {{ series {{ metric values }} skipped resync }} }}"
    );
    // (query, the frame's key, its series' key, protocol, what each frame's text holds)
    let clients = [
        (
            same.clone(),
            "liveReadings",
            "series",
            "graphql-transport-ws",
            r#"{"series":[{"metric":"#,
        ),
        (
            same.clone(),
            "liveReadings",
            "series",
            "graphql-transport-ws",
            r#"{"series":[{"metric":"#,
        ),
        (
            format!(
                "subscription {{ frame: liveReadings(nodeId: \"{node}\", fps: 30, maxPerFrame: 10000) {{ s: series {{ metric values }} skipped resync }} }}"
            ),
            "frame",
            "s",
            "graphql-transport-ws",
            r#""frame":{"s":[{"metric":"#,
        ),
        (
            format!(
                "subscription {{ liveReadings(nodeId: \"{node}\", metric: \"m1\", fps: 30, maxPerFrame: 10000) {{ series {{ metric values }} skipped resync }} }}"
            ),
            "liveReadings",
            "series",
            "graphql-transport-ws",
            r#"{"series":[{"metric":"m1","values":["#,
        ),
        (
            same.clone(),
            "liveReadings",
            "series",
            "graphql-ws",
            r#"{"series":[{"metric":"#,
        ),
        (
            format!(
                "subscription {{ liveReadings(nodeId: \"{node}\", fps: 30, maxPerFrame: 10000) {{ resync skipped series {{ values metric }} }} }}"
            ),
            "liveReadings",
            "series",
            "graphql-transport-ws",
            r#"{"resync":false,"skipped":0,"series":[{"values":["#,
        ),
    ];
    let mut sockets = Vec::new();
    for (query, _, _, protocol, _) in &clients {
        let mut ws = trellis_tests::ws_connect(&server, protocol, cookie.as_deref()).await;
        ws.send(Message::text(
            json!({"type": "connection_init", "payload": {}}).to_string(),
        ))
        .await
        .expect("init");
        assert_eq!(
            trellis_tests::next_json(&mut ws).await["type"],
            "connection_ack"
        );
        let start = if *protocol == "graphql-ws" {
            "start"
        } else {
            "subscribe"
        };
        ws.send(Message::text(
            json!({"id": "1", "type": start, "payload": {"query": query}}).to_string(),
        ))
        .await
        .expect("subscribe");
        sockets.push(ws);
    }

    // Each client's readings by metric, warm-up readings (from 1e9 on) aside; reads until a
    // frame holds `until` (any frame: NaN).
    type Seen = std::collections::BTreeMap<String, Vec<f64>>;
    let read = async |ws: &mut trellis_tests::Ws,
                      frame_key: &str,
                      series_key: &str,
                      protocol: &str,
                      looks: &str,
                      seen: &mut Seen,
                      until: f64| {
        let kind = if protocol == "graphql-ws" {
            "data"
        } else {
            "next"
        };
        loop {
            let text = match tokio::time::timeout(PATIENCE, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => t,
                Ok(Some(Ok(_))) => continue,
                other => panic!("{frame_key}: no frame: {other:?}"),
            };
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(v["type"], kind, "{text}");
            let frame = &v["payload"]["data"][frame_key];
            assert_eq!(
                (&frame["skipped"], &frame["resync"]),
                (&json!(0), &json!(false)),
                "{text}"
            );
            let mut last = f64::NAN;
            for s in frame[series_key]
                .as_array()
                .unwrap_or_else(|| panic!("{text}"))
            {
                let metric = s["metric"].as_str().unwrap_or_else(|| panic!("{text}"));
                for value in s["values"].as_array().unwrap_or_else(|| panic!("{text}")) {
                    let value = value.as_f64().unwrap_or_else(|| panic!("{text}"));
                    if value < 1e9 {
                        last = value;
                        seen.entry(metric.to_owned()).or_default().push(value);
                    }
                }
            }
            // The client's own names and order of fields, in every frame.
            assert!(text.contains(looks), "{looks}: {text}");
            if until.is_nan() || last >= until {
                return;
            }
        }
    };

    // Warm-up: a reading of each metric at a time, each a run of its own, until every client
    // has a frame (a subscription is live once its socket carried one).
    let (mqtt, mut eventloop) = connect_as(server.mqtt_port, &login, 100).await;
    let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = TopicKind::Readings.topic(node, None);
    let now = chrono::Utc::now().timestamp_millis();
    let warm = |k: u64| ReadingBatch {
        run: format!("{:016x}", 0xabcd_0000 + k),
        seq: 0,
        held: 0,
        dropped: 0,
        series: ["m0", "m1"]
            .map(|m| Series {
                job: "bench".into(),
                metric: m.into(),
                unit: Some("u".into()),
            })
            .to_vec(),
        points: vec![(0, now, 1e9 + k as f64), (1, now, 1e9 + k as f64)],
    };
    for (ws, (_, frame_key, series_key, protocol, looks)) in sockets.iter_mut().zip(&clients) {
        let mut seen = Seen::new();
        let mut k = 0;
        loop {
            mqtt.publish(
                &topic,
                rumqttc::QoS::AtLeastOnce,
                false,
                trellis_proto::encode(&warm(k)).expect("encode"),
            )
            .await
            .expect("publish");
            k += 1;
            match tokio::time::timeout(
                Duration::from_millis(300),
                read(
                    ws,
                    frame_key,
                    series_key,
                    protocol,
                    looks,
                    &mut seen,
                    f64::NAN,
                ),
            )
            .await
            {
                Ok(()) => break,
                Err(_) if k < 100 => {}
                Err(_) => panic!("{frame_key}: no frame after {k} readings"),
            }
        }
    }
    // Let the warm-up's last frames go by before the readings counted.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The readings: 0..4000, m0 the even ones, m1 the odd ones, a batch every 100 ms (a chunk
    // of the feed each, most often a frame each).
    for b in batches("0123456789abcdef", 0, 4000, 2, false) {
        mqtt.publish(&topic, rumqttc::QoS::AtLeastOnce, false, b.to_vec())
            .await
            .expect("publish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let evens: Vec<f64> = (0..2000).map(|i| (2 * i) as f64).collect();
    let odds: Vec<f64> = (0..2000).map(|i| (2 * i + 1) as f64).collect();
    for (i, (ws, (_, frame_key, series_key, protocol, looks))) in
        sockets.iter_mut().zip(&clients).enumerate()
    {
        let mut seen = Seen::new();
        read(
            ws, frame_key, series_key, protocol, looks, &mut seen, 3999.0,
        )
        .await;
        let expected: Seen = if i == 3 {
            [("m1".to_owned(), odds.clone())].into()
        } else {
            [
                ("m0".to_owned(), evens.clone()),
                ("m1".to_owned(), odds.clone()),
            ]
            .into()
        };
        assert!(
            seen == expected,
            "client {i} ({frame_key}, {protocol}): {seen:?}"
        );
    }
    pump.abort();
}
