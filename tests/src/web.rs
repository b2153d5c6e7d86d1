//! Helpers for the web app's tests in headless Chromium: waiting for elements and texts,
//! typing, reading attributes, logging in, whole-page screenshots, and a deployment page's
//! rollout.

use fantoccini::Locator;

use crate::{Browser, PATIENCE, screenshot_dir, wait_for};

/// Waits for an element (pages render after the app has asked the leader who is logged in).
pub async fn element(browser: &Browser, css: &str) -> fantoccini::elements::Element {
    wait_for(&format!("the element {css}"), PATIENCE, || async {
        browser.client.find(Locator::Css(css)).await.ok()
    })
    .await
}

/// Opens `path` of `server` and logs in as the first admin when the login form shows.
pub async fn open_as_admin(browser: &Browser, server: &crate::Server, path: &str) {
    browser
        .client
        .goto(&server.url(path))
        .await
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    element(
        browser,
        "input[name=password][autocomplete=current-password]",
    )
    .await;
    retype(browser, "input[name=username]", "admin").await;
    retype(browser, "input[name=password]", crate::ADMIN_PASSWORD).await;
    browser.click_redrawn("form.auth-form button").await;
}

/// Replaces what an input holds with `text`.
pub async fn retype(browser: &Browser, css: &str, text: &str) {
    let input = element(browser, css).await;
    input.clear().await.expect("clear");
    input.send_keys(text).await.expect("type");
}

/// The text of the first element `css` finds, read in one go by the page; empty when there is
/// none or it is hidden.
pub async fn text(browser: &Browser, css: &str) -> String {
    browser
        .client
        .execute(
            "const e = document.querySelector(arguments[0]); \
             return e && e.getClientRects().length ? e.innerText.trim() : ''",
            vec![serde_json::json!(css)],
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// An attribute of the first element `css` finds (empty when none).
pub async fn attr(browser: &Browser, css: &str, name: &str) -> String {
    browser
        .client
        .execute(
            "const e = document.querySelector(arguments[0]); return (e && e.getAttribute(arguments[1])) || ''",
            vec![serde_json::json!(css), serde_json::json!(name)],
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Waits until the text of `css` satisfies `ok`, and returns it.
pub async fn wait_text(
    browser: &Browser,
    what: &str,
    css: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    wait_for(what, PATIENCE * 2, || async {
        let t = text(browser, css).await;
        ok(&t).then_some(t)
    })
    .await
}

/// Saves a screenshot of the whole page (up to 2400 px tall): the window is made as tall as
/// the page for it, then as it was.
pub async fn save_screenshot(browser: &Browser, name: &str) {
    let (width, height) = browser.client.get_window_size().await.expect("window size");
    let page = browser
        .client
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .ok()
        .and_then(|h| h.as_u64())
        .unwrap_or(height);
    // The window's frame takes some of its height from the page.
    let tall = (page + height.saturating_sub(650)).clamp(height, 2400);
    browser
        .client
        .set_window_size(width as u32, tall as u32)
        .await
        .expect("resize the window");
    let png = browser.client.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(name), png).expect("save screenshot");
    browser
        .client
        .set_window_size(width as u32, height as u32)
        .await
        .expect("resize the window back");
}

/// Waits until the deployment page shows the last rollout to `revision` succeeded and the
/// leader's instance running it.
pub async fn wait_rolled_out(browser: &Browser, revision: u32) {
    wait_for(
        &format!("revision {revision} rolled out and running"),
        PATIENCE * 2,
        || async {
            let head = text(browser, "p.rollout-head").await;
            let state = attr(browser, "p.rollout-head", "data-state").await;
            let row = "section.instances tr[data-node-id=leader]";
            let running = attr(browser, row, "data-state").await == "RUNNING";
            let on = text(browser, &format!("{row} td.num")).await;
            (state == "succeeded"
                && head.contains(&format!("to revision {revision}:"))
                && running
                && on == revision.to_string())
            .then_some(())
        },
    )
    .await;
}
