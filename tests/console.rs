//! The operators' console in real headless Chromium (Debian's `chromium`, driven
//! through `chromedriver`): log in, see a finding arrive without reloading the
//! page, acknowledge it with a note, see the timeline update. Screenshots are
//! saved as artifacts under the target directory's `tmp/`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{twins, Server};
use fantoccini::{ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn artifact(name: &str, png: &[u8]) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    std::fs::write(dir.join(name), png).expect("write screenshot");
    eprintln!("screenshot: {}", dir.join(name).display());
}

async fn eval(c: &fantoccini::Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("script")
}

/// Waits until `script` returns a truthy value (20 s).
async fn until(c: &fantoccini::Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = eval(c, script).await;
        if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
            return v;
        }
        assert!(Instant::now() < deadline, "the console never showed {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Chromium through chromedriver, on a free port.
async fn browser() -> (Driver, fantoccini::Client) {
    assert!(
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
        "this test needs Debian's chromium and chromium-driver (`.ci/run` installs them)"
    );
    let port = free_port();
    let driver = Driver(
        Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let profile = common::temp_dir("chromium-profile");
    let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1440,900", format!("--user-data-dir={}", profile.display()),
            ]
        }
    }))
    .expect("capabilities");
    for _ in 0..50 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (driver, c),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("chromedriver does not answer");
}

/// Opens the console and logs in as `who`.
async fn log_in(c: &fantoccini::Client, server: &Server, who: &str) {
    c.goto(&server.url("/")).await.expect("open the console");
    let token = c.wait().for_element(Locator::Css("#token")).await.expect("login form");
    token.send_keys(&server.tokens[who]).await.expect("type the token");
    c.find(Locator::Css("#login-form button")).await.expect("button").click().await.expect("log in");
    until(c, "the findings", "return document.querySelectorAll('#rows tr').length").await;
    until(c, "a live feed", "return document.getElementById('conn').dataset.state === 'live'").await;
}

#[tokio::test(flavor = "current_thread")]
async fn operators_log_in_see_findings_arrive_and_acknowledge_one() {
    let dir = common::library("console");
    let signals = twins("console-signals");
    // Ticks every 2 s: the 10:20 tick raises new findings a few seconds after login.
    let mut server = Server::start(&dir, &signals, &["--tick-interval", "2s"]);
    server.wait_for("tick 2025-10-04T10:00:00Z");
    let (driver, c) = browser().await;
    log_in(&c, &server, "ana").await;
    // A marker that a page reload would wipe.
    eval(&c, "window.__stayed = true; return null").await;
    let first: Vec<i64> =
        serde_json::from_value(eval(&c, "return [...document.querySelectorAll('#rows tr')].map(r => +r.dataset.id)").await).expect("ids");
    let who = eval(&c, "return document.getElementById('who').textContent").await;
    assert!(who.as_str().is_some_and(|w| w.starts_with("ana · operator · T000")), "{who}");
    // Only ana's tenant is listed (the twin tenant has the same sites).
    let tenants =
        eval(&c, "return [...new Set([...document.querySelectorAll('#rows td.c-where')].map(t => t.textContent.split(' /')[0]))]").await;
    assert_eq!(tenants, json!(["T000"]));
    artifact("console-list.png", &c.screenshot().await.expect("screenshot"));

    // A finding raised by a later tick appears without reloading the page.
    let script = format!(
        "const known = new Set({first:?}); return [...document.querySelectorAll('#rows tr')].map(r => +r.dataset.id).find(id => !known.has(id)) || null"
    );
    let new_id = until(&c, "a finding raised after login", &script).await;
    assert_eq!(eval(&c, "return window.__stayed === true").await, json!(true), "the page was not reloaded");

    // Open it, acknowledge it with a note, and see the timeline update.
    c.execute("document.querySelector(`tr[data-id=\"${arguments[0]}\"]`).click(); return null", vec![new_id.clone()])
        .await
        .expect("click the row");
    until(&c, "the panel", "return !document.getElementById('panel').hidden && document.getElementById('p-history').children.length").await;
    let steps = eval(&c, "return document.querySelectorAll('#p-steps li').length").await;
    assert!(steps.as_u64().is_some_and(|n| n > 0), "the runbook's steps are a checklist");
    c.find(Locator::Css("#p-note")).await.expect("note").send_keys("Called the guard; on his way").await.expect("type");
    c.find(Locator::Css("#p-ack")).await.expect("ack").click().await.expect("acknowledge");
    let timeline = until(
        &c,
        "the acknowledgement on the timeline",
        "const t = document.getElementById('p-history').textContent; return t.includes('acknowledged by ana') ? t : null",
    )
    .await;
    assert!(timeline.as_str().is_some_and(|t| t.contains("Called the guard; on his way")), "{timeline}");
    artifact("console-panel.png", &c.screenshot().await.expect("screenshot"));

    // Keyboard: Escape closes the panel, ? opens the help.
    // (A closed dialog gives the focus back to its opener a moment later: wait, then blur.)
    eval(&c, "return new Promise(r => setTimeout(() => { document.activeElement && document.activeElement.blur(); r(null); }, 300))").await;
    c.active_element().await.expect("focus").send_keys("\u{E00C}").await.expect("escape");
    let closed = eval(&c, "return new Promise(r => setTimeout(() => r(document.getElementById('panel').hidden), 1500))").await;
    if closed != json!(true) {
        let why = eval(&c, "const a = document.activeElement; return `${a && a.tagName}#${a && a.id} panel=${!document.getElementById('panel').hidden} help=${document.getElementById('help').open} silences=${document.getElementById('silences').open}`").await;
        panic!("Escape did not close the panel: {why}");
    }
    c.active_element().await.expect("focus").send_keys("?").await.expect("?");
    until(&c, "the help", "return document.getElementById('help').open").await;
    artifact("console-help.png", &c.screenshot().await.expect("screenshot"));
    c.active_element().await.expect("focus").send_keys("\u{E00C}").await.expect("escape");
    until(&c, "the help closed", "return !document.getElementById('help').open").await;

    // Silence it from the panel: preview, then silence with a reason; then lift it in the list.
    c.execute("document.querySelector(`tr[data-id=\"${arguments[0]}\"]`).click(); return null", vec![new_id.clone()])
        .await
        .expect("click the row again");
    until(&c, "the panel again", "return !document.getElementById('panel').hidden").await;
    eval(&c, "document.getElementById('p-silence').open = true; return null").await;
    c.find(Locator::Css("#s-preview-btn")).await.expect("preview").click().await.expect("preview");
    let preview = until(&c, "the preview", "return document.getElementById('s-preview').textContent").await;
    assert!(preview.as_str().is_some_and(|p| p.starts_with("Would mute 1 open finding(s) now")), "{preview}");
    c.find(Locator::Css("#s-reason")).await.expect("reason").send_keys("Client confirmed planned works").await.expect("type");
    c.find(Locator::Css("#s-create")).await.expect("silence").click().await.expect("silence");
    until(&c, "the silence on the timeline", "return document.getElementById('p-history').textContent.includes('silenced by ana')").await;
    until(&c, "the row marked silenced", &format!("return (document.querySelector('tr[data-id=\"{new_id}\"]') || {{}}).className === 'muted' || document.querySelector('tr[data-id=\"{new_id}\"] .silenced') !== null")).await;
    c.find(Locator::Css("#open-silences")).await.expect("silences").click().await.expect("open silences");
    until(&c, "the silences list", "return document.querySelectorAll('#silence-rows tr').length").await;
    // Edit its reason in the list, then lift it.
    eval(&c, "[...document.querySelectorAll('#silence-rows button')].find(b => b.textContent === 'Edit reason').click(); return null")
        .await;
    let input = c.wait().for_element(Locator::Css("#silence-rows td.reason input")).await.expect("reason input");
    input.clear().await.expect("clear");
    input.send_keys("Works moved to 11:00\u{E007}").await.expect("type and Enter");
    until(&c, "the new reason", "return document.getElementById('silence-rows').textContent.includes('Works moved to 11:00')").await;
    artifact("console-silences.png", &c.screenshot().await.expect("screenshot"));
    eval(&c, "[...document.querySelectorAll('#silence-rows button')].find(b => b.textContent === 'Lift').click(); return null").await;
    until(&c, "the lifted silence", "return document.getElementById('silence-rows').textContent.includes('lifted')").await;
    eval(&c, "document.getElementById('silences').close(); return null").await;
    until(&c, "the lifted silence on the timeline", "return document.getElementById('p-history').textContent.includes('silence lifted')")
        .await;

    // The store agrees.
    let id = new_id.as_i64().expect("id");
    let (_, stored) = server.get("ana", &format!("/api/v1/findings/{id}"));
    assert_eq!((stored["status"].as_str(), stored["acknowledged_by"].as_str()), (Some("ACKNOWLEDGED"), Some("ana")));
    assert!(stored["history"].to_string().contains("Called the guard; on his way"));
    assert!(stored["history"].to_string().contains("Works moved to 11:00"), "the edit is on the timeline");
    c.close().await.expect("close the browser");
    drop(driver);
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "current_thread")]
async fn an_operator_approves_a_pending_action_and_sees_it_delivered() {
    use common::receiver::{endpoint, library_with_actions, Receiver};
    let r = Receiver::start(&[common::receiver::NEW_SECRET, common::receiver::OLD_SECRET]);
    // Escalating a no-show to the operations manager needs an operator's approval.
    let config = format!(
        "{}[action.escalate]\nkind = \"escalate\"\nendpoint = \"hook\"\nmode = \"live\"\nafter = \"5m\"\napproval = \"operator\"\napproval_timeout = \"2h\"\n",
        endpoint("endpoint", "hook", &r)
    );
    let dir = library_with_actions("console-actions", &[("attendance_no_show.vigil", "  auto escalate:ops_manager on")], &config);
    let signals = common::root().join("fixtures/demo");
    let mut server = Server::start(&dir, &signals, &["--tick-interval", "2s", "--actions", "actions.toml"]);
    server.wait_for("tick 2025-10-04T10:05:00Z");
    // The escalation of S00012's no-show is waiting for approval.
    let finding = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = server.get("ana", "/api/v1/actions?status=awaiting_approval");
            let waiting: Vec<Value> = body["actions"].as_array().cloned().unwrap_or_default();
            if let Some(a) = waiting.iter().find(|a| a["site_id"] == "S00012") {
                break a["finding_id"].clone();
            }
            assert!(Instant::now() < deadline, "no action awaiting approval: {body}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let (driver, c) = browser().await;
    log_in(&c, &server, "ana").await;
    c.execute("document.querySelector(`tr[data-id=\"${arguments[0]}\"]`).click(); return null", vec![finding.clone()])
        .await
        .expect("click the row");
    until(
        &c,
        "the action awaiting approval",
        "return document.querySelector('#p-actions li[data-status=\"awaiting_approval\"] button[data-decision=\"approve\"]') !== null",
    )
    .await;
    let line = eval(&c, "return document.querySelector('#p-actions li').textContent").await;
    assert!(line.as_str().is_some_and(|l| l.contains("escalate → ops_manager") && l.contains("decide by")), "{line}");
    artifact("console-approval.png", &c.screenshot().await.expect("screenshot"));
    // Approving needs a note: without one the console says so and nothing is sent.
    c.find(Locator::Css("#p-actions button[data-decision=approve]")).await.expect("approve").click().await.expect("click");
    until(&c, "the note required", "return document.getElementById('pa-error').textContent.includes('note is required')").await;
    assert!(r.got().is_empty());
    c.find(Locator::Css("#p-note")).await.expect("note").send_keys("Site manager asked to be told").await.expect("type");
    c.find(Locator::Css("#p-actions button[data-decision=approve]")).await.expect("approve").click().await.expect("approve");
    let timeline = until(
        &c,
        "the delivery on the timeline",
        "const t = document.getElementById('p-history').textContent; return t.includes('escalate -> ops_manager: sent (200') ? t : null",
    )
    .await;
    assert!(timeline.as_str().is_some_and(|t| t.contains("approved by ana: Site manager asked to be told")), "{timeline}");
    until(&c, "the action shown sent", "return document.querySelector('#p-actions li[data-status=\"sent\"]') !== null").await;
    artifact("console-action-sent.png", &c.screenshot().await.expect("screenshot"));
    // The receiver got it once, signed.
    let got = r.got();
    assert_eq!(got.len(), 1);
    assert!(got[0].verified);
    // The actions list, filtered to what was sent.
    c.find(Locator::Css("#open-actions")).await.expect("actions").click().await.expect("open the actions");
    until(&c, "the actions list", "return document.querySelectorAll('#action-rows tr').length").await;
    // (WebDriver's option click does not fire `input` on a select in headless Chromium: set it as a person's choice does.)
    eval(&c, "const s = document.getElementById('a-status'); s.value = 'sent'; s.dispatchEvent(new Event('input', { bubbles: true })); return null").await;
    until(
        &c,
        "the filtered list",
        "const r = document.querySelectorAll('#action-rows tr'); return r.length === 1 && r[0].textContent.includes('sent')",
    )
    .await;
    artifact("console-actions-list.png", &c.screenshot().await.expect("screenshot"));
    c.close().await.expect("close the browser");
    drop(driver);
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_sees_its_reports_in_the_portal() {
    let dir = common::library("portal-browser");
    let signals = twins("portal-browser-signals");
    let mut server = Server::start(&dir, &signals, &["--tick-interval", "2s", "--report-schedule"]);
    server.wait_for("serve: report RPT-T000-20251003-20251003-");
    let (driver, c) = browser().await;
    // Logging in at the console sends a client to the portal.
    c.goto(&server.url("/")).await.expect("open the console");
    let token = c.wait().for_element(Locator::Css("#token")).await.expect("login form");
    token.send_keys(&server.tokens["cleo"]).await.expect("type the token");
    c.find(Locator::Css("#login-form button")).await.expect("button").click().await.expect("log in");
    until(&c, "the portal", "return location.pathname === '/portal' && document.querySelectorAll('#reports tr').length").await;
    let rows = eval(&c, "return [...document.querySelectorAll('#reports tr')].map(r => r.textContent)").await;
    let rows: Vec<String> = serde_json::from_value(rows).expect("rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0], "2025-10-03dailyT000no exceptionsPDF · HTML");
    let summary = until(&c, "the summary", "return document.getElementById('summary').textContent").await;
    assert!(summary.as_str().is_some_and(|t| t.starts_with("T000")), "{summary}");
    artifact("portal.png", &c.screenshot().await.expect("screenshot"));
    // The PDF link serves the report to the client's session.
    let href = eval(&c, "return document.querySelector('#reports a').href").await;
    let status = eval(&c, &format!("return fetch({href}).then(r => r.status + ' ' + r.headers.get('content-type'))")).await;
    assert_eq!(status, json!("200 application/pdf"));
    c.close().await.expect("close the browser");
    drop(driver);
    assert!(server.terminate().success());
}
