//! Experiments end to end, on real agent processes: two run at once with their own nodes, a node
//! held by one is refused to the other unless moved, jobs and readings carry their experiment,
//! notes and events are kept, ending releases the nodes; and the streamed CSV export of an
//! experiment holds exactly what the API returns for it, plain and gzipped.

use std::{collections::BTreeSet, io::Read, time::Duration};

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use trellis_tests::{
    PATIENCE, Server, ServerOpts, error_code, next_json, until_closed, wait_for, ws_session,
};

async fn gql(server: &Server, query: &str, vars: Value) -> Value {
    let r = server.graphql(query, vars).await;
    assert!(r["errors"].is_null(), "{query}: {r}");
    r["data"].clone()
}

async fn create(server: &Server, name: &str, nodes: &[&str]) -> String {
    let d = gql(
        server,
        "mutation($n: String!, $ids: [String!]!) { createExperiment(name: $n, nodeIds: $ids) { id name running } }",
        json!({"n": name, "ids": nodes}),
    )
    .await;
    assert_eq!(d["createExperiment"]["running"], true);
    d["createExperiment"]["id"]
        .as_str()
        .expect("the new experiment's id")
        .to_owned()
}

async fn start_od(server: &Server, node: &str) -> Value {
    let d = gql(
        server,
        "mutation($n: String!) { startJob(nodeId: $n, preset: \"od_reading\", settings: {interval: 60}) { name state experiment { name } } }",
        json!({"n": node}),
    )
    .await;
    assert_eq!(d["startJob"]["state"], "READY", "{d}");
    d["startJob"].clone()
}

async fn experiment_readings(server: &Server, id: &str) -> Vec<Value> {
    let d = gql(
        server,
        "query($e: String!) { readings(experimentId: $e, limit: 10000) { nodeId job metric unit time nodeTime value experimentId } }",
        json!({"e": id}),
    )
    .await;
    d["readings"]
        .as_array()
        .cloned()
        .expect("a list of readings")
}

async fn two_sped_up_nodes(server: &Server) -> (trellis_tests::Agent, trellis_tests::Agent) {
    let a = server.join_agent_with("ra", &["--sim-speed", "1200"]).await;
    let b = server.join_agent_with("rb", &["--sim-speed", "1200"]).await;
    for n in ["ra", "rb"] {
        server.wait_state(n, "ONLINE", PATIENCE).await;
        wait_for("the node's presets", PATIENCE, || async {
            let r = server
                .graphql(
                    "query($n: String!) { jobPresets(nodeId: $n) { name } }",
                    json!({"n": n}),
                )
                .await;
            (r["data"]["jobPresets"].as_array()?.len() >= 8).then_some(())
        })
        .await;
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_experiments_run_at_once_each_with_its_own_nodes() {
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let (_a, _b) = two_sped_up_nodes(&server).await;
    let one = create(&server, "growth curve 1", &["ra"]).await;
    let two = create(&server, "growth curve 2", &["rb"]).await;

    // A name is unique, and a node belongs to one running experiment: both refusals say why.
    let r = server
        .graphql(
            "mutation { createExperiment(name: \"growth curve 1\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&r), "CONFLICT", "{r}");
    let r = server
        .graphql(
            "mutation { createExperiment(name: \"third\", nodeIds: [\"ra\"]) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&r), "CONFLICT", "{r}");
    let msg = r["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("\"ra\"") && msg.contains("growth curve 1"),
        "{msg}"
    );

    // Jobs take their node's experiment; their readings carry it.
    assert_eq!(
        start_od(&server, "ra").await["experiment"]["name"],
        "growth curve 1"
    );
    assert_eq!(
        start_od(&server, "rb").await["experiment"]["name"],
        "growth curve 2"
    );
    for (id, node) in [(&one, "ra"), (&two, "rb")] {
        let rows = wait_for("readings in the experiment", PATIENCE, || async {
            let r = experiment_readings(&server, id).await;
            (r.len() >= 5).then_some(r)
        })
        .await;
        assert!(
            rows.iter()
                .all(|r| r["nodeId"] == node && r["experimentId"] == id.as_str()),
            "{rows:?}"
        );
    }
    let d = gql(
        &server,
        "query($e: String!) { experiment(id: $e) { nodes { id } series { nodeId job metric count buckets(points: 10) { count } } } }",
        json!({"e": one}),
    )
    .await;
    let series = d["experiment"]["series"].as_array().unwrap();
    assert!(!series.is_empty(), "{d}");
    for s in series {
        assert_eq!(s["nodeId"], "ra", "{s}");
        let in_buckets: i64 = s["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_i64().unwrap())
            .sum();
        assert_eq!(in_buckets, s["count"].as_i64().unwrap(), "{s}");
    }
    assert_eq!(d["experiment"]["nodes"], json!([{"id": "ra"}]));

    // Moving rb into the first experiment is explicit; its running job moves with it, and its
    // readings from then on are the first experiment's.
    let d = gql(
        &server,
        "mutation($e: String!) { addExperimentNodes(id: $e, nodeIds: [\"rb\"], moveNodes: true) { nodes { id } } }",
        json!({"e": one}),
    )
    .await;
    let ids: BTreeSet<&str> = d["addExperimentNodes"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert_eq!(ids, BTreeSet::from(["ra", "rb"]));
    let d = gql(
        &server,
        "{ job(nodeId: \"rb\", name: \"od_reading\") { experiment { name } } node(id: \"rb\") { experiment { name } } }",
        json!({}),
    )
    .await;
    assert_eq!(d["job"]["experiment"]["name"], "growth curve 1");
    assert_eq!(d["node"]["experiment"]["name"], "growth curve 1");
    wait_for(
        "rb's readings in the first experiment",
        PATIENCE,
        || async {
            let r = experiment_readings(&server, &one).await;
            r.iter().any(|r| r["nodeId"] == "rb").then_some(())
        },
    )
    .await;
    let d = gql(
        &server,
        "query($e: String!) { experiment(id: $e) { nodes { id } members { nodeId until } } }",
        json!({"e": two}),
    )
    .await;
    assert_eq!(d["experiment"]["nodes"], json!([]));
    assert!(!d["experiment"]["members"][0]["until"].is_null(), "{d}");

    // Renamed, described, annotated; what people did shows among its events.
    gql(
        &server,
        "mutation($e: String!) { renameExperiment(id: $e, name: \"OD of strain K\") { name } }",
        json!({"e": one}),
    )
    .await;
    gql(
        &server,
        "mutation($e: String!) { annotateExperiment(id: $e, text: \"inoculated at 10:02\") { id } }",
        json!({"e": one}),
    )
    .await;
    let d = gql(
        &server,
        "{ experiment(id: \"OD of strain K\") { name notes { text author } events { action target } } }",
        json!({}),
    )
    .await;
    let e = &d["experiment"];
    assert_eq!(e["notes"][0]["text"], "inoculated at 10:02");
    assert_eq!(e["notes"][0]["author"], "user:admin");
    let events: Vec<(String, String)> = e["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["action"].as_str().unwrap_or("").to_owned(),
                x["target"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        events.contains(&("startJob".into(), "ra/od_reading".into()))
            && events.contains(&("annotateExperiment".into(), "OD of strain K".into()))
            && events.contains(&("renameExperiment".into(), "OD of strain K".into())),
        "{events:?}"
    );
    // What was done under its earlier name is still its own after the rename, and only its
    // own: a new experiment that takes the old name has only its own creation.
    assert!(
        events.contains(&("createExperiment".into(), "growth curve 1".into())),
        "{events:?}"
    );
    let three = create(&server, "growth curve 1", &[]).await;
    let d = gql(
        &server,
        "query($e: String!) { experiment(id: $e) { events { action target } } }",
        json!({"e": three}),
    )
    .await;
    assert_eq!(
        d["experiment"]["events"],
        json!([{"action": "createExperiment", "target": "growth curve 1"}]),
        "{d}"
    );
    gql(
        &server,
        "mutation($e: String!) { endExperiment(id: $e) { running } }",
        json!({"e": three}),
    )
    .await;

    // Ending it releases its nodes; their jobs run on, in no experiment.
    let d = gql(
        &server,
        "mutation($e: String!) { endExperiment(id: $e) { running ended nodes { id } } }",
        json!({"e": one}),
    )
    .await;
    assert_eq!(d["endExperiment"]["running"], false);
    assert_eq!(d["endExperiment"]["nodes"], json!([]));
    let d = gql(
        &server,
        "{ node(id: \"ra\") { experiment { name } } job(nodeId: \"ra\", name: \"od_reading\") { state experiment { name } } experiments(running: true) { name } }",
        json!({}),
    )
    .await;
    assert!(d["node"]["experiment"].is_null(), "{d}");
    assert!(d["job"]["experiment"].is_null(), "{d}");
    assert_eq!(d["job"]["state"], "READY");
    assert_eq!(d["experiments"], json!([{"name": "growth curve 2"}]));
    let r = server
        .graphql(
            "mutation($e: String!) { addExperimentNodes(id: $e, nodeIds: [\"ra\"]) { id } }",
            json!({"e": one}),
        )
        .await;
    assert_eq!(error_code(&r), "BAD_REQUEST", "{r}");
}

/// Parses an export: header and rows as fields (no field of these holds a comma).
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines();
    let header = lines
        .next()
        .expect("a header row")
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    (header, rows)
}

async fn get(server: &Server, path: &str, cookie: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = server.http().get(server.url(path));
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let resp = req.send().await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("the body").to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_experiments_csv_holds_what_the_api_returns() {
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let (_a, _b) = two_sped_up_nodes(&server).await;
    let id = create(&server, "export me", &["ra", "rb"]).await;
    start_od(&server, "ra").await;
    start_od(&server, "rb").await;
    wait_for("readings from both nodes", PATIENCE, || async {
        let r = experiment_readings(&server, &id).await;
        let nodes: BTreeSet<String> = r
            .iter()
            .filter_map(|x| x["nodeId"].as_str().map(str::to_owned))
            .collect();
        (nodes.len() == 2 && r.len() >= 40).then_some(())
    })
    .await;

    // Live: frames of the experiment's readings, at most 2 a second and 5 readings each, the
    // rest counted as skipped (two nodes send 40 a second here).
    let mut ws = ws_session(&server, server.admin_cookie.as_deref(), json!({})).await;
    let sub = json!({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription($e: String!) { liveReadings(experimentId: $e, fps: 2, maxPerFrame: 5) { readings { nodeId experimentId value } skipped resync } }",
        "variables": {"e": id}}});
    ws.send(Message::text(sub.to_string())).await.expect("send");
    let (messages, _) = until_closed(&mut ws, Duration::from_secs(3)).await;
    let frames: Vec<Value> = messages
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(m).ok())
        .filter(|m| m["type"] == "next")
        .map(|m| m["payload"]["data"]["liveReadings"].clone())
        .collect();
    assert!(
        (2..=8).contains(&frames.len()),
        "{} frames: {frames:?}",
        frames.len()
    );
    for f in &frames {
        let rows = f["readings"].as_array().expect("readings");
        assert!(rows.len() <= 5, "{f}");
        assert!(rows.iter().all(|r| r["experimentId"] == id.as_str()), "{f}");
    }
    assert!(
        frames.iter().any(|f| f["skipped"].as_i64() > Some(0)),
        "{frames:?}"
    );
    let mut ws = ws_session(&server, server.admin_cookie.as_deref(), json!({})).await;
    let sub = json!({"id": "2", "type": "subscribe", "payload": {
        "query": "subscription { liveReadings(nodeId: \"ra\", fps: 99) { skipped } }"}});
    ws.send(Message::text(sub.to_string())).await.expect("send");
    let refused = next_json(&mut ws).await;
    assert!(
        refused
            .to_string()
            .contains("fps 99 must be between 1 and 30"),
        "{refused}"
    );

    for n in ["ra", "rb"] {
        gql(
            &server,
            "mutation($n: String!) { stopJob(nodeId: $n, name: \"od_reading\") { state } }",
            json!({"n": n}),
        )
        .await;
    }
    // Stopped: let the last batches land, then the data holds still.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let api = experiment_readings(&server, &id).await;
    let cookie = server.admin_cookie.clone().unwrap();

    let (status, plain) = get(
        &server,
        "/export/readings.csv?experiment=export%20me",
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&plain));
    let (status, gz) = get(
        &server,
        &format!("/export/readings.csv?experiment={id}&gzip=true"),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 200);
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut unzipped)
        .expect("a gzip file");
    let plain = String::from_utf8(plain).unwrap();
    assert_eq!(unzipped, plain);

    let (header, rows) = parse_csv(&plain);
    assert_eq!(
        header,
        [
            "time",
            "node_time",
            "node",
            "job",
            "metric",
            "value",
            "unit",
            "experiment"
        ]
    );
    assert_eq!(rows.len(), api.len());
    // The API returns the same readings in the same order (time, then arrival).
    for (row, r) in rows.iter().zip(&api) {
        let time = |v: &Value| {
            chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        };
        let csv_time = |s: &str| {
            assert!(
                s.ends_with('Z') && s.len() == 24,
                "ISO-8601 UTC with ms: {s}"
            );
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(csv_time(&row[0]), time(&r["time"]));
        assert_eq!(csv_time(&row[1]), time(&r["nodeTime"]));
        assert_eq!(row[2], r["nodeId"].as_str().unwrap());
        assert_eq!(row[3], r["job"].as_str().unwrap());
        assert_eq!(row[4], r["metric"].as_str().unwrap());
        assert_eq!(row[5].parse::<f64>().unwrap(), r["value"].as_f64().unwrap());
        assert_eq!(row[6], r["unit"].as_str().unwrap_or(""));
        assert_eq!(row[7], "export me");
    }

    // What the database holds counts them (no other readings were taken here), and a
    // retention rule that keeps a day deletes none of them.
    let d = gql(
        &server,
        "mutation { setRetention(days: 1) { metric days } applyRetention { readingsDeleted } }",
        json!({}),
    )
    .await;
    assert_eq!(d["setRetention"], json!([{"metric": null, "days": 1}]));
    assert_eq!(d["applyRetention"]["readingsDeleted"], 0);
    let d = gql(
        &server,
        "{ storage { databaseBytes readings series retention { days } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        d["storage"]["readings"].as_u64(),
        Some(rows.len() as u64),
        "{d}"
    );
    assert!(d["storage"]["databaseBytes"].as_i64() > Some(0), "{d}");

    // One node's readings for a time range, and the logs and events of the experiment.
    let from = api[0]["time"].as_str().unwrap();
    let (status, body) = get(
        &server,
        &format!(
            "/export/readings.csv?node=ra&from={}",
            from.replace('+', "%2B")
        ),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 200);
    let (_, rows) = parse_csv(std::str::from_utf8(&body).unwrap());
    let ra = api.iter().filter(|r| r["nodeId"] == "ra").count();
    assert_eq!(rows.len(), ra);
    let (status, body) = get(
        &server,
        &format!("/export/events.csv?experiment={id}"),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.starts_with("time,actor,action,target,outcome,detail\n"),
        "{text}"
    );
    assert!(
        text.contains(",user:admin,startJob,ra/od_reading,ok,"),
        "{text}"
    );
    let (status, body) = get(
        &server,
        "/export/logs.csv?node=ra&job=od_reading",
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .starts_with("time,node,job,stream,line,experiment\n")
    );

    // The API's authentication, and clear refusals.
    let (status, _) = get(&server, "/export/readings.csv?experiment=export%20me", None).await;
    assert_eq!(status, 401);
    let (status, body) = get(&server, "/export/readings.csv", Some(&cookie)).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, body) = get(
        &server,
        "/export/readings.csv?node=ra&from=yesterday",
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("from=\\\"yesterday\\\""));
    let (status, _) = get(
        &server,
        "/export/readings.csv?experiment=nope",
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 404);
}
