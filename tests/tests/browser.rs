//! The web app in headless Chromium, as a new user first sees it: the leader's own node listed
//! online with its load, then a second node appearing and going lost live, without a reload.
//! Screenshots go to `<target>/screenshots/`.

use std::time::Duration;

use fantoccini::Locator;
use trellis_tests::{
    Agent, Browser, PATIENCE, Server, ServerOpts, screenshot_dir, wait_for, web_dir,
};

async fn row_text(browser: &Browser, node_id: &str) -> Option<String> {
    let row = browser
        .client
        .find(Locator::Css(&format!("tr[data-node-id='{node_id}']")))
        .await
        .ok()?;
    row.text().await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_app_shows_the_cluster_live() {
    let server = Server::start(ServerOpts {
        web_dir: Some(web_dir()),
        ..ServerOpts::default()
    })
    .await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let browser = Browser::start().await;
    browser
        .client
        .goto(&server.url("/"))
        .await
        .expect("open the web app");

    let row = wait_for(
        "the leader's row to show online with its CPU and memory",
        PATIENCE,
        || async {
            row_text(&browser, "leader")
                .await
                .filter(|t| t.contains("online") && t.contains("% of"))
        },
    )
    .await;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert!(row.contains(hostname.trim()), "{row}");
    let live = browser
        .client
        .find(Locator::Css(".live"))
        .await
        .expect("live badge")
        .text()
        .await
        .expect("text");
    assert_eq!(live, "live");
    let png = browser.client.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join("cluster.png"), png).expect("save screenshot");

    // A second node joins and is killed: the page follows through the subscription alone.
    let mut agent = Agent::start(&server.broker_url(), "field-cam", server.dir.path());
    wait_for("field-cam online in the page", PATIENCE, || async {
        row_text(&browser, "field-cam")
            .await
            .filter(|t| t.contains("online"))
    })
    .await;
    agent.proc.kill9();
    wait_for(
        "field-cam lost in the page",
        Duration::from_secs(15),
        || async {
            row_text(&browser, "field-cam")
                .await
                .filter(|t| t.contains("lost"))
        },
    )
    .await;
    let counts = browser
        .client
        .find(Locator::Css(".counts"))
        .await
        .expect("counts")
        .text()
        .await
        .expect("text");
    assert_eq!(counts, "1 of 2 online");
    let png = browser.client.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join("cluster-lost-node.png"), png).expect("save screenshot");

    // A client-side route loaded directly (deep link) renders the node page.
    browser
        .client
        .goto(&server.url("/nodes/leader"))
        .await
        .expect("open node page");
    let facts = wait_for("the node page", PATIENCE, || async {
        let t = browser
            .client
            .find(Locator::Css("dl.facts"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        t.contains("simulator").then_some(t)
    })
    .await;
    assert!(facts.contains("leader"), "{facts}");

    // Ping the node from its page: the command goes through the broker to the agent and back.
    let buttons = browser
        .client
        .find_all(Locator::Css("form.actions button"))
        .await
        .expect("buttons");
    let mut ping = None;
    for b in buttons {
        if b.text().await.expect("text") == "Ping" {
            ping = Some(b);
        }
    }
    ping.expect("a Ping button")
        .click()
        .await
        .expect("click Ping");
    let message = wait_for("the ping answer", PATIENCE, || async {
        browser
            .client
            .find(Locator::Css("p.message"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    })
    .await;
    assert!(
        message.starts_with("The node answered “pong” in"),
        "{message}"
    );
    let png = browser.client.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join("node-page.png"), png).expect("save screenshot");
    browser.client.clone().close().await.expect("close browser");
}
