//! The image benchmark of issue 12 (a benchmark, not a test: `#[ignore]`d, run by
//! `bash scripts/bench.sh images`, or by hand with `cargo build --release -p trellis-server -p
//! trellis-agent && cargo test --release -p trellis-tests --test images_bench -- --ignored
//! --nocapture`). A second `dockerd` on this machine is a node's engine, reached over TCP
//! through a pass-through proxy (`trellis_tests::chaos`); the leader's engine is this machine's.
//!
//! Sideload of an image of IMAGE_MIB (default 256) random MiB: `sideloadImage` sent → the
//! transfer `DONE` in the API, beside `docker save <image> | docker -H tcp://<the same proxy>
//! load` of the same image; the image is removed from the node's engine before each round.
//! ROUNDS (default 3) each, alternating; medians. The leader's peak RSS (VmHWM) before the first
//! transfer and after the last: the image must stream through, not be held.
//!
//! Output: `name value unit` lines on stdout, prefixed `images_`.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use trellis_tests::{
    PATIENCE, Server, ServerOpts,
    bench::{env, status_kib},
    chaos::{Chaos, Upstream},
    docker::{DockerGuard, SecondEngine, TestImages, big_image},
    wait_for,
};

async fn gql(server: &Server, query: &str, vars: Value) -> Value {
    let r = server.graphql(query, vars).await;
    assert!(r["errors"].is_null(), "{query}: {r}");
    r["data"].clone()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: bash scripts/bench.sh images"]
async fn sideload_beside_docker_save_and_load() {
    let mib: usize = env("IMAGE_MIB", 256);
    let rounds: usize = env("ROUNDS", 3);
    let images = TestImages::make();
    let _guard = DockerGuard::new(&images.label);
    let big = big_image(&images.label, mib);
    let second = SecondEngine::start().await;
    let proxy = Chaos::start(Upstream::Unix(second.socket.clone())).await;
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let endpoint = format!("tcp://127.0.0.1:{}", proxy.port);
    let root = second.data_root.display().to_string();
    let _edge = server
        .join_agent_with(
            "edge",
            &["--docker-endpoint", &endpoint, "--docker-root", &root],
        )
        .await;
    server.wait_state("edge", "ONLINE", PATIENCE).await;
    gql(
        &server,
        "mutation { setNodeDockerInsecure(id: \"edge\", insecure: true) { id } }",
        json!({}),
    )
    .await;
    let pid = server.proc.id();
    let hwm_before = status_kib(pid, "VmHWM:");
    let forget = || {
        let out = Command::new("docker")
            .args(["-H", &second.host(), "rmi", "-f", &big])
            .output()
            .expect("docker rmi");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut trellis = Vec::new();
    let mut cli = Vec::new();
    for round in 0..rounds {
        // Trellis.
        if round > 0 {
            forget();
        }
        let started = Instant::now();
        let t = gql(
            &server,
            "mutation($i: String!) { sideloadImage(nodeId: \"edge\", image: $i) { id } }",
            json!({"i": big}),
        )
        .await["sideloadImage"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let end = wait_for("the transfer's end", PATIENCE * 20, || async {
            let r = gql(
                &server,
                "query($id: String!) { imageTransfer(id: $id) { state error bytes } }",
                json!({"id": t}),
            )
            .await["imageTransfer"]
                .clone();
            (r["state"] == "DONE" || r["state"] == "FAILED").then_some(r)
        })
        .await;
        assert_eq!(end["state"], "DONE", "{end}");
        trellis.push(started.elapsed().as_secs_f64() * 1000.0);
        // docker save | docker load, through the same proxy.
        forget();
        let started = Instant::now();
        let out = Command::new("bash")
            .args([
                "-c",
                &format!(
                    "set -o pipefail; docker save '{big}' | docker -H tcp://127.0.0.1:{} load -q",
                    proxy.port
                ),
            ])
            .output()
            .expect("docker save | docker load");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cli.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let hwm_after = status_kib(pid, "VmHWM:");
    let rss_after = status_kib(pid, "VmRSS:");
    let (t, c) = (median(&mut trellis), median(&mut cli));
    println!("images_size_mib {mib} MiB");
    println!("images_rounds {rounds} rounds");
    println!("images_sideload_trellis_ms {t:.0} ms");
    println!("images_sideload_cli_ms {c:.0} ms");
    println!("images_sideload_ratio {:.2} x", t / c);
    println!(
        "images_sideload_mib_per_s {:.0} MiB/s",
        mib as f64 / (t / 1000.0)
    );
    println!(
        "images_leader_hwm_before_mib {:.0} MiB",
        hwm_before as f64 / 1024.0
    );
    println!(
        "images_leader_hwm_after_mib {:.0} MiB",
        hwm_after as f64 / 1024.0
    );
    println!(
        "images_leader_rss_after_mib {:.0} MiB",
        rss_after as f64 / 1024.0
    );
    println!(
        "images_leader_hwm_growth_mib {:.0} MiB",
        hwm_after.saturating_sub(hwm_before) as f64 / 1024.0
    );
}
