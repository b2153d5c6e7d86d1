//! Hardware jobs as a user drives them through GraphQL, on real agent processes with the
//! simulator: the kinds a node offers, start, live setting changes (applied, echoed, or refused
//! with the job still running), name collisions, pause and resume, stop, the audit log, and jobs
//! that come back with their settings after the agent or the whole leader is killed.

use serde_json::{Value, json};
use trellis_tests::{PATIENCE, Server, ServerOpts, audit_has, error_code, wait_for};

const JOB: &str = "nodeId name kind state settings values error startedBy";

async fn start(server: &Server, node: &str, kind: &str, name: &str, settings: Value) -> Value {
    server
        .graphql(
            &format!(
                "mutation($n: String!, $k: String!, $name: String, $s: JSON) {{
                   startJob(nodeId: $n, kind: $k, name: $name, settings: $s) {{ {JOB} }} }}"
            ),
            json!({"n": node, "k": kind, "name": name, "s": settings}),
        )
        .await
}

async fn set(server: &Server, node: &str, name: &str, settings: Value) -> Value {
    server
        .graphql(
            &format!(
                "mutation($n: String!, $name: String!, $s: JSON!) {{
                   setJobSettings(nodeId: $n, name: $name, settings: $s) {{ {JOB} }} }}"
            ),
            json!({"n": node, "name": name, "s": settings}),
        )
        .await
}

async fn act(server: &Server, verb: &str, node: &str, name: &str) -> Value {
    let r = server
        .graphql(
            &format!(
                "mutation($n: String!, $name: String!) {{ {verb}(nodeId: $n, name: $name) {{ {JOB} }} }}"
            ),
            json!({"n": node, "name": name}),
        )
        .await;
    r["data"][verb].clone()
}

async fn job(server: &Server, node: &str, name: &str) -> Value {
    let r = server
        .graphql(
            &format!(
                "query($n: String!, $name: String!) {{ job(nodeId: $n, name: $name) {{ {JOB} }} }}"
            ),
            json!({"n": node, "name": name}),
        )
        .await;
    r["data"]["job"].clone()
}

async fn wait_job_state(server: &Server, node: &str, name: &str, state: &str) -> Value {
    wait_for(
        &format!("job {node}/{name} to be {state}"),
        PATIENCE,
        || async {
            let j = job(server, node, name).await;
            (j["state"] == state).then_some(j)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_starts_tunes_pauses_and_stops_jobs_on_the_local_node() {
    let mut server = Server::start(ServerOpts::default()).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;

    // The node says what it can run, with each setting's rules.
    let kinds = wait_for("the leader's node to offer job kinds", PATIENCE, || async {
        let r = server
            .graphql(
                "{ jobKinds(nodeId: \"leader\") { kind settings { name type unit min max live default } } }",
                json!({}),
            )
            .await;
        let kinds = r["data"]["jobKinds"].as_array().cloned().unwrap_or_default();
        (!kinds.is_empty()).then_some(kinds)
    })
    .await;
    let pwm = kinds.iter().find(|k| k["kind"] == "pwm").expect("pwm kind");
    let duty = pwm["settings"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "duty"))
        .expect("duty setting");
    assert_eq!(
        (&duty["type"], &duty["unit"], &duty["max"], &duty["live"]),
        (&json!("FLOAT"), &json!("%"), &json!(100.0), &json!(true))
    );
    assert!(kinds.iter().any(|k| k["kind"] == "gpio"), "{kinds:?}");

    // Start: the job runs with the given settings and the defaults for the rest.
    let r = start(&server, "leader", "pwm", "heater", json!({"duty": 20})).await;
    let j = &r["data"]["startJob"];
    assert_eq!(j["state"], "READY", "{r}");
    assert_eq!(
        j["settings"],
        json!({"pin": 18, "frequency": 100.0, "duty": 20})
    );
    assert_eq!(j["startedBy"], "user:admin");

    // A live change is applied and echoed by the agent.
    let r = set(&server, "leader", "heater", json!({"duty": 55})).await;
    assert_eq!(r["data"]["setJobSettings"]["settings"]["duty"], 55, "{r}");
    // The job's log tells its story, as the agent saw it.
    wait_for("the job's log lines", PATIENCE, || async {
        let r = server
            .graphql(
                "{ job(nodeId: \"leader\", name: \"heater\") { logs { stream line } } }",
                json!({}),
            )
            .await;
        let lines: Vec<String> = r["data"]["job"]["logs"]
            .as_array()?
            .iter()
            .filter(|l| l["stream"] == "AGENT")
            .filter_map(|l| l["line"].as_str().map(str::to_owned))
            .collect();
        (lines
            == [
                "ready: duty=20, frequency=100.0, pin=18",
                "updated duty from 20 to 55",
            ])
        .then_some(())
    })
    .await;

    // Bad values are refused, named, and change nothing: the job keeps running with 55.
    for (bad, says) in [
        (
            json!({"duty": 150}),
            "setting duty = 150 refused: must be between 0 and 100 %",
        ),
        (
            json!({"duty": "max"}),
            "setting duty = \"max\" refused: must be a number",
        ),
        (
            json!({"pin": 5}),
            "setting pin cannot change while the job runs",
        ),
        (json!({"speed": 1}), "kind pwm has no setting speed"),
    ] {
        let r = set(&server, "leader", "heater", bad.clone()).await;
        assert_eq!(error_code(&r), "BAD_REQUEST", "{bad}: {r}");
        let message = r["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{bad}: {message}");
    }
    let j = job(&server, "leader", "heater").await;
    assert_eq!(
        (&j["state"], &j["settings"]["duty"]),
        (&json!("READY"), &json!(55))
    );

    // A second job may not take a running job's name; the agent's refusal names the running one.
    let r = start(&server, "leader", "gpio", "heater", json!({})).await;
    assert_eq!(error_code(&r), "BAD_REQUEST", "{r}");
    assert!(
        r["errors"][0]["message"].as_str().is_some_and(
            |m| m.contains("a job named heater is already ready on this node (kind pwm)")
        ),
        "{r}"
    );
    let r = start(&server, "leader", "laser", "x", json!({})).await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("has no job kind \"laser\" (it has: pwm, gpio, sensor, pid, pulse, turbidostat, chemostat, growth_rate, exec)")),
        "{r}"
    );

    // A job the leader never saw is NOT_FOUND, without asking the node.
    let r = server
        .graphql(
            "mutation { stopJob(nodeId: \"leader\", name: \"ghost\") { state } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&r), "NOT_FOUND", "{r}");

    // Pause releases the hardware and keeps the settings; resume puts them back.
    assert_eq!(
        act(&server, "pauseJob", "leader", "heater").await["state"],
        "SLEEPING"
    );
    let j = act(&server, "resumeJob", "leader", "heater").await;
    assert_eq!(
        (&j["state"], &j["settings"]["duty"]),
        (&json!("READY"), &json!(55))
    );

    // A blinking gpio job beside it.
    let r = start(
        &server,
        "leader",
        "gpio",
        "beacon",
        json!({"mode": "blink", "period": 0.1}),
    )
    .await;
    assert_eq!(r["data"]["startJob"]["state"], "READY", "{r}");

    // Every action is in the audit log with the job as its target.
    let log = server.audit_log(50).await;
    for (action, outcome) in [
        ("startJob", "ok"),
        ("setJobSettings", "ok"),
        ("setJobSettings", "BAD_REQUEST"),
        ("pauseJob", "ok"),
        ("resumeJob", "ok"),
    ] {
        assert!(
            audit_has(
                &log,
                &[
                    ("action", action),
                    ("target", "leader/heater"),
                    ("outcome", outcome),
                    ("actor", "user:admin")
                ]
            ),
            "{action} {outcome}: {log:?}"
        );
    }

    // The whole leader is killed (and its local agent with it): the jobs come back running,
    // with the settings they had.
    server.restart().await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let j = wait_job_state(&server, "leader", "heater", "READY").await;
    assert_eq!(j["settings"]["duty"], 55);
    wait_job_state(&server, "leader", "beacon", "READY").await;
    // The row said READY before the kill too: a live change answered by the new agent process
    // proves the job really runs again.
    let r = set(&server, "leader", "heater", json!({"duty": 56})).await;
    assert_eq!(r["data"]["setJobSettings"]["settings"]["duty"], 56, "{r}");

    // Stop: released, then STOPPED; the name is free again.
    let j = act(&server, "stopJob", "leader", "heater").await;
    assert_eq!(j["state"], "STOPPED");
    let r = start(&server, "leader", "pwm", "heater", json!({"duty": 5})).await;
    assert_eq!(r["data"]["startJob"]["settings"]["duty"], 5, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_agent_shows_its_jobs_lost_and_runs_them_again_when_back() {
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let mut agent = server.join_agent("bench-1").await;
    server.wait_state("bench-1", "ONLINE", PATIENCE).await;
    wait_for("bench-1 to offer job kinds", PATIENCE, || async {
        let r = server
            .graphql("{ jobKinds(nodeId: \"bench-1\") { kind } }", json!({}))
            .await;
        (!r["data"]["jobKinds"].as_array()?.is_empty()).then_some(())
    })
    .await;
    let r = start(
        &server,
        "bench-1",
        "pwm",
        "stirrer",
        json!({"pin": 12, "duty": 30}),
    )
    .await;
    assert_eq!(r["data"]["startJob"]["state"], "READY", "{r}");

    // kill -9: the node is lost, and so are its jobs as the leader sees them.
    agent.proc.kill9();
    server.wait_state("bench-1", "LOST", PATIENCE).await;
    let r = server
        .graphql("{ jobs(nodeId: \"bench-1\") { name state } }", json!({}))
        .await;
    assert_eq!(
        r["data"]["jobs"],
        json!([{"name": "stirrer", "state": "LOST"}]),
        "{r}"
    );

    // Back: the agent starts the job again from its state directory, with its settings.
    agent.respawn();
    server.wait_state("bench-1", "ONLINE", PATIENCE).await;
    let j = wait_job_state(&server, "bench-1", "stirrer", "READY").await;
    assert_eq!(
        j["settings"],
        json!({"pin": 12, "frequency": 100.0, "duty": 30})
    );
    // Answered by the restarted process: the job runs again, not only its old row.
    let r = set(&server, "bench-1", "stirrer", json!({"duty": 31})).await;
    assert_eq!(r["data"]["setJobSettings"]["settings"]["duty"], 31, "{r}");

    // A clean stop of the agent: the node is offline, and its job does not run meanwhile.
    agent.proc.signal("-TERM");
    let asked = std::time::Instant::now();
    loop {
        let state = server.node("bench-1").await.unwrap_or_default()["state"].clone();
        if state == "OFFLINE" {
            break;
        }
        assert!(
            asked.elapsed() < PATIENCE,
            "bench-1 is {state} after a clean stop; agent log:\n{}\nleader log:\n{}",
            agent.proc.log_text(),
            server.proc.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = server
        .graphql("{ jobs(nodeId: \"bench-1\") { name state } }", json!({}))
        .await;
    assert_eq!(
        r["data"]["jobs"],
        json!([{"name": "stirrer", "state": "OFFLINE"}]),
        "{r}"
    );

    // Removing the node forgets its jobs (and clears their retained topics).
    let r = server
        .graphql("mutation { removeNode(id: \"bench-1\") }", json!({}))
        .await;
    assert_eq!(r["data"]["removeNode"], true, "{r}");
    let r = server
        .graphql("{ jobs(nodeId: \"bench-1\") { name } }", json!({}))
        .await;
    assert_eq!(r["data"]["jobs"], json!([]));
}

/// The value a job last reported under `key`.
fn value(job: &Value, key: &str) -> Option<f64> {
    job["values"][key].as_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn presets_run_on_the_simulator_and_stirring_settles_at_its_target() {
    let server = Server::start(ServerOpts::default()).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let presets = wait_for("the leader's node to offer presets", PATIENCE, || async {
        let r = server
            .graphql(
                "{ jobPresets(nodeId: \"leader\") { name kind settings } }",
                json!({}),
            )
            .await;
        let p = r["data"]["jobPresets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (!p.is_empty()).then_some(p)
    })
    .await;
    let names: Vec<&str> = presets.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "stirring",
            "temperature_automation",
            "od_reading",
            "dosing_automation",
            "add_media",
            "remove_waste",
            "growth_rate_calculating",
            "led_intensity"
        ]
    );

    // Stirring, as a Pioreactor user would start it: by its preset name.
    let r = server
        .graphql(
            &format!(
                "mutation {{ startJob(nodeId: \"leader\", preset: \"stirring\") {{ {JOB} }} }}"
            ),
            json!({}),
        )
        .await;
    let j = &r["data"]["startJob"];
    assert_eq!(
        (&j["name"], &j["kind"], &j["state"]),
        (&json!("stirring"), &json!("pid"), &json!("READY")),
        "{r}"
    );
    assert_eq!(j["settings"]["target"], 500.0);

    // The simulated stirrer (2000 rpm at full duty, 0.5 s time constant, ±1 % noise) settles
    // within ±5 % of the target.
    let settled = |target: f64| {
        let server = &server;
        async move {
            wait_for(
                &format!("stirring to settle at {target} rpm"),
                PATIENCE,
                || async {
                    let j = job(server, "leader", "stirring").await;
                    let rpm = value(&j, "rpm")?;
                    ((rpm - target).abs() <= target * 0.05).then_some(rpm)
                },
            )
            .await
        }
    };
    settled(500.0).await;

    // A new target, live: applied, echoed, and the stirrer follows.
    let r = set(&server, "leader", "stirring", json!({"target": 800})).await;
    assert_eq!(
        r["data"]["setJobSettings"]["settings"]["target"], 800,
        "{r}"
    );
    settled(800.0).await;

    // The thermostat runs beside it, reading the vessel's temperature.
    let r = server
        .graphql(
            &format!(
                "mutation {{ startJob(nodeId: \"leader\", preset: \"temperature_automation\", settings: {{target: 35}}) {{ {JOB} }} }}"
            ),
            json!({}),
        )
        .await;
    assert_eq!(r["data"]["startJob"]["state"], "READY", "{r}");
    let j = wait_for(
        "the thermostat to report the temperature",
        PATIENCE,
        || async {
            let j = job(&server, "leader", "temperature_automation").await;
            value(&j, "temperature").map(|_| j)
        },
    )
    .await;
    let celsius = value(&j, "temperature").unwrap_or_default();
    assert!((15.0..60.0).contains(&celsius), "{j}");
    assert!(
        value(&j, "output").is_some_and(|o| o > 0.0),
        "heating from room temperature: {j}"
    );

    // Unknown presets are named.
    let r = server
        .graphql(
            "mutation { startJob(nodeId: \"leader\", preset: \"od_blasting\") { name } }",
            json!({}),
        )
        .await;
    assert!(
        r["errors"][0]["message"].as_str().is_some_and(|m| {
            m.contains("no preset \"od_blasting\" (there are: stirring, temperature_automation, od_reading, dosing_automation, add_media, remove_waste, growth_rate_calculating, led_intensity)")
        }),
        "{r}"
    );

    for name in ["stirring", "temperature_automation"] {
        assert_eq!(
            act(&server, "stopJob", "leader", name).await["state"],
            "STOPPED"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn any_program_is_a_job_through_json_lines() {
    let server = Server::start(ServerOpts::default()).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    wait_for("the leader's node to offer exec", PATIENCE, || async {
        let r = server
            .graphql("{ jobKinds(nodeId: \"leader\") { kind open } }", json!({}))
            .await;
        r["data"]["jobKinds"]
            .as_array()?
            .iter()
            .any(|k| k["kind"] == "exec" && k["open"] == true)
            .then_some(())
    })
    .await;
    // The program's own setting (`gain`) travels with the start, and changes reach its stdin.
    let program = r#"python3 -u -c '
import sys, json, os
gain = json.loads(os.environ["TRELLIS_SETTINGS"])["gain"]
print(json.dumps({"reading": {"od": 0.25 * gain}}))
for line in sys.stdin:
    gain = json.loads(line)["set"]["gain"]
    print(json.dumps({"setting": {"gain": gain}, "reading": {"od": 0.25 * gain}}))
'"#;
    let r = start(
        &server,
        "leader",
        "exec",
        "photometer",
        json!({"command": program, "gain": 2}),
    )
    .await;
    assert_eq!(r["data"]["startJob"]["state"], "READY", "{r}");
    let od = |want: f64| {
        let server = &server;
        async move {
            wait_for(
                &format!("the program to report od {want}"),
                PATIENCE,
                || async {
                    let j = job(server, "leader", "photometer").await;
                    (value(&j, "od") == Some(want)).then_some(())
                },
            )
            .await
        }
    };
    od(0.5).await;
    let r = set(&server, "leader", "photometer", json!({"gain": 4})).await;
    assert_eq!(r["data"]["setJobSettings"]["settings"]["gain"], 4, "{r}");
    od(1.0).await;
    let j = act(&server, "stopJob", "leader", "photometer").await;
    assert_eq!(j["state"], "STOPPED");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_start_reaches_every_selected_node_with_an_answer_per_node() {
    let server = Server::start(ServerOpts::default()).await;
    let _worker = server.join_agent("rack-2").await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    server.wait_state("rack-2", "ONLINE", PATIENCE).await;
    for node in ["leader", "rack-2"] {
        wait_for(&format!("{node} to offer job kinds"), PATIENCE, || async {
            let r = server
                .graphql(
                    "query($n: String!) { jobKinds(nodeId: $n) { kind } }",
                    json!({"n": node}),
                )
                .await;
            (!r["data"]["jobKinds"].as_array()?.is_empty()).then_some(())
        })
        .await;
    }
    let start_jobs = |selector: Value| {
        let server = &server;
        async move {
            let r = server
                .graphql(
                    "mutation($s: NodeSelector!) { startJobs(nodes: $s, kind: \"gpio\", name: \"beacon\") {
                       nodeId code error job { state } } }",
                    json!({"s": selector}),
                )
                .await;
            r["data"]["startJobs"].clone()
        }
    };
    // A label picks one node.
    let r = server
        .graphql(
            "mutation { setNodeLabels(id: \"rack-2\", labels: [{key: \"room\", value: \"b\"}]) { id } }",
            json!({}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let r = start_jobs(json!({"labels": [{"key": "room", "value": "b"}]})).await;
    assert_eq!(
        r,
        json!([{"nodeId": "rack-2", "code": null, "error": null, "job": {"state": "READY"}}])
    );
    // All online: the leader starts it, rack-2 refuses (the name is taken there), each answered.
    let r = start_jobs(json!({"allOnline": true})).await;
    assert_eq!(r[0]["nodeId"], "leader", "{r}");
    assert_eq!(r[0]["job"]["state"], "READY", "{r}");
    assert_eq!(
        (&r[1]["nodeId"], &r[1]["code"]),
        (&json!("rack-2"), &json!("BAD_REQUEST")),
        "{r}"
    );
    assert!(
        r[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("a job named beacon is already")),
        "{r}"
    );
    let r = server
        .graphql(
            "mutation { startJobs(nodes: {nodeIds: [\"nowhere\"]}, kind: \"gpio\") { nodeId } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&r), "NOT_FOUND", "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_delivered_twice_is_applied_once() {
    // An anonymous Mosquitto, so the test can speak as the leader would.
    let mosquitto = trellis_tests::Mosquitto::start().await;
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..mosquitto.server_opts()
    })
    .await;
    let _agent = server.join_agent("dup").await;
    server.wait_state("dup", "ONLINE", PATIENCE).await;
    let mut results =
        trellis_tests::MqttProbe::connect(mosquitto.port, Some("trellis/v1/nodes/dup/result"))
            .await;
    // The same QoS 1 command twice (as a redelivery after a lost PUBACK would bring it): a
    // start that, run a second time, would be refused as "name taken".
    let command = json!({"id": "once-1", "action": {"type": "start_job", "kind": "pwm", "name": "fan", "settings": {"pin": 12, "duty": 30}}});
    for _ in 0..2 {
        results
            .publish(
                "trellis/v1/nodes/dup/command",
                command.to_string().as_bytes(),
                false,
            )
            .await;
    }
    let answers = results.collect(std::time::Duration::from_secs(3)).await;
    let answers: Vec<Value> = answers
        .iter()
        .filter_map(|p| serde_json::from_slice(&p.payload).ok())
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    for a in &answers {
        assert_eq!(
            (&a["id"], &a["ok"], &a["message"]),
            (
                &json!("once-1"),
                &json!(true),
                &json!("starting job fan (pwm)")
            ),
            "{a}"
        );
    }
    let j = wait_job_state(&server, "dup", "fan", "READY").await;
    assert_eq!(j["settings"]["duty"], 30);
}

/// The agent survives a restart while offline (R5): its broker (the leader's embedded one) is
/// gone, the agent is killed and started again meanwhile, and the job it kept on disk runs again
/// at once, with no broker to tell it so (its output goes on); when the leader returns, the job
/// is there, running.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_restarted_while_its_broker_is_down_runs_its_jobs() {
    let mut server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let mut agent = server.join_agent("offline-1").await;
    server.wait_state("offline-1", "ONLINE", PATIENCE).await;
    wait_for("offline-1 to offer exec", PATIENCE, || async {
        let r = server
            .graphql("{ jobKinds(nodeId: \"offline-1\") { kind } }", json!({}))
            .await;
        r["data"]["jobKinds"]
            .as_array()?
            .iter()
            .any(|k| k["kind"] == "exec")
            .then_some(())
    })
    .await;
    let program = "sh -c 'i=0; while :; do echo \"beat $i\"; i=$((i+1)); sleep 0.2; done'";
    let r = start(
        &server,
        "offline-1",
        "exec",
        "beater",
        json!({"command": program}),
    )
    .await;
    assert_eq!(r["data"]["startJob"]["state"], "READY", "{r}");

    // The broker goes (with the leader), then the agent is killed and started again.
    server.proc.kill9();
    agent.respawn();
    let log = agent.proc.log.clone();
    wait_for("the job's output with no broker", PATIENCE, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.lines().filter(|l| l.contains("beat ")).count() >= 3).then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("connected to broker"),
        "it ran before any broker was there"
    );
    server.restart().await;
    server.wait_state("offline-1", "ONLINE", PATIENCE).await;
    let j = wait_job_state(&server, "offline-1", "beater", "READY").await;
    assert_eq!(j["kind"], "exec", "{j}");
}
