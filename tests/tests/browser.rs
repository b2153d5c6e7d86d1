//! The web app in headless Chromium, as a new user first meets it: the first-start setup page,
//! then the leader's own node listed online with its load, a second node appearing and going lost
//! live without a reload, a ping from the node page, the audit log, and logging out and in again;
//! and a hardware job started, changed, refused a bad value and stopped from the node page, a
//! preset started there with its readings shown, and a job's own page with its live log and
//! readings (reached by its link and left with Back, in the same tab), and the node's pump
//! calibrations changed in place; and an experiment created from its list, its page's live
//! chart, a note, its CSV download, a node moved to another experiment in words, and the
//! database's figures and its retention rules on the experiments list; and an experiment profile
//! written in the Profiles page (checked as it is typed), saved, and run on an experiment from
//! its page through to the end, on SQLite and on Postgres.
//! Every page holds one websocket for all its live feeds. Screenshots go to
//! `<target>/screenshots/`.

use std::time::Duration;

use fantoccini::Locator;
use trellis_tests::{
    Agent, Auth, Browser, Db, LeaderCert, PATIENCE, Postgres, Server, ServerOpts, screenshot_dir,
    wait_for, web_dir,
};

async fn text_of(browser: &Browser, css: &str) -> Option<String> {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// Waits for an element (pages render after the app has asked the leader who is logged in).
async fn element(browser: &Browser, css: &str) -> fantoccini::elements::Element {
    wait_for(&format!("the element {css}"), PATIENCE, || async {
        browser.client.find(Locator::Css(css)).await.ok()
    })
    .await
}

async fn type_into(browser: &Browser, css: &str, text: &str) {
    element(browser, css)
        .await
        .send_keys(text)
        .await
        .expect("type");
}

async fn click(browser: &Browser, css: &str) {
    element(browser, css).await.click().await.expect("click");
}

/// Fills in and sends the login form, once it is shown.
async fn log_in(browser: &Browser, username: &str, password: &str) {
    element(
        browser,
        "input[name=password][autocomplete=current-password]",
    )
    .await;
    type_into(browser, "input[name=username]", username).await;
    type_into(browser, "input[name=password]", password).await;
    click(browser, "form.auth-form button").await;
}

async fn save_screenshot(browser: &Browser, name: &str) {
    let png = browser.client.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(name), png).expect("save screenshot");
}

async fn row_text(browser: &Browser, node_id: &str) -> Option<String> {
    let row = browser
        .client
        .find(Locator::Css(&format!("tr[data-node-id='{node_id}']")))
        .await
        .ok()?;
    row.text().await.ok()
}

/// The body of `href`, fetched by the page (with its cookie, as its download link would be).
async fn fetch_in_page(browser: &Browser, href: &str) -> String {
    browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(r => r.text()).then(done, e => done('failed: ' + e));",
            vec![serde_json::json!(href)],
        )
        .await
        .expect("fetch in the page")
        .as_str()
        .expect("the answer as text")
        .to_owned()
}

/// Chromedriver's own command to run a Chrome DevTools Protocol method (WebDriver has none
/// that runs a script before the page's own). `reqwest` re-exports the `url` and `http` types
/// fantoccini's trait names.
#[derive(Debug)]
struct Cdp(&'static str, serde_json::Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (reqwest::Method, Option<String>) {
        let body = serde_json::json!({"cmd": self.0, "params": self.1});
        (reqwest::Method::POST, Some(body.to_string()))
    }
}

/// From now on, every page the browser loads counts the websockets it opens in
/// `window.__trellisSockets`, counted before the page's own scripts run.
async fn count_websockets(browser: &Browser) {
    let source = "(() => {
        const Real = window.WebSocket;
        window.__trellisSockets = 0;
        window.WebSocket = function (...args) { window.__trellisSockets++; return new Real(...args); };
        window.WebSocket.prototype = Real.prototype;
    })();";
    browser
        .client
        .issue_cmd(Cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            serde_json::json!({ "source": source }),
        ))
        .await
        .expect("add the websocket counter");
}

/// How many websockets the current page has opened.
async fn websockets_opened(browser: &Browser) -> u64 {
    browser
        .client
        .execute("return window.__trellisSockets", vec![])
        .await
        .expect("read the websocket count")
        .as_u64()
        .expect("a websocket count")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_app_shows_the_cluster_live() {
    let mut server = Server::start(ServerOpts {
        web_dir: Some(web_dir()),
        bootstrap_admin: false,
        ..ServerOpts::default()
    })
    .await;
    let browser = Browser::start().await;
    count_websockets(&browser).await;
    browser
        .client
        .goto(&server.url("/"))
        .await
        .expect("open the web app");

    // First start: the setup page, and nothing else.
    let heading = wait_for("the setup page", PATIENCE, || async {
        let t = text_of(&browser, "h1").await?;
        (t == "Welcome to Trellis").then_some(t)
    })
    .await;
    assert_eq!(heading, "Welcome to Trellis");
    let (status, body) = server
        .graphql_as(&Auth::Anonymous, "{ nodes { id } }", serde_json::json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    type_into(&browser, "input[name=password]", "first-admin-password").await;
    type_into(&browser, "input[name=confirm]", "first-admin-password").await;
    save_screenshot(&browser, "setup.png").await;
    click(&browser, "form.auth-form button").await;

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

    // The harness logs in too, to approve the next node.
    server.admin_cookie = Some(
        server
            .login("admin", "first-admin-password")
            .await
            .expect("login"),
    );

    // A second node asks to join; the operator approves it on the page; it comes online and is
    // then killed: the page follows through the subscription alone.
    let token = server.join_token("field").await;
    let mut agent = Agent::start_with_args(
        &server.broker_url(),
        "field-cam",
        server.dir.path(),
        Some(&token),
        &["--docker-endpoint", "tcp://127.0.0.1:2375"],
    );
    let pending = wait_for(
        "field-cam waiting to join in the page",
        PATIENCE,
        || async { text_of(&browser, "tr[data-pending-id='field-cam']").await },
    )
    .await;
    assert!(pending.contains("Approve"), "{pending}");
    save_screenshot(&browser, "pending-node.png").await;
    click(&browser, "tr[data-pending-id='field-cam'] button.approve").await;
    wait_for("field-cam online in the page", PATIENCE, || async {
        row_text(&browser, "field-cam")
            .await
            .filter(|t| t.contains("online"))
    })
    .await;
    // An admin allows plain TCP to its Docker engine: the list marks the node.
    let r = server
        .graphql(
            "mutation { setNodeDockerInsecure(id: \"field-cam\", insecure: true) { id } }",
            serde_json::json!({}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    wait_for(
        "field-cam marked insecure in the page",
        PATIENCE,
        || async {
            row_text(&browser, "field-cam")
                .await
                .filter(|t| t.contains("insecure Docker"))
        },
    )
    .await;
    save_screenshot(&browser, "cluster-insecure-docker.png").await;
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
    // All of that came through one socket, opened once.
    assert_eq!(websockets_opened(&browser).await, 1);

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
    // The leader's own Docker engine, through its socket, from the same page.
    assert!(
        facts.contains("unix:///var/run/docker.sock local socket"),
        "{facts}"
    );
    click(&browser, "button.check-docker").await;
    let message = wait_for("the Docker engine's answer", PATIENCE, || async {
        let t = text_of(&browser, "p.message").await?;
        t.starts_with("Docker ").then_some(t)
    })
    .await;
    assert!(message.contains("over UNIX"), "{message}");
    let png = browser.client.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join("node-page.png"), png).expect("save screenshot");

    // The audit log shows what was done, live.
    browser
        .client
        .goto(&server.url("/audit"))
        .await
        .expect("open the audit log");
    let audit = wait_for(
        "the audit log with the setup and the ping",
        PATIENCE,
        || async {
            let t = text_of(&browser, "table.audit").await?;
            (t.contains("setup") && t.contains("pingNode")).then_some(t)
        },
    )
    .await;
    assert!(audit.contains("user:admin"), "{audit}");
    // The node feed and the audit feed share the page's one socket.
    assert_eq!(websockets_opened(&browser).await, 1);
    save_screenshot(&browser, "audit.png").await;

    // Access: create an API token on the page, use it, revoke it on the page.
    browser
        .client
        .goto(&server.url("/access"))
        .await
        .expect("open the access page");
    type_into(&browser, "input[name=token-name]", "ci-bot").await;
    click(&browser, "form.token-form button").await;
    let shown = wait_for("the new token", PATIENCE, || async {
        text_of(&browser, "p.message")
            .await
            .filter(|t| t.contains("trellis_t_"))
    })
    .await;
    let token = shown.split_whitespace().last().expect("token").to_owned();
    let (status, r) = server
        .graphql_as(
            &Auth::Bearer(token.clone()),
            "{ nodes { id } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert!(
        r["data"]["nodes"].as_array().is_some_and(|n| !n.is_empty()),
        "{r}"
    );
    type_into(&browser, "input[name=new-username]", "viewer1").await;
    type_into(&browser, "input[name=new-password]", "viewer1-password").await;
    click(&browser, "form.user-form button").await;
    wait_for("the new user listed", PATIENCE, || async {
        text_of(&browser, "tr[data-username='viewer1']").await
    })
    .await;
    save_screenshot(&browser, "access.png").await;
    click(&browser, "tr[data-token-name='ci-bot'] button.revoke").await;
    wait_for("the token to be refused", PATIENCE, || async {
        let (status, _) = server
            .graphql_as(
                &Auth::Bearer(token.clone()),
                "{ nodes { id } }",
                serde_json::json!({}),
            )
            .await;
        (status == 401).then_some(())
    })
    .await;

    // Log out, fail a login, log in again.
    click(&browser, "button.logout").await;
    log_in(&browser, "admin", "not-the-password").await;
    let error = wait_for("the login error", PATIENCE, || async {
        text_of(&browser, "p.error").await
    })
    .await;
    assert_eq!(error, "wrong username or password");
    save_screenshot(&browser, "login-failed.png").await;
    browser.client.refresh().await.expect("reload");
    log_in(&browser, "admin", "first-admin-password").await;
    let user = wait_for("the app after logging in", PATIENCE, || async {
        text_of(&browser, "header .user").await
    })
    .await;
    assert_eq!(user, "admin (admin)");
    browser.client.clone().close().await.expect("close browser");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_app_works_over_https() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, _) = LeaderCert::issue(certs.path());
    let server = Server::start(ServerOpts {
        web_dir: Some(web_dir()),
        tls: Some(cert),
        ..ServerOpts::default()
    })
    .await;
    // The test's Chromium does not know the test CA; it is told to go on past that.
    let browser = Browser::start_with(&["--ignore-certificate-errors"]).await;
    browser
        .client
        .goto(&server.url("/"))
        .await
        .expect("open the web app");
    log_in(&browser, "admin", trellis_tests::ADMIN_PASSWORD).await;
    // The row goes online and the live badge shows: the subscription runs over wss://.
    wait_for("the leader's row online over HTTPS", PATIENCE, || async {
        row_text(&browser, "leader")
            .await
            .filter(|t| t.contains("online"))
    })
    .await;
    wait_for("the live badge", PATIENCE, || async {
        text_of(&browser, ".live").await.filter(|t| t == "live")
    })
    .await;
    let url = browser.client.current_url().await.expect("url");
    assert_eq!(url.scheme(), "https");
    let cookies = browser.client.get_all_cookies().await.expect("cookies");
    let session = cookies
        .iter()
        .find(|c| c.name() == "trellis_session")
        .expect("a session cookie");
    assert_eq!(session.secure(), Some(true), "session cookie not Secure");
    assert_eq!(session.http_only(), Some(true));
    // "Add a node" gives the command for MQTT over TLS.
    click(&browser, "button.add-node").await;
    let command = wait_for("the join command", PATIENCE, || async {
        text_of(&browser, ".join-command").await
    })
    .await;
    assert!(
        command.contains(&format!(
            "--broker-url mqtts://localhost:{} --broker-ca /etc/trellis/ca.pem --join-token trellis_j_",
            server.mqtt_port
        )),
        "{command}"
    );
    save_screenshot(&browser, "cluster-https.png").await;
}

/// The `data-state` of job `name`'s card on the node page, once it is shown.
async fn job_state(browser: &Browser, name: &str) -> Option<String> {
    browser
        .client
        .find(Locator::Css(&format!("article[data-job-name='{name}']")))
        .await
        .ok()?
        .attr("data-state")
        .await
        .ok()?
}

/// Replaces what an input holds with `text`.
async fn retype(browser: &Browser, css: &str, text: &str) {
    let input = element(browser, css).await;
    input.clear().await.expect("clear");
    input.send_keys(text).await.expect("type");
}

/// The leader's own node runs a hardware job from its page (the local agent drives the
/// simulator): started from the form with decimals typed key by key (`7.5`, `1e3`), a live
/// setting changed inline to `12.5` and the agent's echo shown, `-0.04` refused in words next to
/// the field, the field emptied and an empty value refused, then stopped.
#[tokio::test(flavor = "multi_thread")]
async fn the_node_page_runs_a_job() {
    let server = Server::start(ServerOpts {
        web_dir: Some(web_dir()),
        ..ServerOpts::default()
    })
    .await;
    let browser = Browser::start().await;
    browser
        .client
        .goto(&server.url("/nodes/leader"))
        .await
        .expect("open the node page");
    log_in(&browser, "admin", trellis_tests::ADMIN_PASSWORD).await;

    // The form is built from the kinds the node's agent offers.
    element(
        &browser,
        "form.start-job select[name=start-from] option[value='kind:pwm']",
    )
    .await;
    element(&browser, "form.start-job select[name=start-from]")
        .await
        .select_by_value("kind:pwm")
        .await
        .expect("choose pwm");
    type_into(&browser, "form.start-job input[name=job-name]", "heater").await;
    // Typed a key at a time, as a person does: a number input reads as empty while it holds
    // `7.` or `1e`, and the field must not be rewritten from that half-typed number.
    retype(&browser, "form.start-job input[name=setting-duty]", "7.5").await;
    retype(
        &browser,
        "form.start-job input[name=setting-frequency]",
        "1e3",
    )
    .await;
    click(&browser, "form.start-job button.start").await;
    wait_for("heater READY on the page", PATIENCE, || async {
        job_state(&browser, "heater").await.filter(|s| s == "READY")
    })
    .await;
    let card = "article[data-job-name='heater']";
    let duty = format!("{card} tr[data-setting='duty']");
    let shown = text_of(&browser, &format!("{duty} td.value")).await;
    assert_eq!(shown.as_deref(), Some("7.5 %"));
    let frequency = text_of(
        &browser,
        &format!("{card} tr[data-setting='frequency'] td.value"),
    )
    .await;
    assert_eq!(frequency.as_deref(), Some("1000.0 Hz"));
    save_screenshot(&browser, "job-started.png").await;

    // A live setting, changed in place to a decimal: the row shows what the agent echoed.
    retype(&browser, &format!("{duty} input"), "12.5").await;
    click(&browser, &format!("{duty} button.save")).await;
    let echoed = wait_for("the echoed duty", PATIENCE, || async {
        text_of(&browser, &format!("{duty} p.message")).await
    })
    .await;
    assert_eq!(echoed, "duty is now 12.5 %.");
    // The row follows with the job's next event (gathered for up to a second).
    wait_for("the row to show 12.5 %", PATIENCE, || async {
        text_of(&browser, &format!("{duty} td.value"))
            .await
            .filter(|v| v == "12.5 %")
    })
    .await;

    // Out of range: refused next to the field, in the rule's words, the value as typed; the
    // job keeps 12.5.
    retype(&browser, &format!("{duty} input"), "-0.04").await;
    click(&browser, &format!("{duty} button.save")).await;
    let refused = wait_for("the refusal", PATIENCE, || async {
        text_of(&browser, &format!("{duty} p.error")).await
    })
    .await;
    assert_eq!(
        refused,
        "setting duty = -0.04 refused: must be between 0 and 100 %"
    );
    let shown = text_of(&browser, &format!("{duty} td.value")).await;
    assert_eq!(shown.as_deref(), Some("12.5 %"));
    save_screenshot(&browser, "job-refused.png").await;

    // Emptied key by key, the field stays empty (not refilled with the value in force), and an
    // empty value is refused in words.
    let input = element(&browser, &format!("{duty} input")).await;
    input
        .send_keys(&"\u{e003}".repeat(8))
        .await
        .expect("backspace");
    let left = input.prop("value").await.expect("read the duty input");
    assert_eq!(left.as_deref(), Some(""));
    click(&browser, &format!("{duty} button.save")).await;
    wait_for("the empty value refused", PATIENCE, || async {
        text_of(&browser, &format!("{duty} p.error"))
            .await
            .filter(|t| t.ends_with("refused: must be a number"))
    })
    .await;

    click(&browser, "article[data-job-name='heater'] button.stop").await;
    wait_for("heater STOPPED on the page", PATIENCE, || async {
        job_state(&browser, "heater")
            .await
            .filter(|s| s == "STOPPED")
    })
    .await;
    save_screenshot(&browser, "job-stopped.png").await;
    browser.client.clone().close().await.expect("close browser");
}

/// A number a page shows ("498.7"), if it is one.
fn number(shown: &str) -> Option<f64> {
    shown.trim().parse().ok()
}

/// The `stirring` preset started from the leader's own node page (its local agent drives the
/// simulator's stirrer): the form shows the preset's values in its kind's inputs, the job's card
/// shows its latest readings and follows them, and its target changes inline with the agent's
/// echo shown.
#[tokio::test(flavor = "multi_thread")]
async fn the_node_page_starts_a_preset() {
    let server = Server::start(ServerOpts {
        web_dir: Some(web_dir()),
        ..ServerOpts::default()
    })
    .await;
    let browser = Browser::start().await;
    browser
        .client
        .goto(&server.url("/nodes/leader"))
        .await
        .expect("open the node page");
    log_in(&browser, "admin", trellis_tests::ADMIN_PASSWORD).await;

    // The presets the node offers are in the form, beside its kinds.
    element(
        &browser,
        "form.start-job select[name=start-from] option[value='preset:stirring']",
    )
    .await;
    element(&browser, "form.start-job select[name=start-from]")
        .await
        .select_by_value("preset:stirring")
        .await
        .expect("choose the stirring preset");
    // Its kind's (pid) inputs, filled with the preset's values rather than the kind's defaults.
    let pin = element(&browser, "form.start-job input[name=setting-pin]")
        .await
        .prop("value")
        .await
        .expect("read the pin input");
    assert_eq!(pin.as_deref(), Some("13"));
    let placeholder = element(&browser, "form.start-job input[name=job-name]")
        .await
        .attr("placeholder")
        .await
        .expect("read the name's placeholder");
    assert_eq!(placeholder.as_deref(), Some("stirring"));
    // The target stays "this node".
    click(&browser, "form.start-job button.start").await;
    wait_for("stirring READY on the page", PATIENCE, || async {
        job_state(&browser, "stirring")
            .await
            .filter(|s| s == "READY")
    })
    .await;
    let said = text_of(&browser, "section.jobs > p.message").await;
    assert_eq!(said.as_deref(), Some("Started stirring: ready."));

    // Its readings: the measured speed and the PWM output, as numbers, following the job.
    let card = "article[data-job-name='stirring']";
    let measured = format!("{card} table.values tr[data-value='rpm'] td");
    let first = wait_for("the measured rpm on the card", PATIENCE, || async {
        text_of(&browser, &measured).await.and_then(|t| number(&t))
    })
    .await;
    let output = text_of(
        &browser,
        &format!("{card} table.values tr[data-value='output'] td"),
    )
    .await;
    assert!(
        output.as_deref().and_then(number).is_some(),
        "output shown as {output:?}"
    );
    wait_for("the measured rpm to change", PATIENCE, || async {
        text_of(&browser, &measured)
            .await
            .and_then(|t| number(&t))
            .filter(|now| *now != first)
    })
    .await;

    // The preset's kind calls its speed `target`: changed in place, the agent's echo shown.
    let target = format!("{card} tr[data-setting='target']");
    let shown = text_of(&browser, &format!("{target} td.value")).await;
    assert_eq!(shown.as_deref(), Some("500.0"));
    retype(&browser, &format!("{target} input"), "512.5").await;
    click(&browser, &format!("{target} button.save")).await;
    let echoed = wait_for("the echoed target", PATIENCE, || async {
        text_of(&browser, &format!("{target} p.message")).await
    })
    .await;
    assert_eq!(echoed, "target is now 512.5.");
    wait_for("the row to show 512.5", PATIENCE, || async {
        text_of(&browser, &format!("{target} td.value"))
            .await
            .filter(|v| v == "512.5")
    })
    .await;
    save_screenshot(&browser, "job-preset.png").await;

    // A start on every node a selector names: a label written wrong is refused in words before
    // anything is sent; all online nodes (here the leader's own) each say what they did.
    let form = "form.start-job";
    element(&browser, &format!("{form} select[name=start-from]"))
        .await
        .select_by_value("preset:led_intensity")
        .await
        .expect("choose the led_intensity preset");
    let target_select = element(&browser, &format!("{form} select[name=target]")).await;
    target_select
        .select_by_value("label")
        .await
        .expect("choose nodes with a label");
    type_into(
        &browser,
        &format!("{form} input[name=target-label]"),
        "room",
    )
    .await;
    click(&browser, &format!("{form} button.start")).await;
    let refused = wait_for("the label refused", PATIENCE, || async {
        text_of(&browser, "section.jobs > p.error:not(.hidden)").await
    })
    .await;
    assert!(refused.contains("key=value"), "{refused}");
    target_select
        .select_by_value("all")
        .await
        .expect("choose all online nodes");
    click(&browser, &format!("{form} button.start")).await;
    let leader = wait_for("the leader's start result", PATIENCE, || async {
        text_of(&browser, "ul.start-results li[data-node-id='leader']").await
    })
    .await;
    assert!(
        leader.ends_with(": started led_intensity: ready."),
        "{leader}"
    );
    let said = text_of(&browser, "section.jobs > p.message").await;
    assert_eq!(said.as_deref(), Some("Started on 1 of 1 nodes."));
    wait_for("led_intensity READY on the page", PATIENCE, || async {
        job_state(&browser, "led_intensity")
            .await
            .filter(|s| s == "READY")
    })
    .await;
    browser
        .client
        .execute(
            "document.querySelector('form.start-job').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the form");
    save_screenshot(&browser, "job-preset-form.png").await;
    browser.client.clone().close().await.expect("close browser");
}

/// The numbers of the `line N` rows a job page's log shows, in order.
async fn log_numbers(browser: &Browser) -> Vec<u64> {
    let Ok(rows) = browser
        .client
        .find_all(Locator::Css("ol.log li .text"))
        .await
    else {
        return Vec::new();
    };
    let mut numbers = Vec::new();
    for row in rows {
        if let Some(n) = row
            .text()
            .await
            .ok()
            .and_then(|t| t.strip_prefix("line ")?.parse().ok())
        {
            numbers.push(n);
        }
    }
    numbers
}

/// A program's output on its job's page, live: an `exec` job started through the API on the
/// leader's own node is opened from its card's name; the log shows its first lines with their
/// time and stream, and then new lines as the program prints them, without a reload; stopped
/// from the page, its state follows and its log stops growing. A measuring job's page counts its
/// readings; and the node page's Pumps section changes a pump's calibration, or says why not.
#[tokio::test(flavor = "multi_thread")]
async fn the_job_page_streams_its_log() {
    let server = Server::start(ServerOpts {
        web_dir: Some(web_dir()),
        ..ServerOpts::default()
    })
    .await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    wait_for("the leader's node to offer exec", PATIENCE, || async {
        let r = server
            .graphql(
                "{ jobKinds(nodeId: \"leader\") { kind } }",
                serde_json::json!({}),
            )
            .await;
        r["data"]["jobKinds"]
            .as_array()?
            .iter()
            .any(|k| k["kind"] == "exec")
            .then_some(())
    })
    .await;
    let command = "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.2; done";
    let r = server
        .graphql(
            "mutation($s: JSON) { startJob(nodeId: \"leader\", kind: \"exec\", name: \"ticker\", settings: $s) { state } }",
            serde_json::json!({"s": {"command": command}}),
        )
        .await;
    assert_eq!(r["data"]["startJob"]["state"], "READY", "{r}");

    let browser = Browser::start().await;
    browser
        .client
        .goto(&server.url("/nodes/leader"))
        .await
        .expect("open the node page");
    log_in(&browser, "admin", trellis_tests::ADMIN_PASSWORD).await;
    click(&browser, "article[data-job-name='ticker'] .job-name a").await;
    // A mark in the page: still there later means the page was not loaded again.
    browser
        .client
        .execute("window.__sameTab = true", vec![])
        .await
        .expect("mark the tab");
    let url = browser.client.current_url().await.expect("url");
    assert_eq!(url.path(), "/nodes/leader/jobs/ticker");
    // The leader's node is named after its host.
    let heading = text_of(&browser, "h1").await.expect("a heading");
    assert!(heading.starts_with("ticker job on "), "{heading}");

    // The first lines, from the start of the program, each with its time and stream.
    let first = wait_for("line 0 and line 1 in the log", PATIENCE, || async {
        let n = log_numbers(&browser).await;
        n.starts_with(&[0, 1]).then_some(n)
    })
    .await;
    // The agent's own lines ("ready: ...") come first, marked as the agent's.
    let agent = text_of(&browser, "ol.log li.agent")
        .await
        .expect("an agent row");
    assert!(
        agent.contains("agent") && agent.contains("ready: command="),
        "{agent}"
    );
    let row = text_of(&browser, "ol.log li.out").await.expect("a log row");
    let words = row.split_whitespace().collect::<Vec<_>>();
    let [time, "out", "line", "0"] = words[..] else {
        panic!("time, stream and text, not {row:?}");
    };
    assert!(
        time.len() == 8
            && time
                .split(':')
                .all(|n| n.len() == 2 && n.parse::<u8>().is_ok()),
        "HH:MM:SS, not {time:?}"
    );
    // Then lines appended as the program prints them, in order, with none missing, past what
    // the log's box holds: it keeps its reader at the end.
    let last = *first.last().expect("a number");
    let later = wait_for("later lines to arrive live", PATIENCE, || async {
        let n = log_numbers(&browser).await;
        (n.last().is_some_and(|l| *l >= last.max(40))).then_some(n)
    })
    .await;
    let expected: Vec<u64> = (0..later.len() as u64).collect();
    assert_eq!(later, expected, "every line once, in order");
    let at_end = browser
        .client
        .execute(
            "const b = document.querySelector('ol.log'); \
             return b.scrollHeight > b.clientHeight && b.scrollTop + b.clientHeight + 30 >= b.scrollHeight",
            vec![],
        )
        .await
        .expect("read the log's scroll");
    assert_eq!(at_end, serde_json::json!(true), "the log follows its end");
    let same_tab = browser
        .client
        .execute("return window.__sameTab === true", vec![])
        .await
        .expect("read the mark");
    assert_eq!(same_tab, serde_json::json!(true), "the page was reloaded");
    // The card, as on the node page.
    assert_eq!(
        job_state(&browser, "ticker").await.as_deref(),
        Some("READY")
    );
    let shown = text_of(
        &browser,
        "article[data-job-name='ticker'] tr[data-setting='command'] td.value",
    )
    .await;
    assert_eq!(shown.as_deref(), Some(command));
    save_screenshot(&browser, "job-page.png").await;

    // Stopped from its page: the state follows, and the log stops growing.
    click(&browser, "article[data-job-name='ticker'] button.stop").await;
    wait_for("ticker STOPPED on its page", PATIENCE, || async {
        job_state(&browser, "ticker")
            .await
            .filter(|s| s == "STOPPED")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = log_numbers(&browser).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(log_numbers(&browser).await, stopped, "lines after the stop");
    browser
        .client
        .execute("document.querySelector('ol.log').scrollIntoView()", vec![])
        .await
        .expect("scroll to the log");
    save_screenshot(&browser, "job-page-stopped.png").await;

    // The job page's name is marked as the page shown; Back shows the node page again, in the
    // same tab (no reload), with its link to the job no longer marked.
    let here = element(&browser, "article[data-job-name='ticker'] .job-name a")
        .await
        .attr("aria-current")
        .await
        .expect("read aria-current");
    assert_eq!(here.as_deref(), Some("page"));
    browser.client.back().await.expect("go back");
    element(&browser, "section.pumps").await;
    assert_eq!(
        browser.client.current_url().await.expect("url").path(),
        "/nodes/leader"
    );
    let link = element(&browser, "article[data-job-name='ticker'] .job-name a").await;
    assert_eq!(
        link.attr("aria-current").await.expect("read aria-current"),
        None
    );
    let same_tab = browser
        .client
        .execute("return window.__sameTab === true", vec![])
        .await
        .expect("read the mark");
    assert_eq!(same_tab, serde_json::json!(true), "Back reloaded the page");

    // A job that measures: its page counts its newest readings by metric, with the latest.
    let r = server
        .graphql(
            "mutation { startJob(nodeId: \"leader\", preset: \"stirring\") { state } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r["data"]["startJob"]["state"], "READY", "{r}");
    browser
        .client
        .goto(&server.url("/nodes/leader/jobs/stirring"))
        .await
        .expect("open the stirring job's page");
    let rpm = "table.readings tr[data-metric='rpm']";
    wait_for("the rpm readings counted", PATIENCE, || async {
        let latest = text_of(&browser, &format!("{rpm} td.value")).await?;
        let count = text_of(&browser, &format!("{rpm} td:last-child")).await?;
        let value = latest.strip_suffix(" rpm").and_then(number);
        (value.is_some() && count.parse::<u32>().ok()? >= 2).then_some(())
    })
    .await;
    browser
        .client
        .execute(
            "document.querySelector('table.readings').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the readings");
    save_screenshot(&browser, "job-page-readings.png").await;

    // The node page's Pumps section: the simulator's media pump, changed in place; a pin that
    // another pump has is refused by the node, in its words, next to the field.
    browser
        .client
        .goto(&server.url("/nodes/leader"))
        .await
        .expect("open the node page");
    let media = "section.pumps tr[data-pump='media']";
    let shown = |what: &'static str| {
        let browser = &browser;
        async move {
            text_of(browser, &format!("{media} td.{what}"))
                .await
                .unwrap_or_default()
        }
    };
    wait_for("the media pump on pin 23 at 0.5 ml/s", PATIENCE, || async {
        (shown("pin").await == "23" && shown("rate").await == "0.5").then_some(())
    })
    .await;
    retype(
        &browser,
        &format!("{media} input[name=ml-per-second]"),
        "0.6",
    )
    .await;
    click(&browser, &format!("{media} button.save")).await;
    let said = wait_for("the new rate taken", PATIENCE, || async {
        text_of(&browser, &format!("{media} p.message")).await
    })
    .await;
    assert_eq!(said, "media is now on pin 23 at 0.6 ml/s.");
    assert_eq!(shown("rate").await, "0.6");
    retype(&browser, &format!("{media} input[name=pin]"), "24").await;
    click(&browser, &format!("{media} button.save")).await;
    let refused = wait_for("the pin refused", PATIENCE, || async {
        text_of(&browser, &format!("{media} p.error")).await
    })
    .await;
    assert!(refused.contains("pin 24 is pump waste's"), "{refused}");
    assert_eq!(shown("pin").await, "23");
    browser
        .client
        .execute(
            "document.querySelector('section.pumps').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the pumps");
    save_screenshot(&browser, "node-pumps.png").await;
    // The leader keeps what the node published: a fresh page shows 0.6 too.
    browser
        .client
        .refresh()
        .await
        .expect("reload the node page");
    wait_for("0.6 ml/s after a reload", PATIENCE, || async {
        (shown("rate").await == "0.6").then_some(())
    })
    .await;
    browser.client.clone().close().await.expect("close browser");
}

/// How many points the first line of the chart of `metric` draws (its path's segments).
async fn points_drawn(browser: &Browser, metric: &str) -> usize {
    let d = browser
        .client
        .find(Locator::Css(&format!(
            "figure.chart[data-metric='{metric}'] path.line"
        )))
        .await
        .ok();
    match d {
        Some(path) => path
            .attr("d")
            .await
            .ok()
            .flatten()
            .map_or(0, |d| d.matches(['M', 'L']).count()),
        None => 0,
    }
}

/// Creates experiment `name` with node `node` (and `description`, if any) from the form on the
/// experiments page, and returns its id once the new experiment's page shows its name.
async fn create_experiment_in_page(
    browser: &Browser,
    name: &str,
    description: Option<&str>,
    node: &str,
) -> String {
    type_into(browser, "form.create-experiment input[name=name]", name).await;
    if let Some(d) = description {
        type_into(
            browser,
            "form.create-experiment textarea[name=description]",
            d,
        )
        .await;
    }
    click(
        browser,
        &format!("form.create-experiment input[name=node][value={node}]"),
    )
    .await;
    click(browser, "form.create-experiment button.create").await;
    wait_for("the new experiment's page", PATIENCE, || async {
        text_of(browser, ".experiment-head h1 .name")
            .await
            .filter(|n| n == name)
    })
    .await;
    let url = browser.client.current_url().await.expect("url");
    url.path()
        .strip_prefix("/experiments/")
        .expect("an experiment's path")
        .to_owned()
}

/// An experiment made and watched in the web app: created from the list page with a node (a
/// sped-up simulator, so `od_reading` every 60 s reads every 50 ms), its page's chart drawn from
/// the stored series and then growing live, its legend naming the node, the cursor's readout
/// showing a value, a note added and listed (and marked on the time axis), the readings CSV
/// downloaded with the session cookie; then a second experiment refused the node in words and
/// moving it on request, and the node page linking to the experiment it is in; last, the list
/// page's storage section counting the readings, and a retention rule set, refused and applied.
#[tokio::test(flavor = "multi_thread")]
async fn the_experiment_page_charts_live_readings() {
    let server = Server::start(ServerOpts {
        web_dir: Some(web_dir()),
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let _agent = server.join_agent_with("ra", &["--sim-speed", "1200"]).await;
    let node = server.wait_state("ra", "ONLINE", PATIENCE).await;
    // The node's name is its host's (the page shows names, links by id).
    let node_name = node["name"].as_str().expect("the node's name").to_owned();
    wait_for("the node's presets", PATIENCE, || async {
        let r = server
            .graphql(
                "query { jobPresets(nodeId: \"ra\") { name } }",
                serde_json::json!({}),
            )
            .await;
        r["data"]["jobPresets"]
            .as_array()?
            .iter()
            .any(|p| p["name"] == "od_reading")
            .then_some(())
    })
    .await;
    let browser = Browser::start().await;
    browser
        .client
        .goto(&server.url("/experiments"))
        .await
        .expect("open the experiments page");
    log_in(&browser, "admin", trellis_tests::ADMIN_PASSWORD).await;

    // Created with the node; the page of the new experiment follows.
    let id = create_experiment_in_page(&browser, "growth 1", Some("OD of a sped-up culture"), "ra")
        .await;
    wait_for("the node in its list", PATIENCE, || async {
        text_of(&browser, "ul.experiment-node-list li[data-node-id=ra] a")
            .await
            .filter(|t| *t == node_name)
    })
    .await;

    // The job takes the node's experiment; its readings make a chart, which then grows live.
    let started = server
        .graphql(
            "mutation { startJob(nodeId: \"ra\", preset: \"od_reading\", settings: {interval: 60}) { state experiment { id } } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(started["data"]["startJob"]["state"], "READY", "{started}");
    assert_eq!(started["data"]["startJob"]["experiment"]["id"], id.as_str());
    wait_for("the job listed with its state", PATIENCE, || async {
        element(
            &browser,
            "table.experiment-jobs tr[data-job='ra/od_reading']",
        )
        .await
        .attr("data-state")
        .await
        .ok()
        .flatten()
        .filter(|s| s == "READY")
    })
    .await;
    let metric = wait_for("a chart", PATIENCE, || async {
        browser
            .client
            .find(Locator::Css("figure.chart"))
            .await
            .ok()?
            .attr("data-metric")
            .await
            .ok()?
    })
    .await;
    let first = wait_for("a line with points", PATIENCE, || async {
        let n = points_drawn(&browser, &metric).await;
        (n >= 3).then_some(n)
    })
    .await;
    wait_for("the line to grow live", PATIENCE, || async {
        let n = points_drawn(&browser, &metric).await;
        (n >= first + 10).then_some(())
    })
    .await;
    let chart = format!("figure.chart[data-metric='{metric}']");
    // The legend is redrawn with each frame's latest values: read until a read lands.
    let legend = wait_for("the legend", PATIENCE, || async {
        text_of(&browser, &format!("{chart} ul.legend li")).await
    })
    .await;
    assert!(
        legend.starts_with(&format!("{node_name} od_reading")),
        "legend {legend:?}"
    );
    // The time axis has labelled ticks, the value axis too. (Asked again until read: live
    // frames redraw the axes, and an element found just before a redraw is gone when read.)
    for axis in ["time", "value"] {
        wait_for("labelled ticks on the axis", PATIENCE, || async {
            text_of(&browser, &format!("{chart} text.tick.{axis}"))
                .await
                .filter(|t| !t.is_empty())
        })
        .await;
    }

    // The cursor near the right edge (the newest readings): a value for the node.
    let svg = element(&browser, &format!("{chart} svg")).await;
    let width = svg.rectangle().await.expect("the chart's size").2;
    use fantoccini::actions::{InputSource, MouseActions, PointerAction};
    let hover = MouseActions::new("mouse".into()).then(PointerAction::MoveToElement {
        element: svg.clone(),
        duration: None,
        x: (width / 2.0 - 30.0).floor(),
        y: 0.0,
    });
    browser
        .client
        .perform_actions(hover)
        .await
        .expect("move the pointer over the chart");
    let (readout, value) = wait_for("the cursor's readout", PATIENCE, || async {
        let row = text_of(&browser, &format!("{chart} .readout .row")).await?;
        let value = text_of(&browser, &format!("{chart} .readout .row .value"))
            .await
            .and_then(|v| v.split_whitespace().next().and_then(number))?;
        Some((row, value))
    })
    .await;
    assert!(
        readout.starts_with(&format!("{node_name} od_reading")) && value.is_finite(),
        "readout {readout:?}"
    );
    assert!(
        browser
            .client
            .find(Locator::Css(&format!("{chart} line.cursor")))
            .await
            .is_ok()
    );
    save_screenshot(&browser, "experiment-hover.png").await;

    // A note, listed and marked on the time axis.
    type_into(
        &browser,
        "form.add-note textarea[name=note]",
        "inoculated at 37 °C",
    )
    .await;
    click(&browser, "form.add-note button.add-note").await;
    wait_for("the note listed", PATIENCE, || async {
        text_of(&browser, "ol.notes li p.note-text")
            .await
            .filter(|t| t == "inoculated at 37 °C")
    })
    .await;
    element(&browser, &format!("{chart} .mark.note")).await;

    // The readings CSV, fetched by its link with the page's cookie.
    let href = element(&browser, "a.download[data-export=readings]")
        .await
        .attr("href")
        .await
        .expect("read the link")
        .expect("a link");
    assert_eq!(href, format!("/export/readings.csv?experiment={id}"));
    let csv = fetch_in_page(&browser, &href).await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("time,node_time,node,job,metric,value,unit,experiment")
    );
    let rows = lines.collect::<Vec<_>>();
    assert!(
        rows.len() >= 10 && rows.iter().all(|r| r.contains(",ra,od_reading,")),
        "{} rows, first {:?}",
        rows.len(),
        rows.first()
    );
    // Everything there is (the experiment is younger than the hour shown so far): the buckets
    // are loaded again over that range, and the line goes on growing.
    click(&browser, "div.range-picker button[data-range=all]").await;
    let all = wait_for("the line over everything", PATIENCE, || async {
        let n = points_drawn(&browser, &metric).await;
        (n >= 3).then_some(n)
    })
    .await;
    wait_for("the line to grow again", PATIENCE, || async {
        (points_drawn(&browser, &metric).await > all).then_some(())
    })
    .await;
    browser
        .client
        .execute(
            "document.querySelector('section.charts').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the charts");
    save_screenshot(&browser, "experiment.png").await;

    // A second experiment wants the node: refused in words, then moved on request.
    browser
        .client
        .goto(&server.url("/experiments"))
        .await
        .expect("open the experiments page");
    let said = wait_for("the node's box saying where it is", PATIENCE, || async {
        text_of(&browser, "form.create-experiment label.node-choice")
            .await
            .filter(|t| t.contains("growth 1"))
    })
    .await;
    assert_eq!(said, format!("{node_name} (in “growth 1”)"));
    type_into(
        &browser,
        "form.create-experiment input[name=name]",
        "growth 2",
    )
    .await;
    click(
        &browser,
        "form.create-experiment input[name=node][value=ra]",
    )
    .await;
    click(&browser, "form.create-experiment button.create").await;
    let refused = wait_for("the conflict in words", PATIENCE, || async {
        text_of(&browser, "form.create-experiment p.error").await
    })
    .await;
    assert!(
        refused.starts_with(&format!(
            "{node_name} is in the running experiment “growth 1”."
        )),
        "{refused}"
    );
    save_screenshot(&browser, "experiment-conflict.png").await;
    click(&browser, "form.create-experiment button.move-nodes").await;
    wait_for(
        "the second experiment's page with the node",
        PATIENCE,
        || async {
            let name = text_of(&browser, ".experiment-head h1 .name").await?;
            let node = text_of(&browser, "ul.experiment-node-list li[data-node-id=ra] a").await?;
            (name == "growth 2" && node == node_name).then_some(())
        },
    )
    .await;

    // The node's page links to the experiment it is in now.
    click(&browser, "ul.experiment-node-list li[data-node-id=ra] a").await;
    let link = wait_for("the node's experiment", PATIENCE, || async {
        text_of(&browser, "dd.experiment a")
            .await
            .filter(|t| t == "growth 2")
    })
    .await;
    assert_eq!(link, "growth 2");

    // The experiments page's storage section: the readings the leader counts (at least what
    // its API said a moment before; they keep coming), the database's size with a unit, and
    // the count again a few seconds later, grown; then a retention rule set from its form and
    // listed, a refused one in the leader's words, and a pass run on request.
    let said = server
        .graphql("query { storage { readings } }", serde_json::json!({}))
        .await;
    let before = said["data"]["storage"]["readings"]
        .as_i64()
        .expect("the stored readings");
    assert!(before > 0, "{said}");
    browser
        .client
        .goto(&server.url("/experiments"))
        .await
        .expect("open the experiments page");
    let shown = || async {
        text_of(&browser, "dl.storage-figures dd[data-figure=readings]")
            .await?
            .replace(',', "")
            .parse::<i64>()
            .ok()
    };
    let first = wait_for("the readings counted", PATIENCE, || async {
        shown().await.filter(|&n| n >= before)
    })
    .await;
    let size = text_of(&browser, "dl.storage-figures dd[data-figure=size]")
        .await
        .expect("the database's size");
    let (amount, unit) = size.split_once(' ').expect("a size and its unit");
    assert!(
        number(amount).is_some_and(|n| n > 0.0) && ["B", "kB", "MB", "GB", "TB"].contains(&unit),
        "size {size:?}"
    );
    wait_for("the count loaded again, grown", PATIENCE, || async {
        shown().await.filter(|&n| n > first)
    })
    .await;
    type_into(&browser, "form.retention-form input[name=metric]", "od").await;
    type_into(&browser, "form.retention-form input[name=days]", "30").await;
    click(&browser, "form.retention-form button.set-rule").await;
    let rule = wait_for("the rule listed", PATIENCE, || async {
        text_of(&browser, "table.retention tr[data-metric=od]").await
    })
    .await;
    assert!(rule.starts_with("od 30 admin "), "the rule's row {rule:?}");
    retype(&browser, "form.retention-form input[name=days]", "0").await;
    click(&browser, "form.retention-form button.set-rule").await;
    let refused = wait_for("the refusal in words", PATIENCE, || async {
        text_of(&browser, "section.storage p.error:not(.hidden)").await
    })
    .await;
    assert!(
        refused.contains("days 0 must be between 1 and 36500"),
        "{refused}"
    );
    click(&browser, "form.retention-form button.apply-retention").await;
    let swept = wait_for("what the pass deleted", PATIENCE, || async {
        text_of(&browser, "section.storage p.message")
            .await
            .filter(|t| t.starts_with("Deleted"))
    })
    .await;
    // A 30-day rule deletes none of readings made in the last minute.
    assert_eq!(swept, "Deleted 0 readings; 0 series left empty.");
    browser
        .client
        .execute(
            "document.querySelector('section.storage').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the storage section");
    save_screenshot(&browser, "storage.png").await;
    browser.client.clone().close().await.expect("close browser");
}

/// A profile a new user writes in the Profiles page: stirring, OD readings (twice a second) and
/// a thermostat on every node of the experiment, the target raised after an hour. The last line
/// is typed with a mistake first (see [`PROFILE_TYPO`]).
const PROFILE: &str = "experiment_profile_name: warm-up-ui
metadata:
  author: Cam
  description: stir, read OD, heat to 30 C, then 35 C after an hour
common:
  jobs:
    stirring:
      actions:
        - type: start
          hours_elapsed: 0
          options:
            target_rpm: 400
    od_reading:
      actions:
        - type: start
          hours_elapsed: 0
          options:
            samples_per_second: 2
    temperature_automation:
      actions:
        - type: start
          hours_elapsed: 0
          options:
            automation_name: thermostat
            target_temperature: 30
        - type: update
          options:
            target_temperature: 35
          hours_elapsed: 1";

/// [`PROFILE`]'s last line as first typed (a profile that does not read: the leader refuses to
/// store it), and the part of it that is then erased and typed again.
const PROFILE_TYPO: (&str, &str, &str) = ("          hours_elapsed: one", "one", "1");

/// Scrolls the first element `css` finds to the top of the window (for a screenshot).
async fn scroll_to(browser: &Browser, css: &str) {
    browser
        .client
        .execute(
            "document.querySelector(arguments[0]).scrollIntoView()",
            vec![serde_json::json!(css)],
        )
        .await
        .expect("scroll");
}

/// An attribute of the first element `css` finds, read by the page (see `Browser::texts`).
async fn attr_of(browser: &Browser, css: &str, attr: &str) -> Option<String> {
    browser
        .client
        .execute(
            "const e = document.querySelector(arguments[0]); return e && e.getAttribute(arguments[1])",
            vec![serde_json::json!(css), serde_json::json!(attr)],
        )
        .await
        .ok()?
        .as_str()
        .map(str::to_owned)
}

/// The issue's "done when" for profiles, as a new user on `db`: an experiment created with the
/// leader's own node; on the Profiles page a profile typed with a mistake (reported with its line
/// and column, and its save refused in words), fixed (the problem gone, the dry run listing the
/// update at 1 h), saved and listed with its author; a `.yaml` file uploaded into the editor and
/// saved; on the experiment's page the file's profile refused in words (a unit that is no node),
/// the first one started at 400× (a profile hour in 9 s), its run shown with its progress and
/// next action, paused and resumed, seen through to `done` with its steps; the thermostat's
/// target raised; the OD chart growing live; and the readings CSV fetched by its link.
async fn profile_written_and_run_in_the_web_app(db: Db, shots: &str) {
    let server = Server::start(ServerOpts {
        db,
        web_dir: Some(web_dir()),
        ..ServerOpts::default()
    })
    .await;
    let node = server.wait_state("leader", "ONLINE", PATIENCE).await;
    let node_name = node["name"].as_str().expect("the node's name").to_owned();
    // The checks know a node's jobs once its agent has said which kinds it runs.
    wait_for("the node's job kinds", PATIENCE, || async {
        let r = server
            .graphql(
                "{ jobKinds(nodeId: \"leader\") { kind } }",
                serde_json::json!({}),
            )
            .await;
        (!r["data"]["jobKinds"].as_array()?.is_empty()).then_some(())
    })
    .await;
    let browser = Browser::start().await;
    browser
        .client
        .goto(&server.url("/experiments"))
        .await
        .expect("open the experiments page");
    log_in(&browser, "admin", trellis_tests::ADMIN_PASSWORD).await;
    let id = create_experiment_in_page(&browser, "warming", None, "leader").await;

    // The Profiles page, from the menu: nothing stored yet.
    click(&browser, "header.top nav a[href='/profiles']").await;
    wait_for("the empty list", PATIENCE, || async {
        text_of(&browser, ".profile-list p.empty")
            .await
            .filter(|t| t.starts_with("No stored profiles yet"))
    })
    .await;

    // Typed with a mistake in its last line: reported with that line and the column.
    let (last, wrong, right) = PROFILE_TYPO;
    let (body, _) = PROFILE.rsplit_once('\n').expect("lines");
    type_into(
        &browser,
        "textarea.profile-source",
        &format!("{body}\n{last}"),
    )
    .await;
    let line = PROFILE.lines().count();
    // (A pause in the typing may have had a part of the text checked: waited for, not read once.)
    let problem = format!("line {line}, column 26: hours_elapsed must be a number of hours");
    wait_for("the mistake reported", PATIENCE, || async {
        let p = browser.texts("ol.profile-problems li").await;
        let status = text_of(&browser, "p.check-status").await?;
        (p.len() == 1 && p[0].starts_with(&problem) && status == "1 problem:").then_some(())
    })
    .await;
    // Saved anyway: refused, the leader's problems listed in words.
    click(&browser, "button.save-profile").await;
    let refused = wait_for("the save refused", PATIENCE, || async {
        text_of(&browser, ".save-feedback p.error").await
    })
    .await;
    assert!(
        refused.starts_with(&format!("the profile does not read:\n{problem}")),
        "{refused:?}"
    );
    save_screenshot(&browser, &format!("{shots}-profiles-refused.png")).await;
    // Fixed by erasing the misspelt word and typing it again: the problem goes.
    let erase = "\u{E003}".repeat(wrong.chars().count());
    type_into(
        &browser,
        "textarea.profile-source",
        &format!("{erase}{right}"),
    )
    .await;
    wait_for("no problems", PATIENCE, || async {
        let status = text_of(&browser, "p.check-status").await?;
        let left = browser.texts("ol.profile-problems li").await;
        (status.starts_with("No problems") && left.is_empty()).then_some(())
    })
    .await;
    // The dry run: the three starts at once, the update after an hour.
    let timeline = wait_for("the dry run", PATIENCE, || async {
        let rows = browser.texts("table.profile-timeline tbody tr").await;
        (rows.len() == 4).then_some(rows)
    })
    .await;
    // Cells are tab-separated in a row's text.
    let timeline = timeline
        .iter()
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>();
    assert!(
        timeline[..3]
            .iter()
            .all(|r| r.starts_with(&format!("0 {node_name} ")) && r.contains(" start")),
        "{timeline:?}"
    );
    assert_eq!(
        timeline[3],
        format!("1 {node_name} temperature_automation update target_temperature=35"),
        "{timeline:?}"
    );

    click(&browser, "button.save-profile").await;
    wait_for("saved", PATIENCE, || async {
        text_of(&browser, ".save-feedback p.message")
            .await
            .filter(|t| t == "Saved “warm-up-ui”.")
    })
    .await;
    let listed = wait_for("the profile listed", PATIENCE, || async {
        let rows = browser
            .texts("table.profiles tbody tr[data-profile='warm-up-ui']")
            .await;
        rows.into_iter().next()
    })
    .await;
    assert!(
        listed.contains("Cam") && listed.contains("stir, read OD, heat to 30 C"),
        "{listed:?}"
    );
    scroll_to(&browser, "main").await;
    save_screenshot(&browser, &format!("{shots}-profiles.png")).await;
    scroll_to(&browser, ".profile-editor").await;
    save_screenshot(&browser, &format!("{shots}-profiles-editor.png")).await;
    scroll_to(&browser, ".dry-run").await;
    save_screenshot(&browser, &format!("{shots}-profiles-dry-run.png")).await;

    // A .yaml file (with Windows line ends) uploaded into the editor, read in the browser: it
    // names a unit that is no node here, which the checks say; it reads, so it can be stored.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("from-file.yaml");
    let from_file = format!(
        "{}\npioreactors:\n  worker9:\n    jobs:\n      stirring:\n        actions:\n          - type: stop\n            hours_elapsed: 2\n",
        PROFILE.replace("warm-up-ui", "from-file")
    );
    std::fs::write(&file, from_file.replace('\n', "\r\n")).expect("write the file");
    element(&browser, "input[name=upload]")
        .await
        .send_keys(&file.display().to_string())
        .await
        .expect("choose the file");
    wait_for("the file in the editor", PATIENCE, || async {
        let heading = text_of(&browser, ".editor-bar h2").await?;
        let text = element(&browser, "textarea.profile-source")
            .await
            .prop("value")
            .await
            .ok()??;
        (heading.starts_with("From the file “from-file.yaml”")
            && text.starts_with("experiment_profile_name: from-file"))
        .then_some(())
    })
    .await;
    wait_for("the unknown unit reported", PATIENCE, || async {
        let p = browser.texts("ol.profile-problems li").await;
        (p.len() == 1 && p[0].contains("unit \"worker9\" is no node here")).then_some(())
    })
    .await;
    click(&browser, "button.save-profile").await;
    wait_for("the file's profile saved", PATIENCE, || async {
        text_of(&browser, ".save-feedback p.message")
            .await
            .filter(|t| t == "Saved “from-file”.")
    })
    .await;

    // The experiment's page, through the menu and the list.
    click(&browser, "header.top nav a[href='/experiments']").await;
    click(&browser, &format!("tr[data-experiment-id='{id}'] a")).await;
    let choose = |name: &'static str| {
        let browser = &browser;
        async move {
            element(
                browser,
                &format!("select[name=profile] option[value='{name}']"),
            )
            .await;
            element(browser, "select[name=profile]")
                .await
                .select_by_value(name)
                .await
                .expect("choose the profile");
        }
    };
    // The form shows once the page knows the experiment runs.
    wait_for("the start form", PATIENCE, || async {
        element(&browser, "form.start-profile")
            .await
            .is_displayed()
            .await
            .ok()?
            .then_some(())
    })
    .await;
    retype(&browser, "input[name=time-scale]", "400").await;
    wait_for("what the time scale means", PATIENCE, || async {
        text_of(&browser, "form.start-profile .scale-words")
            .await
            .filter(|t| t.contains("a profile hour takes 9 s"))
    })
    .await;
    // The file's profile cannot run here: refused in words, nothing runs.
    choose("from-file").await;
    click(&browser, "form.start-profile button[type=submit]").await;
    let refused = wait_for("the start refused", PATIENCE, || async {
        text_of(&browser, ".start-feedback p.error").await
    })
    .await;
    assert!(
        refused.starts_with("profile \"from-file\" cannot run on experiment \"warming\":\nline ")
            && refused.contains("unit \"worker9\" is no node here"),
        "{refused:?}"
    );
    save_screenshot(&browser, &format!("{shots}-experiment-refused.png")).await;
    choose("warm-up-ui").await;
    click(&browser, "form.start-profile button[type=submit]").await;

    // Running: its progress and next action; paused, they hold still.
    let run = "table.profile-runs tr[data-run-id]";
    wait_for("the run with the update next", PATIENCE, || async {
        let next = browser.texts(&format!("{run} td.next")).await;
        let state = attr_of(&browser, run, "data-state").await?;
        (state == "running"
            && next
                .first()
                .is_some_and(|n| n.starts_with("update temperature_automation on")))
        .then_some(())
    })
    .await;
    browser.click_redrawn(&format!("{run} button.pause")).await;
    wait_for("the run paused", PATIENCE, || async {
        (attr_of(&browser, run, "data-state").await? == "paused").then_some(())
    })
    .await;
    let row = browser.texts(run).await.join(" ");
    let next = browser.texts(&format!("{run} td.next")).await;
    assert_eq!(
        next,
        [format!(
            "update temperature_automation on {node_name} at 1 h (paused)"
        )],
        "{row}"
    );
    let progress = browser.texts(&format!("{run} td.progress")).await;
    assert!(
        progress.len() == 1 && progress[0].ends_with(" h of 1 h"),
        "{progress:?}"
    );
    assert_eq!(
        browser.texts(&format!("{run} td.begun")).await,
        ["3"],
        "{row}"
    );
    save_screenshot(&browser, &format!("{shots}-experiment-run.png")).await;
    browser.click_redrawn(&format!("{run} button.resume")).await;
    wait_for("the run done", PATIENCE, || async {
        (attr_of(&browser, run, "data-state").await? == "done").then_some(())
    })
    .await;
    assert_eq!(browser.texts(&format!("{run} td.begun")).await, ["4"]);
    assert_eq!(browser.texts(&format!("{run} td.next")).await, ["—"]);
    // Its steps: the three starts and the update, each done.
    browser.click_redrawn(&format!("{run} button.steps")).await;
    let steps = wait_for("the run's steps", PATIENCE, || async {
        let s = browser.texts("table.profile-steps tbody tr").await;
        (s.len() == 4).then_some(s)
    })
    .await;
    assert!(
        steps.iter().all(|s| s.contains("done"))
            && steps
                .iter()
                .any(|s| s.contains("temperature_automation") && s.contains("update")),
        "{steps:?}"
    );
    let job = server
        .graphql(
            "{ job(nodeId: \"leader\", name: \"temperature_automation\") { settings } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(job["data"]["job"]["settings"]["target"], 35.0, "{job}");

    // The OD chart draws, and grows live.
    let first = wait_for("an OD line with points", PATIENCE, || async {
        let n = points_drawn(&browser, "od").await;
        (n >= 3).then_some(n)
    })
    .await;
    wait_for("the OD line to grow live", PATIENCE, || async {
        (points_drawn(&browser, "od").await >= first + 4).then_some(())
    })
    .await;
    scroll_to(&browser, "section.profiles").await;
    save_screenshot(&browser, &format!("{shots}-experiment-done.png")).await;
    scroll_to(&browser, "section.charts").await;
    save_screenshot(&browser, &format!("{shots}-experiment-charts.png")).await;

    // The readings CSV, fetched by the page's link with its cookie.
    let href = attr_of(&browser, "a.download[data-export=readings]", "href")
        .await
        .expect("the readings link");
    let csv = fetch_in_page(&browser, &href).await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("time,node_time,node,job,metric,value,unit,experiment")
    );
    let rows = lines.collect::<Vec<_>>();
    assert!(
        rows.iter()
            .filter(|r| r.contains(",leader,od_reading,od,"))
            .count()
            >= 5
            && rows
                .iter()
                .all(|r| r.contains(",leader,") && r.ends_with(",warming")),
        "{} rows, first {:?}",
        rows.len(),
        rows.first()
    );
    browser.client.clone().close().await.expect("close browser");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_is_written_and_run_in_the_web_app_on_sqlite() {
    profile_written_and_run_in_the_web_app(Db::Sqlite, "profile-sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_is_written_and_run_in_the_web_app_on_postgres() {
    let pg = Postgres::create();
    profile_written_and_run_in_the_web_app(Db::Postgres(pg.url.clone()), "profile-postgres").await;
}
