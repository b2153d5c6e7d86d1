//! The offline busybox test images of `trellis_tests::docker`, which the container-deployment
//! tests stand on: they run and log, stop at once on `docker stop`, report health as told by
//! `READY_AFTER`, answer `docker exec`, and leave nothing behind once the guard is dropped.

use std::time::{Duration, Instant};

use trellis_tests::docker::{DockerGuard, TestImages, docker, docker_ok, docker_ps, poll_for};

/// `docker inspect -f <format> <container>`.
fn inspect(container: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, container])
}

/// Stops `container`, checking it exits 0 well inside `docker stop`'s 10 s grace period, which
/// it would wait out if the image's PID 1 ignored SIGTERM.
fn stop_at_once(container: &str) {
    let start = Instant::now();
    docker(&["stop", container]);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "docker stop took {took:?}: SIGTERM was not handled"
    );
    assert_eq!(inspect(container, "{{.State.ExitCode}}"), "0");
}

#[test]
fn test_images_run_stop_at_once_and_get_healthy() {
    let images = TestImages::make();
    let guard = DockerGuard::new(&images.label);
    let label = format!("trellis-test={}", images.label);

    let image_id = |tag: &str| docker(&["image", "inspect", "-f", "{{.Id}}", tag]);
    assert_ne!(image_id(&images.bb), image_id(&images.bb_v2));
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"version\"}}",
            &images.bb_v2
        ]),
        "2"
    );

    let ticking = docker(&["run", "-d", "--label", &label, &images.bb]);
    poll_for(
        "the bb container to log tick 1",
        Duration::from_secs(10),
        || docker(&["logs", &ticking]).contains("tick 1").then_some(()),
    );
    stop_at_once(&ticking);

    let health = |container: &str| inspect(container, "{{.State.Health.Status}}");
    let ready = docker(&[
        "run",
        "-d",
        "--label",
        &label,
        "-e",
        "READY_AFTER=1",
        &images.bb_health,
    ]);
    let never = docker(&[
        "run",
        "-d",
        "--label",
        &label,
        "-e",
        "READY_AFTER=never",
        &images.bb_health,
    ]);
    poll_for(
        "READY_AFTER=1 to be healthy",
        Duration::from_secs(15),
        || (health(&ready) == "healthy").then_some(()),
    );
    poll_for(
        "READY_AFTER=never to be unhealthy",
        Duration::from_secs(15),
        || (health(&never) == "unhealthy").then_some(()),
    );
    assert_eq!(health(&ready), "healthy", "healthy stays healthy");
    // `docker exec` finds `sh` through the image's PATH, not through an entrypoint.
    assert_eq!(docker(&["exec", &ready, "sh", "-c", "echo hi"]), "hi");
    // Never ready, it still stops at once: SIGTERM interrupts its waiting loop too.
    stop_at_once(&never);

    let rows = docker_ps(&label);
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in &rows {
        assert_eq!(
            row.labels.get("trellis-test"),
            Some(&images.label),
            "{row:?}"
        );
        let want = if row.id == ready { "running" } else { "exited" };
        assert_eq!(row.state, want, "{row:?}");
        assert!(!row.name.is_empty(), "{row:?}");
    }
    assert!(rows.iter().any(|r| r.id == ticking), "{rows:?}");

    drop(guard);
    assert_eq!(
        docker(&["ps", "-a", "--filter", &format!("label={label}"), "-q"]),
        ""
    );
    for tag in [&images.bb, &images.bb_health, &images.bb_v2] {
        assert!(!docker_ok(&["image", "inspect", tag]), "{tag} is left");
    }
    assert_eq!(
        docker(&["images", "-q", "--filter", &format!("label={label}")]),
        ""
    );
}
