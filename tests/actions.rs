//! Runbook actions end to end: a real `vigil serve --actions` on the demo fleet
//! (virtual clock from 2025-10-04T10:00Z, 5-minute ticks) and a real webhook
//! receiver on loopback that verifies signatures and answers as scripted.
//!
//! At 10:00 the demo raises ATTENDANCE_NO_SHOW at T000/S00012, T000/S00016 and
//! T001/S00011 (and two or three other findings at each of those sites); nothing more
//! is raised at those sites until 10:30. Each test strips the shipped runbooks'
//! `auto` lines and gives ATTENDANCE_NO_SHOW (and CORRELATION_COVERAGE_GAP) its own.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::receiver::{Receiver, Reply};
use common::server::Server;
use serde_json::{json, Value};

use common::receiver::{endpoint, library_with_actions as setup, NEW_SECRET, OLD_SECRET};

fn start(dir: &Path, interval: &str) -> Server {
    let signals = common::root().join("fixtures/demo");
    let mut s = Server::start(dir, &signals, &["--actions", "actions.toml", "--tick-interval", interval]);
    // A restart resumes after the last tick written: wait for whichever tick comes first.
    s.wait_for("tick 2025-10-04T");
    s
}

fn actions(s: &Server, who: &str, query: &str) -> Vec<Value> {
    let (status, body) = s.get(who, &format!("/api/v1/actions?limit=1000{query}"));
    assert_eq!(status, 200, "{body}");
    let mut v = body["actions"].as_array().cloned().unwrap_or_default();
    v.reverse();
    v
}

/// Polls `f` until it returns Some (90 s at most).
fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Actions of `name` once there are `n` and all are in one of `statuses`.
fn settled(s: &Server, name: &str, n: usize, statuses: &[&str]) -> Vec<Value> {
    until(&format!("{n} {name} actions in {statuses:?}"), || {
        let all: Vec<Value> = actions(s, "root", &format!("&action={name}"));
        (all.len() == n && all.iter().all(|a| statuses.contains(&a["status"].as_str().unwrap_or("")))).then_some(all)
    })
}

fn log_events(s: &Server, id: i64) -> Vec<(String, Option<i64>)> {
    let (status, body) = s.get("root", &format!("/api/v1/actions/{id}"));
    assert_eq!(status, 200, "{body}");
    body["log"].as_array().expect("log").iter().map(|e| (e["event"].as_str().unwrap_or("").to_string(), e["code"].as_i64())).collect()
}

fn by_site<'a>(all: &'a [Value], site: &str) -> &'a Value {
    all.iter().find(|a| a["site_id"] == site).unwrap_or_else(|| panic!("no action at {site}: {all:?}"))
}

#[test]
fn live_webhooks_are_signed_retried_with_backoff_and_retry_after() {
    let r = Receiver::start(&[NEW_SECRET, OLD_SECRET]);
    // The first three requests: a 503 (back off), a 429 asking for 3 s, and one held
    // past the endpoint's 2-second timeout; everything after them is answered 200.
    r.script(&[Reply::Status(503, None), Reply::Status(429, Some(3)), Reply::Hang(Duration::from_secs(3))]);
    let config = format!(
        "[defaults]\nlink = \"https://vigil.example.com\"\nmax_attempts = 4\nbackoff = \"1s\"\nbackoff_max = \"5s\"\n\n{}[action.page]\nkind = \"webhook\"\nendpoint = \"hook\"\nmode = \"live\"\n",
        endpoint("endpoint", "hook", &r)
    );
    let dir = setup("actions-live", &[("attendance_no_show.vigil", "  auto page on")], &config);
    let mut s = start(&dir, "2s");
    let sent = settled(&s, "page", 3, &["sent"]);

    // Six requests: three firsts and three retries, each signed with both secrets.
    let got = r.got();
    assert_eq!(got.len(), 6, "{got:?}");
    assert!(got.iter().all(|g| g.verified), "{got:?}");
    // Every action's key arrived, and is applied once.
    let keys: BTreeSet<String> = sent.iter().map(|a| a["key"].as_str().expect("key").to_string()).collect();
    assert_eq!(r.effects().keys().cloned().collect::<BTreeSet<_>>(), keys);
    // The 429 asked for 3 s: its next attempt came no sooner (jittered backoff alone is at most 1.5 s).
    let limited = got.iter().find(|g| g.reply == Reply::Status(429, Some(3))).expect("a 429");
    let again = got.iter().find(|g| g.id == limited.id && g.at > limited.at).expect("a retry of the 429");
    assert!(again.at - limited.at >= Duration::from_secs(3), "retried after {:?}", again.at - limited.at);
    // The 503's retry waited its backoff (at least half the 1 s base).
    let failed = got.iter().find(|g| g.reply == Reply::Status(503, None)).expect("a 503");
    let retry = got.iter().find(|g| g.id == failed.id && g.at > failed.at).expect("a retry of the 503");
    assert!(retry.at - failed.at >= Duration::from_millis(500));

    // The held one timed out (the receiver applied it; the service cannot know) and was
    // sent again with the same webhook-id, which the receiver applies once.
    let slow = got.iter().find(|g| matches!(g.reply, Reply::Hang(_))).expect("the held request");
    assert_eq!(r.arrivals().get(&slow.id), Some(&2));
    let timed_out = sent.iter().find(|a| a["key"] == slow.id.as_str()).expect("the held action");
    let (_, one) = s.get("root", &format!("/api/v1/actions/{}", timed_out["id"]));
    let failure = one["log"].as_array().expect("log").iter().find(|e| e["event"] == "failed").expect("a failure")["detail"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(failure.starts_with("timed out after 2000 ms; retry in"), "{failure}");
    // The log has each attempt with its response.
    let a503 = sent.iter().find(|a| a["key"] == failed.id.as_str()).expect("the 503's action");
    let events = log_events(&s, a503["id"].as_i64().expect("id"));
    let expected: Vec<(String, Option<i64>)> =
        [("enqueued", None), ("attempt", None), ("failed", Some(503)), ("attempt", None), ("sent", Some(200))]
            .iter()
            .map(|(e, c)| (e.to_string(), *c))
            .collect();
    assert_eq!(events, expected);
    // Minimal payloads: ids, type, severity, site, link; nothing else, no secret.
    let body: Value = serde_json::from_str(&got[0].body).expect("json");
    let mut fields: Vec<&str> = body.as_object().expect("object").keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["action", "finding", "key", "link", "target", "type"]);
    let mut finding: Vec<&str> = body["finding"].as_object().expect("finding").keys().map(String::as_str).collect();
    finding.sort_unstable();
    assert_eq!(finding, ["id", "severity", "site", "tenant", "type"]);
    assert_eq!(body["type"], "vigil.action.webhook");
    assert!(body["link"].as_str().unwrap_or("").starts_with("https://vigil.example.com/#finding="));
    for g in &got {
        assert!(!g.body.contains(NEW_SECRET) && !g.body.contains(OLD_SECRET));
    }
    // Secrets appear nowhere the service prints or answers.
    let (_, listing) = s.get("root", "/api/v1/actions");
    assert!(!listing.to_string().contains(NEW_SECRET));
    assert!(s.terminate().success());
    assert!(s.seen.iter().all(|l| !l.contains(NEW_SECRET) && !l.contains(OLD_SECRET)));

    // The finding's timeline tells the story.
    let f = a503["finding_id"].as_i64().expect("finding");
    let mut s = start(&dir, "2s");
    let (_, detail) = s.get("root", &format!("/api/v1/findings/{f}"));
    let timeline: Vec<String> = detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["event"] == "action")
        .map(|h| h["detail"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(timeline.iter().any(|t| t.starts_with("page -> hook: queued (live)")), "{timeline:?}");
    assert!(timeline.iter().any(|t| t.starts_with("page -> hook: sent (200, attempt 2)")), "{timeline:?}");
    assert!(s.terminate().success());
}

#[test]
fn dead_letters_final_refusals_replay_and_private_targets() {
    let r = Receiver::start(&[NEW_SECRET, OLD_SECRET]);
    r.script(&[Reply::Status(400, None)]);
    r.default(Reply::Status(500, None));
    let config = format!(
        "[defaults]\nmax_attempts = 2\nbackoff = \"1s\"\n\n{}[endpoint.closed]\nurl = \"{}\"\n\n[action.page]\nkind = \"webhook\"\nendpoint = \"hook\"\nmode = \"live\"\n\n[action.leak]\nkind = \"webhook\"\nendpoint = \"closed\"\nmode = \"live\"\n",
        endpoint("endpoint", "hook", &r),
        r.url
    );
    let dir = setup("actions-dead", &[("attendance_no_show.vigil", "  auto page on\n  auto leak on")], &config);
    let s = start(&dir, "2s");
    let dead = settled(&s, "page", 3, &["dead"]);
    // One was refused for good at once (400); the others failed twice (500).
    let mut attempts: Vec<i64> = dead.iter().map(|a| a["attempts"].as_i64().unwrap_or(0)).collect();
    attempts.sort_unstable();
    assert_eq!(attempts, [1, 2, 2]);
    let refused = dead.iter().find(|a| a["attempts"] == 1).expect("the 400");
    assert_eq!(refused["last_error"], "400");
    // A private target without allow_private is never contacted.
    let leaks = settled(&s, "leak", 3, &["dead"]);
    assert!(leaks.iter().all(|a| a["attempts"] == 0));
    let (_, one) = s.get("root", &format!("/api/v1/actions/{}", leaks[0]["id"]));
    let why = one["log"].as_array().expect("log").last().expect("entry")["detail"].as_str().unwrap_or("").to_string();
    assert!(why.contains("refused: 127.0.0.1 is a loopback or private address"), "{why}");
    assert!(r.got().iter().all(|g| !g.id.contains("/leak/")));

    // Replay from the dead-letter list: by API (operator of the tenant), and from the CLI.
    r.default(Reply::Ok);
    let t000 = dead.iter().find(|a| a["tenant_id"] == "T000").expect("a T000 action");
    let id = t000["id"].as_i64().expect("id");
    let (status, _) = s.post("val", &format!("/api/v1/actions/{id}/replay"), json!({ "note": "try again" }));
    assert_eq!(status, 403, "a viewer cannot replay");
    let (status, _) = s.post("tom", &format!("/api/v1/actions/{id}/replay"), json!({ "note": "try again" }));
    assert_eq!(status, 404, "another tenant's action does not exist");
    let (status, body) = s.post("ana", &format!("/api/v1/actions/{id}/replay"), json!({ "note": "" }));
    assert_eq!((status, body["field"].as_str()), (422, Some("note")));
    let (status, body) = s.post("ana", &format!("/api/v1/actions/{id}/replay"), json!({ "note": "receiver fixed" }));
    assert_eq!((status, body["status"].as_str()), (200, Some("pending")), "{body}");
    let t001 = dead.iter().find(|a| a["tenant_id"] == "T001").expect("a T001 action");
    let (code, out, err) = common::vigil(
        &["actions", "replay", &t001["id"].to_string(), "--by", "ops", "--note", "receiver fixed", "--state", "state.duckdb"],
        &dir,
    );
    assert_eq!(code, 0, "{out}{err}");
    until("both replays sent", || {
        let all = actions(&s, "root", "&status=sent");
        (all.len() == 2).then_some(())
    });
    assert!(r.effects().contains_key(t000["key"].as_str().expect("key")));
    let events: Vec<String> = log_events(&s, id).into_iter().map(|e| e.0).collect();
    assert_eq!(events.iter().filter(|e| *e == "replayed").count(), 1);
    assert_eq!(events.last().map(String::as_str), Some("sent"));
    // A sent action cannot be replayed.
    let (status, _) = s.post("ana", &format!("/api/v1/actions/{id}/replay"), json!({ "note": "again" }));
    assert_eq!(status, 409);
}

#[test]
fn a_kill_between_sending_and_recording_delivers_once() {
    let r = Receiver::start(&[NEW_SECRET, OLD_SECRET]);
    // The first request is applied, then its answer is held while the service is killed.
    r.script(&[Reply::Hang(Duration::from_secs(5))]);
    let config = format!("{}[action.page]\nkind = \"webhook\"\nendpoint = \"hook\"\nmode = \"live\"\n", endpoint("endpoint", "hook", &r));
    let dir = setup("actions-kill-send", &[("attendance_no_show.vigil", "  auto page on")], &config);
    let mut s = start(&dir, "3s");
    until("the first request", || (!r.got().is_empty()).then_some(()));
    s.kill();
    let first = r.got()[0].id.clone();
    let s = start(&dir, "3s");
    let sent = settled(&s, "page", 3, &["sent"]);
    // The interrupted one was sent again with the same key, which the receiver applied once.
    let arrivals = r.arrivals();
    assert_eq!(arrivals.get(&first), Some(&2), "{arrivals:?}");
    let keys: BTreeSet<String> = sent.iter().map(|a| a["key"].as_str().expect("key").to_string()).collect();
    assert_eq!(arrivals.keys().cloned().collect::<BTreeSet<_>>(), keys, "one key per action, no other");
    assert!(r.effects().values().all(|n| *n == 1));
    let again = sent.iter().find(|a| a["key"] == first.as_str()).expect("the interrupted action");
    let events: Vec<String> = log_events(&s, again["id"].as_i64().expect("id")).into_iter().map(|e| e.0).collect();
    assert_eq!(events, ["enqueued", "attempt", "attempt", "sent"]);
}

#[test]
fn a_kill_between_enqueueing_and_sending_loses_nothing() {
    let r = Receiver::start(&[NEW_SECRET, OLD_SECRET]);
    let config = format!(
        "{}[action.page]\nkind = \"webhook\"\nendpoint = \"hook\"\nmode = \"live\"\ndelay = \"10m\"\n",
        endpoint("endpoint", "hook", &r)
    );
    let dir = setup("actions-kill-enqueue", &[("attendance_no_show.vigil", "  auto page on")], &config);
    let mut s = start(&dir, "3s");
    let pending = settled(&s, "page", 3, &["pending"]);
    assert!(pending.iter().all(|a| a["due"] == "2025-10-04T10:10:00Z"), "{pending:?}");
    s.kill();
    assert!(r.got().is_empty());
    let s = start(&dir, "2s");
    let sent = settled(&s, "page", 3, &["sent"]);
    let keys: BTreeSet<String> = sent.iter().map(|a| a["key"].as_str().expect("key").to_string()).collect();
    let arrivals = r.arrivals();
    assert_eq!(arrivals.keys().cloned().collect::<BTreeSet<_>>(), keys);
    assert!(arrivals.values().all(|n| *n == 1), "{arrivals:?}");
}

#[test]
fn dry_run_sends_nothing_and_rate_limits_hold_across_restarts() {
    let r = Receiver::start(&[NEW_SECRET, OLD_SECRET]);
    // sms_a: live in its section, but its runbook line has no `on`: dry-run.
    // sms_b: live and on, 10 minutes later, at most 1 SMS per site per hour.
    let config = format!(
        "{}[action.sms_a]\nkind = \"notify\"\nchannel = \"sms\"\nto = \"site\"\ntemplate = \"{{type}} at {{site}}\"\nmode = \"live\"\n\n[action.sms_b]\nkind = \"notify\"\nchannel = \"sms\"\nto = \"site\"\ntemplate = \"{{title}}\"\nmode = \"live\"\ndelay = \"10m\"\nlimits = [\"1/1h\"]\n",
        endpoint("channel", "sms", &r)
    );
    let dir = setup(
        "actions-limits",
        &[("attendance_no_show.vigil", "  auto sms_a"), ("correlation_coverage_gap.vigil", "  auto sms_b on")],
        &config,
    );
    let mut s = start(&dir, "3s");
    let dry = settled(&s, "sms_a", 3, &["would_send"]);
    assert!(dry.iter().all(|a| a["mode"] == "dry-run"));
    let text = dry.iter().find(|a| a["site_id"] == "S00012").expect("S00012")["payload"]["text"].clone();
    assert_eq!(text, "ATTENDANCE_NO_SHOW at S00012");
    s.kill();
    let s = start(&dir, "2s");
    let limited = settled(&s, "sms_b", 3, &["limited"]);
    let (_, one) = s.get("root", &format!("/api/v1/actions/{}", by_site(&limited, "S00012")["id"]));
    let why = one["log"].as_array().expect("log").last().expect("entry")["detail"].as_str().unwrap_or("").to_string();
    assert_eq!(why, "rate limit: 1 of at most 1 per 1h through sms to site:S00012");
    assert!(r.got().is_empty(), "nothing was sent: {:?}", r.got());
}

#[test]
fn the_storm_breaker_holds_and_resumes_delays_drop_and_kill_switches_suppress() {
    // More than 2 findings at one site within 10 minutes is a storm: S00012 and S00011
    // have 3 at 10:00, S00016 has 2. `page` is not critical; `call` is, and waits 10m.
    let config = "[storm]\nsite = 2\nwindow = \"10m\"\n\n[endpoint.hook]\nurl = \"https://hooks.example.com/x\"\n\n[channel.voice]\nurl = \"https://voice.example.com/x\"\n\n[action.page]\nkind = \"webhook\"\nendpoint = \"hook\"\n\n[action.call]\nkind = \"notify\"\nchannel = \"voice\"\ntemplate = \"{title}\"\ndelay = \"10m\"\ncritical = true\n";
    let dir = setup("actions-storm", &[("attendance_no_show.vigil", "  auto page\n  auto call")], config);
    let s = start(&dir, "3s");
    let page = until("page held at the two storm sites", || {
        let all = actions(&s, "root", "&action=page");
        let st = |site| all.iter().find(|a| a["site_id"] == site).map(|a| a["status"].as_str().unwrap_or("").to_string());
        (st("S00012").as_deref() == Some("held")
            && st("S00011").as_deref() == Some("held")
            && st("S00016").as_deref() == Some("would_send"))
        .then_some(all)
    });
    assert_eq!(page.len(), 3);
    let (_, listing) = s.get("root", "/api/v1/actions");
    let storms: BTreeSet<String> =
        listing["storms"].as_array().expect("storms").iter().map(|x| format!("{}/{}", x["tenant"], x["site"])).collect();
    assert_eq!(storms, BTreeSet::from(["\"T000\"/\"S00012\"".to_string(), "\"T001\"/\"S00011\"".to_string()]));
    // A tenant's token sees only its own storms.
    let (_, mine) = s.get("ana", "/api/v1/actions");
    assert_eq!(mine["storms"].as_array().map(Vec::len), Some(1));

    // Before `call` is due (10:10): ana acknowledges the no-show at S00016, and root
    // throws tenant T001's kill switch. An operator cannot; a tenant admin cannot throw the global one.
    let f16 = by_site(&actions(&s, "root", "&action=call"), "S00016")["finding_id"].as_i64().expect("finding");
    let (status, body) = s.post("ana", &format!("/api/v1/findings/{f16}/acknowledge"), json!({ "note": "guard on the way" }));
    assert_eq!(status, 200, "{body}");
    let (status, _) = s.post("ana", "/api/v1/actions/switches", json!({ "scope": "T000", "killed": true, "note": "x" }));
    assert_eq!(status, 403);
    let (status, _) = s.post("mia", "/api/v1/actions/switches", json!({ "scope": "*", "killed": true, "note": "x" }));
    assert_eq!(status, 403);
    let (status, body) = s.post("root", "/api/v1/actions/switches", json!({ "scope": "T001", "killed": true, "note": "client dispute" }));
    assert_eq!(status, 200, "{body}");

    let calls = settled(&s, "call", 3, &["dropped", "suppressed", "would_send"]);
    assert_eq!(by_site(&calls, "S00016")["status"], "dropped");
    assert_eq!(by_site(&calls, "S00011")["status"], "suppressed");
    assert_eq!(by_site(&calls, "S00012")["status"], "would_send", "critical actions pass the storm breaker");
    let (_, detail) = s.get("root", &format!("/api/v1/findings/{f16}"));
    let timeline = detail["history"].to_string();
    assert!(timeline.contains("call -> guard:S00016-G0: dropped: the finding is acknowledged"), "{timeline}");

    // At 10:15 the 10:00 findings leave the window: the storm is over and held actions
    // resume (T001's into its kill switch).
    let page = settled(&s, "page", 3, &["would_send", "suppressed"]);
    assert_eq!(by_site(&page, "S00011")["status"], "suppressed");
    let (_, listing) = s.get("root", "/api/v1/actions");
    assert_eq!(listing["storms"], json!([]));
    let held = by_site(&page, "S00012")["id"].as_i64().expect("id");
    let events: Vec<String> = log_events(&s, held).into_iter().map(|e| e.0).collect();
    assert_eq!(events, ["enqueued", "held", "resumed", "would_send"]);
    // A suppressed action can be replayed once the switch is released.
    let (status, _) = s.post("root", "/api/v1/actions/switches", json!({ "scope": "T001", "killed": false, "note": "settled" }));
    assert_eq!(status, 200);
    let s11 = by_site(&page, "S00011")["id"].as_i64().expect("id");
    let (status, body) = s.post("root", &format!("/api/v1/actions/{s11}/replay"), json!({ "note": "dispute settled" }));
    assert_eq!(status, 200, "{body}");
    until("the replayed action recorded", || {
        let all = actions(&s, "root", "&action=page");
        (by_site(&all, "S00011")["status"] == "would_send").then_some(())
    });
}

#[test]
fn approvals_are_approved_rejected_and_time_out() {
    let r = Receiver::start(&[NEW_SECRET, OLD_SECRET]);
    // Escalation to ops_manager 5 minutes after the finding, approved by an operator
    // within 10 minutes or rejected; calling the police needs an admin, and goes if nobody decides.
    let config = format!(
        "{}[action.esc]\nkind = \"escalate\"\nendpoint = \"hook\"\nmode = \"live\"\nafter = \"5m\"\napproval = \"operator\"\napproval_timeout = \"10m\"\n\n[action.police]\nkind = \"webhook\"\nendpoint = \"hook\"\nmode = \"live\"\napproval = \"admin\"\napproval_timeout = \"5m\"\non_timeout = \"approve\"\n",
        endpoint("endpoint", "hook", &r)
    );
    let dir = setup("actions-approval", &[("attendance_no_show.vigil", "  auto esc:ops_manager on\n  auto police on")], &config);
    let s = start(&dir, "3s");
    let waiting = settled(&s, "esc", 3, &["awaiting_approval"]);
    assert!(waiting.iter().all(|a| a["due"] == "2025-10-04T10:05:00Z" && a["target"] == "ops_manager"), "{waiting:?}");
    let (a12, a16) = (by_site(&waiting, "S00012")["id"].as_i64().expect("id"), by_site(&waiting, "S00016")["id"].as_i64().expect("id"));
    let (status, _) = s.post("val", &format!("/api/v1/actions/{a12}/approve"), json!({ "note": "go" }));
    assert_eq!(status, 403, "a viewer cannot approve");
    let (status, body) = s.post("ana", &format!("/api/v1/actions/{a12}/approve"), json!({ "note": "manager must know" }));
    assert_eq!((status, body["decided_by"].as_str()), (200, Some("ana")), "{body}");
    let (status, _) = s.post("ana", &format!("/api/v1/actions/{a16}/reject"), json!({ "note": "guard arrived" }));
    assert_eq!(status, 200);
    let (status, _) = s.post("ana", &format!("/api/v1/actions/{a16}/approve"), json!({ "note": "changed my mind" }));
    assert_eq!(status, 409, "a decision is final");
    let police = settled(&s, "police", 3, &["awaiting_approval", "pending", "sent"]);
    let p12 = by_site(&police, "S00012")["id"].as_i64().expect("id");
    let (status, _) = s.post("ana", &format!("/api/v1/actions/{p12}/approve"), json!({ "note": "go" }));
    assert_eq!(status, 403, "an operator cannot approve an admin's step");

    let esc = settled(&s, "esc", 3, &["sent", "rejected"]);
    assert_eq!(by_site(&esc, "S00012")["status"], "sent");
    assert_eq!(by_site(&esc, "S00016")["status"], "rejected");
    let timed_out = by_site(&esc, "S00011");
    assert_eq!((timed_out["status"].as_str(), timed_out["decided_by"].as_str()), (Some("rejected"), Some("(timeout)")));
    let police = settled(&s, "police", 3, &["sent"]);
    assert!(police.iter().all(|a| a["decided_by"] == "(timeout)"));
    // The approved escalation reached the receiver signed, with its level; the rejected ones never did.
    let sent_keys: BTreeSet<String> = r.effects().keys().cloned().collect();
    assert!(sent_keys.contains(by_site(&esc, "S00012")["key"].as_str().expect("key")));
    assert!(!sent_keys.contains(by_site(&esc, "S00016")["key"].as_str().expect("key")));
    assert!(r.got().iter().all(|g| g.verified));
    let body: Value = serde_json::from_str(&r.got().iter().find(|g| g.id.contains("/esc/")).expect("esc").body).expect("json");
    assert_eq!((body["type"].as_str(), body["level"].as_i64()), (Some("vigil.action.escalate"), Some(1)));
    // The approver is on the finding's timeline.
    let f = by_site(&esc, "S00012")["finding_id"].as_i64().expect("finding");
    let (_, detail) = s.get("root", &format!("/api/v1/findings/{f}"));
    assert!(detail["history"].to_string().contains("esc -> ops_manager: approved by ana: manager must know"), "{}", detail["history"]);
}

#[test]
fn escalation_follows_the_runbook_chain_until_acknowledged() {
    let r = Receiver::start(&[NEW_SECRET, OLD_SECRET]);
    // ATTENDANCE_NO_SHOW's escalation SLA is 15 minutes: the supervisor at 10:15, the
    // operations manager at 10:30, unless someone acknowledges first.
    let config = format!(
        "{}[action.esc]\nkind = \"escalate\"\nendpoint = \"hook\"\nmode = \"live\"\ntemplate = \"{{title}} at {{site}} is not acknowledged\"\n",
        endpoint("endpoint", "hook", &r)
    );
    let dir = setup("actions-chain", &[("attendance_no_show.vigil", "  auto esc:supervisor on\n  auto esc:ops_manager on")], &config);
    let s = start(&dir, "2s");
    let chain = settled(&s, "esc", 6, &["pending"]);
    let due = |site: &str, target: &str| {
        chain.iter().find(|a| a["site_id"] == site && a["target"] == target).map(|a| a["due"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(due("S00012", "supervisor").as_deref(), Some("2025-10-04T10:15:00Z"));
    assert_eq!(due("S00012", "ops_manager").as_deref(), Some("2025-10-04T10:30:00Z"));
    // Level 1 goes out; then ana acknowledges S00012's no-show, which stops its chain.
    let first = until("the supervisor escalations", || {
        let all = actions(&s, "root", "&action=esc&status=sent");
        (all.len() == 3).then_some(all)
    });
    assert!(first.iter().all(|a| a["target"] == "supervisor"));
    let f12 = by_site(&first, "S00012")["finding_id"].as_i64().expect("finding");
    let (status, body) = s.post("ana", &format!("/api/v1/findings/{f12}/acknowledge"), json!({ "note": "supervisor on it" }));
    assert_eq!(status, 200, "{body}");
    let all = settled(&s, "esc", 6, &["sent", "dropped"]);
    let dropped: Vec<(String, String)> = all
        .iter()
        .filter(|a| a["status"] == "dropped")
        .map(|a| (a["site_id"].as_str().unwrap_or("").to_string(), a["target"].as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(dropped, [("S00012".to_string(), "ops_manager".to_string())]);
    assert_eq!(r.got().len(), 5);
    let bodies: Vec<Value> = r.got().iter().map(|g| serde_json::from_str(&g.body).expect("json")).collect();
    let levels: BTreeSet<(String, i64)> =
        bodies.iter().map(|b| (b["target"].as_str().unwrap_or("").to_string(), b["level"].as_i64().unwrap_or(0))).collect();
    assert_eq!(levels, BTreeSet::from([("ops_manager".to_string(), 2), ("supervisor".to_string(), 1)]));
    // Every step is on the finding's timeline.
    let (_, detail) = s.get("root", &format!("/api/v1/findings/{f12}"));
    let steps: Vec<String> = detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["event"] == "action" || h["event"] == "acknowledged")
        .map(|h| format!("{} {}", h["at"].as_str().unwrap_or(""), h["detail"].as_str().unwrap_or("")))
        .collect();
    let at = |prefix: &str| steps.iter().position(|l| l.contains(prefix)).unwrap_or_else(|| panic!("{prefix} not in {steps:#?}"));
    assert!(at("esc -> supervisor: queued (live), due 2025-10-04T10:15:00Z") < at("esc -> supervisor: sent (200, attempt 1)"));
    assert!(at("esc -> supervisor: sent") < at("supervisor on it"));
    assert!(at("supervisor on it") < at("esc -> ops_manager: dropped: the finding is acknowledged"));
}

#[test]
fn the_global_kill_switch_from_the_command_line_suppresses_everything() {
    let r = Receiver::start(&[NEW_SECRET, OLD_SECRET]);
    let config = format!(
        "{}[action.page]\nkind = \"webhook\"\nendpoint = \"hook\"\nmode = \"live\"\ndelay = \"10m\"\n",
        endpoint("endpoint", "hook", &r)
    );
    let dir = setup("actions-cli-kill", &[("attendance_no_show.vigil", "  auto page on")], &config);
    let s = start(&dir, "3s");
    settled(&s, "page", 3, &["pending"]);
    let (code, out, err) =
        common::vigil(&["actions", "kill", "--by", "night-lead", "--note", "gateway down", "--state", "state.duckdb"], &dir);
    assert_eq!((code, out.trim()), (0, "kill switch (global) on"), "{err}");
    let (_, switches) = s.get("ana", "/api/v1/actions/switches");
    assert_eq!(switches["thrown"][0]["by"], "night-lead");
    settled(&s, "page", 3, &["suppressed"]);
    assert!(r.got().is_empty());
    // The command line lists them and shows one with its log.
    let (code, out, _) = common::vigil(&["actions", "list", "--status", "suppressed", "--state", "state.duckdb"], &dir);
    assert_eq!(code, 0);
    assert!(out.lines().last().is_some_and(|l| l == "3 action(s)"), "{out}");
    let id = out.lines().nth(1).and_then(|l| l.split_whitespace().next()).expect("an id").to_string();
    let (code, out, _) = common::vigil(&["actions", "show", &id, "--state", "state.duckdb"], &dir);
    assert_eq!(code, 0);
    assert!(out.contains("status:   suppressed") && out.contains("suppressed         the global kill switch is on"), "{out}");
    let (code, _, err) = common::vigil(&["actions", "list", "--status", "gone", "--state", "state.duckdb"], &dir);
    assert_eq!(code, 2);
    assert!(err.contains("`gone` is not an action status"), "{err}");
}

#[test]
fn published_reports_are_delivered_through_the_outbox_once() {
    let r = Receiver::start(&[NEW_SECRET, OLD_SECRET]);
    // T000's reports go to its client's endpoint; T001's wait for review, then go too.
    let config = format!(
        "[defaults]\nlink = \"https://vigil.example.com\"\nreports = \"send_report\"\n\n{}[action.send_report]\nkind = \"webhook\"\nendpoint = \"client\"\nmode = \"live\"\n",
        endpoint("endpoint", "client", &r)
    );
    let dir = setup("actions-reports", &[], &config);
    let signals = common::root().join("fixtures/demo");
    let extra = ["--actions", "actions.toml", "--tick-interval", "2s", "--report-schedule", "--report-review", "T001"];
    let mut s = Server::start(&dir, &signals, &extra);
    s.wait_for("serve: report RPT-T001-20251003-20251003-");
    let sent = until("T000's report delivered", || {
        let all = actions(&s, "root", "&action=send_report&status=sent");
        (all.len() == 1).then_some(all)
    });
    assert_eq!((sent[0]["tenant_id"].as_str(), sent[0]["finding_id"].as_i64()), (Some("T000"), Some(0)));
    let got = r.got();
    assert_eq!(got.len(), 1);
    assert!(got[0].verified);
    let body: Value = serde_json::from_str(&got[0].body).expect("json");
    let id = body["report"]["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("RPT-T000-20251003-20251003-"), "{body}");
    assert_eq!((body["type"].as_str(), body["report"]["kind"].as_str()), (Some("vigil.report"), Some("daily")));
    assert_eq!(body["link"].as_str(), Some(format!("https://vigil.example.com/api/v1/reports/{id}/pdf").as_str()));
    // T001's report is held for review: nothing for it until an admin approves it.
    let (_, listed) = s.get("root", "/api/v1/reports");
    let held = listed["reports"].as_array().expect("reports").iter().find(|m| m["tenant"] == "T001").expect("T001's")["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(actions(&s, "root", "&action=send_report").len(), 1);
    let (status, _) = s.post("root", &format!("/api/v1/reports/{held}/approve"), json!({ "note": "checked" }));
    assert_eq!(status, 200);
    until("T001's report delivered", || (r.got().len() == 2).then_some(()));
    assert!(r.got()[1].body.contains(&held));
    // A restart delivers nothing again.
    assert!(s.terminate().success());
    let s = Server::start(&dir, &signals, &extra);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(r.got().len(), 2);
    assert_eq!(actions(&s, "root", "&action=send_report").len(), 2);
}

#[test]
fn check_reports_configuration_errors_with_their_spans() {
    let config = "[endpoint.hook]\nurl = \"https://hooks.example.com/x\"\nsecret = \"env:VIGIL_TEST_NOT_SET_ANYWHERE\"\n\n[action.page]\nkind = \"webhook\"\nendpoint = \"hok\"\ntemplate = \"{site} {sight}\"\n";
    let dir = setup("actions-check", &[("attendance_no_show.vigil", "  auto pager on")], config);
    let (code, out, _) = common::vigil(&["check", "--short", "--actions", "actions.toml"], &dir);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("error[")).collect();
    assert_eq!(
        lines,
        [
            "actions.toml:3:10: error[E0704]: missing secret: the environment variable `VIGIL_TEST_NOT_SET_ANYWHERE` is not set",
            "actions.toml:7:12: error[E0703]: no endpoint `hok` is defined",
            "actions.toml:8:20: error[E0705]: a finding has no field `sight`",
        ]
    );
    // With the configuration fixed, the runbook's unknown action is an error at its line.
    let fixed = config.replace("env:VIGIL_TEST_NOT_SET_ANYWHERE", "file:new.secret").replace("hok", "hook").replace(" {sight}", "");
    std::fs::write(dir.join("actions.toml"), fixed).expect("write");
    let (code, out, _) = common::vigil(&["check", "--short", "--actions", "actions.toml"], &dir);
    assert_eq!(code, 1);
    let line = out.lines().find(|l| l.contains("E0702")).unwrap_or_default().to_string();
    let runbook = std::fs::read_to_string(dir.join("runbooks/attendance_no_show.vigil")).expect("read");
    let row = runbook.lines().position(|l| l.contains("auto pager")).expect("the line") + 1;
    assert_eq!(
        line,
        format!("./runbooks/attendance_no_show.vigil:{row}:8: error[E0702]: no action `pager` is defined in the actions configuration")
    );
    // And `serve` refuses to start with it.
    let (code, _, err) =
        common::vigil(&["token", "new", "--name", "a", "--role", "admin", "--tenants", "*", "--append", "tokens.txt"], &dir);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = common::vigil(&["serve", "--tokens", "tokens.txt", "--actions", "actions.toml", "--listen", "127.0.0.1:0"], &dir);
    assert_ne!(code, 0);
    assert!(err.contains("E0702"), "{err}");
}
