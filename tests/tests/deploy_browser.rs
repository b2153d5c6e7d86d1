//! The Deployments pages of the web app in headless Chromium, on this machine's real Docker
//! engine with images made offline (`trellis_tests::docker::TestImages`): the issue's "done
//! when", as a new user sees it. Every container carries the test's label (typed into the form)
//! and is removed by the guard, also when an assertion fails. Screenshots go to
//! `<target>/screenshots/`.

use trellis_tests::{
    Browser, PATIENCE, Server, ServerOpts,
    docker::{DockerGuard, TestImages},
    wait_for,
    web::{attr, retype, save_screenshot, text, wait_rolled_out, wait_text},
    web_dir,
};

/// The numbers of the `tick N` lines the instance page's log shows, in order.
async fn ticks(browser: &Browser) -> Vec<u64> {
    browser
        .texts("section.container-log ol.log li.out .text")
        .await
        .iter()
        .filter_map(|t| t.strip_prefix("tick ")?.parse().ok())
        .collect()
}

/// The "done when", in the browser: a new user makes a deployment of a test image to
/// the leader's own node from the form (GREETING=one, the test's label), with the target's
/// preview naming the node; watches it become running; reads its live log growing, its stats,
/// and a command's output; changes the environment to GREETING=two and sees revision 2 roll
/// out with its change listed; changes the command to one that fails and sees revision 3
/// rolled back on its own, the reason in a red banner (the node, the last line) and the exit
/// in the instance's exits; rolls back to revision 1 by its button and sees revision 4
/// (`rollback:3->1`) roll out and run; sees it summarised on the list; and removes it after
/// confirming.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_is_made_watched_changed_and_rolled_back_in_the_web_app() {
    // The guard is made before the leader so that it drops after it.
    let images = TestImages::make();
    let _guard = DockerGuard::new(&images.label);
    let server = Server::start(ServerOpts {
        web_dir: Some(web_dir()),
        extra_args: vec!["--docker-timeout-secs".into(), "5".into()],
        ..ServerOpts::default()
    })
    .await;
    let node = server.wait_state("leader", "ONLINE", PATIENCE).await;
    let node_name = node["name"].as_str().expect("the node's name").to_owned();
    let browser = Browser::start().await;
    trellis_tests::web::open_as_admin(&browser, &server, "/deployments").await;

    // (a) Made from the form, to the leader's node; the preview names it first.
    let form = "form.deployment-form";
    retype(&browser, &format!("{form} input[name=name]"), "greeter").await;
    retype(&browser, &format!("{form} input[name=image]"), &images.bb).await;
    retype(
        &browser,
        &format!("{form} textarea[name=env]"),
        "GREETING=one",
    )
    .await;
    let label = format!("trellis-test={}", images.label);
    retype(&browser, &format!("{form} textarea[name=labels]"), &label).await;
    retype(&browser, &format!("{form} input[name=min-ready]"), "1").await;
    wait_text(&browser, "no node chosen yet", "p.preview", |t| {
        t.starts_with("Will run on no node")
    })
    .await;
    browser
        .click_redrawn(&format!("{form} input[name=node][value=leader]"))
        .await;
    wait_text(&browser, "the preview naming the node", "p.preview", |t| {
        t == format!("Will run on: {node_name}")
    })
    .await;
    save_screenshot(&browser, "deployment-form.png").await;
    browser.click_redrawn(&format!("{form} button.save")).await;
    wait_text(&browser, "the new deployment's page", "h1 .name", |t| {
        t == "greeter"
    })
    .await;
    let url = browser.client.current_url().await.expect("url");
    assert_eq!(url.path(), "/deployments/greeter");

    // (b) It becomes running, its first rollout done.
    wait_rolled_out(&browser, 1).await;
    let env = text(&browser, "dl.spec dd.env").await;
    assert_eq!(env, "GREETING=one");
    let target = text(&browser, "dl.spec dd.target").await;
    assert_eq!(target, format!("nodes {node_name}"));

    // (c) Its live log, stats, and a command run in it, on the instance's page.
    browser
        .click_redrawn("section.instances tr[data-node-id=leader] a.instance-link")
        .await;
    let first = wait_for("three ticks in the log", PATIENCE, || async {
        let n = ticks(&browser).await;
        (n.len() >= 3).then_some(n)
    })
    .await;
    let later = wait_for("the log growing live", PATIENCE, || async {
        let n = ticks(&browser).await;
        (n.last() > first.last()).then_some(n)
    })
    .await;
    assert!(
        later.windows(2).all(|w| w[1] == w[0] + 1),
        "ticks in order, none missed: {later:?}"
    );
    let cpu = wait_text(&browser, "the container's CPU", "dl.usage dd.cpu", |t| {
        t.contains('%')
    })
    .await;
    assert!(cpu.ends_with('%'), "{cpu}");
    let memory = text(&browser, "dl.usage dd.memory").await;
    assert!(
        memory.contains("B of ") && memory.ends_with("%)"),
        "used of the limit: {memory}"
    );
    retype(
        &browser,
        "form.exec input[name=exec]",
        "sh -c \"echo $GREETING\"",
    )
    .await;
    browser.click_redrawn("form.exec button").await;
    wait_text(
        &browser,
        "the command's output",
        ".exec-result pre.stdout",
        |t| t == "one",
    )
    .await;
    assert_eq!(
        text(&browser, ".exec-result p.exit-code").await,
        "Exit code 0"
    );
    save_screenshot(&browser, "deployment-instance.png").await;
    browser
        .click_redrawn("main a[href='/deployments/greeter']")
        .await;

    // (d) The environment changed: revision 2 rolls out, its change listed.
    browser.click_redrawn("button.edit").await;
    retype(
        &browser,
        &format!("{form} textarea[name=env]"),
        "GREETING=two",
    )
    .await;
    browser.click_redrawn(&format!("{form} button.save")).await;
    wait_rolled_out(&browser, 2).await;
    let changes = wait_text(
        &browser,
        "revision 2's change",
        "li[data-revision='2'] ul.changes",
        |t| !t.is_empty(),
    )
    .await;
    assert_eq!(changes, "container.env GREETING: \"one\" → \"two\"");
    assert_eq!(
        attr(&browser, "li[data-revision='2']", "data-outcome").await,
        "rolled_out"
    );

    // (e) A command that fails: revision 3 is rolled back on its own, and the page says why.
    browser.click_redrawn("button.edit").await;
    retype(
        &browser,
        &format!("{form} input[name=command]"),
        "sh -c \"echo boom >&2; exit 3\"",
    )
    .await;
    browser.click_redrawn(&format!("{form} button.save")).await;
    let banner = wait_text(&browser, "the rollback banner", "p.banner.failed", |t| {
        !t.is_empty()
    })
    .await;
    assert!(
        banner.starts_with("Revision 3 failed and was rolled back to revision 2:")
            && banner.contains("node leader")
            && banner.contains("boom"),
        "{banner}"
    );
    wait_rolled_out(&browser, 2).await;
    let head = text(&browser, "p.rollout-head").await;
    assert!(head.starts_with("Automatic rollback"), "{head}");
    assert_eq!(
        attr(&browser, "li[data-revision='3']", "data-outcome").await,
        "failed"
    );
    save_screenshot(&browser, "deployment-auto-rollback.png").await;
    // The instance's exits say why it stopped: the code and the last line.
    browser
        .click_redrawn("section.instances tr[data-node-id=leader] a.instance-link")
        .await;
    let exits = wait_text(
        &browser,
        "the exit of revision 3",
        "table.exits tbody",
        |t| t.contains("boom"),
    )
    .await;
    assert!(exits.contains("code 3"), "{exits}");
    browser
        .click_redrawn("main a[href='/deployments/greeter']")
        .await;

    // (f) Back to revision 1 by its button: revision 4, with revision 1's spec, runs.
    browser
        .click_redrawn("li[data-revision='1'] button.rollback")
        .await;
    wait_rolled_out(&browser, 4).await;
    assert_eq!(
        attr(&browser, "li[data-revision='4'] .cause", "data-cause").await,
        "rollback:3->1"
    );
    assert_eq!(
        text(&browser, "li[data-revision='4'] .cause").await,
        "rolled back to revision 1"
    );
    assert_eq!(text(&browser, "dl.spec dd.env").await, "GREETING=one");
    assert_eq!(text(&browser, "p.banner.failed").await, "");
    save_screenshot(&browser, "deployment-rolled-back.png").await;

    // The list sums it up.
    browser
        .click_redrawn("header.top a[href='/deployments']")
        .await;
    let row = "tr[data-deployment=greeter]";
    wait_text(
        &browser,
        "the list's row",
        &format!("{row} td.rollout"),
        |t| t == "rollback to revision 4 succeeded",
    )
    .await;
    assert_eq!(
        text(&browser, &format!("{row} td.instances")).await,
        "1/1 running"
    );

    // Removed after a confirmation: its page says so.
    browser.click_redrawn(&format!("{row} a")).await;
    browser.click_redrawn("button.remove").await;
    browser.click_redrawn("button.confirm-remove").await;
    wait_text(&browser, "the deployment removed", "p.gone", |t| {
        t == "Deployment greeter was removed."
    })
    .await;
    browser.client.clone().close().await.expect("close browser");
}
