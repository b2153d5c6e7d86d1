//! Issue 12's "done when", in headless Chromium: a new user with no registry and no internet
//! uploads a `py3` bundle on the Apps page (seeing the upload's progress), deploys it to the
//! local node with a parameter set and watches it build live, sees it running with its live
//! log, uploads version 2 and rolls out to it, and rolls back to version 1 from the
//! deployment's page. The Python base image is this machine's own (`python_image`).
//! Screenshots go to `<target>/screenshots/`.

use trellis_tests::{
    Browser, PATIENCE, Server, ServerOpts,
    bundles::{hello_bundle, wheel},
    docker::{DockerGuard, TestImages, docker_ps, python_image},
    wait_for,
    web::{element, retype, save_screenshot, text, wait_rolled_out, wait_text},
    web_dir,
};

/// The text of every line the instance page's live log shows.
async fn log_lines(browser: &Browser) -> Vec<String> {
    browser
        .texts("section.container-log ol.log li.out .text")
        .await
}

/// Uploads `bytes` as the bundle file `name` from the Apps page's form; waits for the notice.
async fn upload(browser: &Browser, dir: &std::path::Path, name: &str, bytes: &[u8], want: &str) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("the bundle file");
    element(browser, "form.upload-bundle input[type=file]")
        .await
        .send_keys(&path.display().to_string())
        .await
        .expect("choose the file");
    browser
        .click_redrawn("form.upload-bundle button[type=submit]")
        .await;
    wait_text(browser, "the upload's notice", "p.notice", |t| {
        t.starts_with(want)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_py3_app_is_uploaded_built_run_updated_and_rolled_back_in_the_web_app() {
    let images = TestImages::make();
    let mut guard = DockerGuard::new(&images.label);
    let python = python_image(&images.label);
    let server = Server::start(ServerOpts {
        web_dir: Some(web_dir()),
        extra_args: vec!["--py3-base-image".into(), python],
        ..ServerOpts::default()
    })
    .await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let files = tempfile::tempdir().expect("tempdir");
    let wheel = wheel();
    let browser = Browser::start().await;
    trellis_tests::web::open_as_admin(&browser, &server, "/apps").await;

    // (a) Version 1 uploaded: the page says what came, and lists it unbuilt.
    upload(
        &browser,
        files.path(),
        "hello-1.0.tar.gz",
        &hello_bundle("1.0", &wheel),
        "Uploaded hello 1.0 (py3)",
    )
    .await;
    wait_text(
        &browser,
        "version 1.0 listed",
        "tr[data-version='hello/1.0']",
        |t| t.contains("stored"),
    )
    .await;

    // (b) Deployed to the local node with its parameter set; the build shows live.
    browser
        .click_redrawn("tr[data-version='hello/1.0'] button[data-act=deploy]")
        .await;
    assert_eq!(
        text(&browser, "form.deploy-app h2").await,
        "Deploy hello 1.0"
    );
    retype(
        &browser,
        "form.deploy-app input[name='param:GREETING']",
        "bonjour",
    )
    .await;
    browser
        .click_redrawn("form.deploy-app button[type=submit]")
        .await;
    wait_text(
        &browser,
        "pip in the live build log",
        "section.build-log pre.log",
        |t| t.contains("Successfully installed hello-dep-1.0"),
    )
    .await;
    wait_text(
        &browser,
        "the build's end",
        "section.build-log h2 .state",
        |t| t == "built",
    )
    .await;
    save_screenshot(&browser, "apps-built.png").await;
    let row = wait_text(&browser, "the app running", "tr.app[data-app=hello]", |t| {
        t.contains("1/1 running") && t.contains("revision 1 succeeded")
    })
    .await;
    assert!(row.contains("app-hello"), "{row}");
    let cluster = docker_ps("io.trellis.deployment-name=app-hello")
        .first()
        .map(|c| c.labels["io.trellis.cluster"].clone())
        .expect("the app's container");
    guard.also_cluster(&cluster);

    // (c) Its live log, on the instance's page.
    browser
        .client
        .goto(&server.url("/deployments/app-hello/leader"))
        .await
        .expect("the instance page");
    wait_for("the app's log lines", PATIENCE, || async {
        let lines = log_lines(&browser).await;
        (lines
            .iter()
            .filter(|l| l.starts_with("bonjour from v1.0: dep-ok tick"))
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    save_screenshot(&browser, "apps-running.png").await;

    // (d) Version 2 uploaded and deployed where it runs: a rollout to revision 2.
    browser
        .client
        .goto(&server.url("/apps"))
        .await
        .expect("the apps page");
    upload(
        &browser,
        files.path(),
        "hello-2.0.tar.gz",
        &hello_bundle("2.0", &wheel),
        "Uploaded hello 2.0 (py3)",
    )
    .await;
    browser
        .click_redrawn("tr[data-version='hello/2.0'] button[data-act=deploy]")
        .await;
    browser
        .click_redrawn("form.deploy-app button[type=submit]")
        .await;
    wait_text(
        &browser,
        "version 2 deployed",
        "tr[data-version='hello/2.0']",
        |t| t.contains("deployed") && t.contains("built"),
    )
    .await;
    browser
        .client
        .goto(&server.url("/deployments/app-hello"))
        .await
        .expect("the deployment page");
    wait_rolled_out(&browser, 2).await;
    save_screenshot(&browser, "apps-version-2.png").await;

    // (e) Rolled back to version 1 from the deployment's page.
    browser
        .click_redrawn("li[data-revision='1'] button.rollback")
        .await;
    wait_rolled_out(&browser, 3).await;
    browser
        .client
        .goto(&server.url("/deployments/app-hello/leader"))
        .await
        .expect("the instance page");
    wait_for("version 1's lines again", PATIENCE, || async {
        let lines = log_lines(&browser).await;
        lines
            .iter()
            .any(|l| l.starts_with("bonjour from v1.0: dep-ok tick"))
            .then_some(())
    })
    .await;
    browser
        .client
        .goto(&server.url("/apps"))
        .await
        .expect("the apps page");
    wait_text(
        &browser,
        "version 1.0 deployed again",
        "tr[data-version='hello/1.0']",
        |t| t.contains("deployed"),
    )
    .await;
    save_screenshot(&browser, "apps-rolled-back.png").await;

    // (f) The node's page lists what its engine holds: both versions' images, version 1.0's
    // running, with the node's free disk.
    browser
        .client
        .goto(&server.url("/nodes/leader"))
        .await
        .expect("the node page");
    wait_text(
        &browser,
        "the app's images on the node page",
        "section.images table.node-images",
        |t| {
            t.lines()
                .any(|l| l.contains("hello 1.0") && l.contains("1 running of 1"))
                && t.lines().any(|l| l.contains("hello 2.0"))
        },
    )
    .await;
    let disk = trellis_tests::web::text(&browser, "section.images p.disk").await;
    assert!(
        disk.starts_with("Disk for Docker: ") && disk.contains(" free of "),
        "{disk}"
    );
    save_screenshot(&browser, "node-images.png").await;

    // (g) Fast deploy from the same form: built and run on the leader's node at once, as the
    // app's deployment, and no bundle kept.
    browser
        .client
        .goto(&server.url("/apps"))
        .await
        .expect("the apps page");
    let quick = files.path().join("quick-1.tar.gz");
    std::fs::write(&quick, hello_bundle("1.0", &wheel)).expect("bundle");
    retype(&browser, "form.upload-bundle input[name=name]", "quick").await;
    retype(&browser, "form.upload-bundle input[name=version]", "1").await;
    element(&browser, "form.upload-bundle input[type=file]")
        .await
        .send_keys(&quick.display().to_string())
        .await
        .expect("choose the file");
    browser
        .client
        .execute(
            "const s = document.querySelector('form.upload-bundle select[name=deploy]'); \
             s.value = 'leader'; s.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await
        .expect("choose fast deploy");
    browser
        .click_redrawn("form.upload-bundle button[type=submit]")
        .await;
    wait_text(&browser, "the fast deploy's notice", "p.notice", |t| {
        t.contains("fast deploy") && t.contains("app-quick")
    })
    .await;
    wait_for("the fast-deployed app running", PATIENCE * 3, || async {
        docker_ps("io.trellis.deployment-name=app-quick")
            .into_iter()
            .any(|c| c.state == "running")
            .then_some(())
    })
    .await;
    let v = server
        .graphql(
            "{ appVersion(name: \"quick\", version: \"1\") { bundleKept } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(v["data"]["appVersion"]["bundleKept"], false, "{v}");
}
