//! Experiment profiles end to end on a real agent: a Pioreactor-format profile stored, checked
//! (problems with their lines, a dry run), started on an experiment with a fast clock, its
//! actions run at their profile times (start, update under `if`, a skipped `if`, a `repeat`, a
//! `when`), the leader killed mid-run and started again without any action done twice, and the
//! run seen through to `done`.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};
use trellis_tests::{PATIENCE, Server, ServerOpts, error_code, wait_for};

const WARM_UP: &str = r#"experiment_profile_name: warm-up
metadata:
  author: test
  description: stir, heat to 30, then to the warm input after an hour
inputs:
  warm: 35
common:
  jobs:
    stirring:
      actions:
        - type: start
          hours_elapsed: 0
          options:
            target_rpm: 400
    temperature_automation:
      actions:
        - type: start
          hours_elapsed: 0
          options:
            automation_name: thermostat
            target_temperature: 30
        - type: update
          hours_elapsed: 1
          if: ::temperature_automation:target_temperature < warm
          options:
            target_temperature: ${{ warm }}
        - type: update
          hours_elapsed: 1.5
          if: unit() == 'nobody'
          options:
            target_temperature: 40
        - type: repeat
          hours_elapsed: 2
          repeat_every_hours: 1
          max_hours: 3
          actions:
            - type: log
              hours_elapsed: 0
              options:
                message: "target ${{ ::temperature_automation:target_temperature }}"
        - type: when
          hours_elapsed: 0
          condition: ::temperature_automation:target_temperature >= warm
          actions:
            - type: log
              hours_elapsed: 0
              options:
                message: warm now
"#;

async fn gql(server: &Server, query: &str, vars: Value) -> Value {
    let r = server.graphql(query, vars).await;
    assert!(r["errors"].is_null(), "{query}: {r}");
    r["data"].clone()
}

async fn run_of(server: &Server, experiment: &str) -> Value {
    let d = gql(
        server,
        "query($e: String!) { profileRuns(experimentId: $e) { id state elapsedHours totalHours actionsBegun next { hours job action } } }",
        json!({"e": experiment}),
    )
    .await;
    d["profileRuns"][0].clone()
}

async fn steps(server: &Server, run: &str) -> Vec<Value> {
    let d = gql(
        server,
        "query($r: String!) { profileSteps(runId: $r) { key dueHours nodeId job action state outcome } }",
        json!({"r": run}),
    )
    .await;
    d["profileSteps"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_runs_on_time_and_survives_a_leader_restart_without_repeating() {
    let mut server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let _agent = server.join_agent_with("pa", &["--sim-speed", "1800"]).await;
    server.wait_state("pa", "ONLINE", PATIENCE).await;
    wait_for("pa's job kinds", PATIENCE, || async {
        let r = server
            .graphql("{ jobKinds(nodeId: \"pa\") { kind } }", json!({}))
            .await;
        (r["data"]["jobKinds"].as_array()?.len() >= 5).then_some(())
    })
    .await;
    let d = gql(
        &server,
        "mutation { createExperiment(name: \"warming\", nodeIds: [\"pa\"]) { id } }",
        json!({}),
    )
    .await;
    let exp = d["createExperiment"]["id"].as_str().expect("id").to_owned();
    let d = gql(
        &server,
        "mutation($s: String!) { saveProfile(source: $s) { name updatedBy author description } }",
        json!({"s": WARM_UP}),
    )
    .await;
    assert_eq!(d["saveProfile"]["name"], "warm-up");
    // Its metadata, read from the YAML (the web app's list shows them).
    assert_eq!(d["saveProfile"]["author"], "test");
    assert_eq!(
        d["saveProfile"]["description"],
        "stir, heat to 30, then to the warm input after an hour"
    );

    // The dry run on the experiment: the starts at 0, the update at 1 h, three log repeats.
    let d = gql(
        &server,
        "query($s: String!, $e: String) { checkProfile(source: $s, experimentId: $e) { ok problems { message } timeline { hours nodeId job action detail } } }",
        json!({"s": WARM_UP, "e": exp}),
    )
    .await;
    let check = &d["checkProfile"];
    assert_eq!(check["ok"], true, "{check}");
    let timeline = check["timeline"].as_array().expect("timeline");
    assert_eq!(timeline[0]["hours"], 0.0);
    assert!(
        timeline.iter().any(|e| e["hours"] == 1.0
            && e["action"] == "update"
            && e["detail"]
                == "target_temperature=(computed when it runs) (if its condition holds then)"),
        "{timeline:#?}"
    );
    assert_eq!(
        timeline
            .iter()
            .filter(|e| e["action"] == "log" && e["hours"].as_f64() >= Some(2.0))
            .count(),
        3,
        "{timeline:#?}"
    );

    // Half a profile hour a second.
    let d = gql(
        &server,
        "mutation($e: String!) { startProfile(experimentId: $e, name: \"warm-up\", timeScale: 1800) { id state } }",
        json!({"e": exp}),
    )
    .await;
    let run = d["startProfile"]["id"].as_str().expect("run id").to_owned();
    assert_eq!(d["startProfile"]["state"], "running");
    // The starts run at once; the jobs carry the experiment.
    let d = wait_for("the profile's starts", PATIENCE, || async {
        let d = gql(
            &server,
            "{ jobs(nodeId: \"pa\") { name state settings experiment { name } } }",
            json!({}),
        )
        .await;
        let jobs = d["jobs"].as_array()?.clone();
        (jobs.len() == 2 && jobs.iter().all(|j| j["state"] == "READY")).then_some(jobs)
    })
    .await;
    assert!(
        d.iter().all(|j| j["experiment"]["name"] == "warming"),
        "{d:?}"
    );
    let heat = d
        .iter()
        .find(|j| j["name"] == "temperature_automation")
        .expect("the thermostat");
    assert_eq!(heat["settings"]["target"], 30.0, "{heat}");
    let stir = d
        .iter()
        .find(|j| j["name"] == "stirring")
        .expect("stirring");
    assert_eq!(stir["settings"]["target"], 400.0, "{stir}");

    // After the update (1 profile hour, 2 s), kill the leader; it is down a second.
    wait_for("the update at 1 h", PATIENCE, || async {
        let s = steps(&server, &run).await;
        s.iter()
            .any(|x| x["key"] == "pa/c/temperature_automation/1" && x["state"] == "done")
            .then_some(())
    })
    .await;
    server.restart_after(Duration::from_secs(1)).await;

    let done = wait_for("the run to finish", PATIENCE * 2, || async {
        let r = run_of(&server, &exp).await;
        (r["state"] == "done").then_some(r)
    })
    .await;
    assert!(done["next"].is_null(), "{done}");
    // Its `when` waits for a condition: how long it runs was not known in advance.
    assert!(done["totalHours"].is_null(), "{done}");
    assert!(done["elapsedHours"].as_f64() >= Some(4.0), "{done}");

    let all = steps(&server, &run).await;
    let by_key: BTreeMap<&str, &Value> = all
        .iter()
        .map(|s| (s["key"].as_str().unwrap_or(""), s))
        .collect();
    let state = |k: &str| {
        by_key
            .get(k)
            .map(|s| s["state"].as_str().unwrap_or(""))
            .unwrap_or("absent")
    };
    assert_eq!(state("pa/c/stirring/0"), "done");
    assert_eq!(state("pa/c/temperature_automation/0"), "done");
    assert_eq!(state("pa/c/temperature_automation/1"), "done");
    // `if unit() == 'nobody'` did not hold.
    assert_eq!(state("pa/c/temperature_automation/2"), "skipped");
    // The when held once the target was warm, and ran its action.
    assert_eq!(state("pa/c/temperature_automation/4"), "done");
    assert_eq!(state("pa/c/temperature_automation/4#w/0"), "done");
    // The repeat's last occurrence (at 4 h) ran; none ran twice.
    assert_eq!(state("pa/c/temperature_automation/3#2/0"), "done");

    // Each start was done once, by the profile, in the audit log (the experiment's events).
    let d = gql(
        &server,
        "query($e: String!) { experiment(id: $e) { events(limit: 500) { actor action target outcome } notes { text author } } }",
        json!({"e": exp}),
    )
    .await;
    let events = d["experiment"]["events"].as_array().expect("events");
    let starts: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "profile:start")
        .collect();
    assert_eq!(starts.len(), 2, "{events:#?}");
    assert!(
        starts
            .iter()
            .all(|e| e["actor"] == "profile:warm-up" && e["outcome"] == "ok")
    );
    let notes: Vec<&str> = d["experiment"]["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| n["text"].as_str())
        .collect();
    assert_eq!(
        notes.iter().filter(|n| n.ends_with("warm now")).count(),
        1,
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| *n == "pa/temperature_automation: target 35.0"
                || *n == "pa/temperature_automation: target 35"),
        "{notes:?}"
    );
    let d = gql(
        &server,
        "{ job(nodeId: \"pa\", name: \"temperature_automation\") { settings } }",
        json!({}),
    )
    .await;
    assert_eq!(d["job"]["settings"]["target"], 35.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_profiles_are_refused_with_their_lines_before_anything_runs() {
    let server = Server::start(ServerOpts::default()).await;
    let local = wait_for("the local node", PATIENCE, || async {
        let r = server.graphql("{ nodes { id state } }", json!({})).await;
        let n = r["data"]["nodes"].as_array()?.first()?.clone();
        (n["state"] == "ONLINE").then(|| n["id"].as_str().map(str::to_owned))?
    })
    .await;
    // Does not read: every problem with its line.
    let bad = "experiment_profile_name: x\ncommon:\n  jobs:\n    stirring:\n      actions:\n        - type: strat\n          hours_elapsed: 0\n        - type: start\n          hours_elapsed: soon\n";
    let r = server
        .graphql(
            "mutation($s: String!) { saveProfile(source: $s) { name } }",
            json!({"s": bad}),
        )
        .await;
    assert_eq!(error_code(&r), "BAD_REQUEST", "{r}");
    let msg = r["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("line 6, column 17: unknown action type \"strat\""),
        "{msg}"
    );
    assert!(
        msg.contains("line 9, column 26: hours_elapsed must be a number"),
        "{msg}"
    );

    // Reads, but names what is not here.
    let unknown = format!(
        "experiment_profile_name: y\npioreactors:\n  {local}:\n    jobs:\n      stirring:\n        actions:\n          - type: start\n            hours_elapsed: 0\n            options:\n              target_rpm: 400\n              colour: red\n  worker9:\n    jobs:\n      od_reading:\n        actions:\n          - type: start\n            hours_elapsed: 0\n"
    );
    let d = gql(
        &server,
        "query($s: String!) { checkProfile(source: $s) { ok problems { line column message } } }",
        json!({"s": unknown}),
    )
    .await;
    let problems = d["checkProfile"]["problems"].as_array().expect("problems");
    assert_eq!(d["checkProfile"]["ok"], false);
    assert!(
        problems.iter().any(|p| p["line"] == 11
            && p["message"]
                .as_str()
                .is_some_and(|m| m.contains("no setting \"colour\""))),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p["line"] == 12
            && p["message"]
                .as_str()
                .is_some_and(|m| m.contains("unit \"worker9\" is no node here"))),
        "{problems:#?}"
    );
    // Stored anyway (it reads), but refused at start, and nothing runs.
    gql(
        &server,
        "mutation($s: String!) { saveProfile(source: $s) { name } }",
        json!({"s": unknown}),
    )
    .await;
    let d = gql(
        &server,
        "mutation($n: String!) { createExperiment(name: \"e\", nodeIds: [$n]) { id } }",
        json!({"n": local}),
    )
    .await;
    let exp = d["createExperiment"]["id"].as_str().expect("id").to_owned();
    let r = server
        .graphql(
            "mutation($e: String!) { startProfile(experimentId: $e, name: \"y\") { id } }",
            json!({"e": exp}),
        )
        .await;
    assert_eq!(error_code(&r), "BAD_REQUEST", "{r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("worker9")),
        "{r}"
    );
    let d = gql(
        &server,
        "query($e: String!) { profileRuns(experimentId: $e) { id } jobs { name } }",
        json!({"e": exp}),
    )
    .await;
    assert_eq!(d["profileRuns"], json!([]));
    assert_eq!(d["jobs"], json!([]));
}
