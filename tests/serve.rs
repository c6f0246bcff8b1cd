//! `vigil serve` against a real server on a loopback port: every endpoint, the
//! lifecycle with its conflicts, authentication and CSRF, tenant isolation with
//! colliding ids, the live feed (push, reconnect with Last-Event-ID, heartbeats)
//! and a draining SIGTERM.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use common::server::{answer, client, twins, Server};
use reqwest::Method;
use serde_json::{json, Value};

fn findings(v: &Value) -> Vec<Value> {
    v["findings"].as_array().cloned().unwrap_or_default()
}

fn ids_of(v: &[Value]) -> Vec<i64> {
    v.iter().filter_map(|f| f["id"].as_i64()).collect()
}

/// A server over the twin-tenant demo, its first tick committed.
fn started(label: &str, extra: &[&str]) -> Server {
    let dir = common::library(label);
    let signals = twins(&format!("{label}-signals"));
    let mut server = Server::start(&dir, &signals, extra);
    server.wait_for("tick 2025-10-04T10:00:00Z");
    server
}

#[test]
fn health_readiness_openapi_and_authentication() {
    let mut s = started("serve-auth", &["--tick-interval", "1s"]);
    let r = client().get(s.url("/healthz")).send().expect("healthz");
    assert_eq!((r.status().as_u16(), r.text().unwrap_or_default()), (200, "ok\n".to_string()));
    let (status, ready) = answer(client().get(s.url("/readyz")));
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["rules"]["rules"], 31);
    assert_eq!(ready["checks"]["store"]["ok"], true);

    // The OpenAPI document names every route the router has.
    let (status, doc) = answer(client().get(s.url("/api/v1/openapi.json")));
    assert_eq!(status, 200);
    let paths: BTreeSet<&str> = doc["paths"].as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    let router = include_str!("../src/cli/serve/api.rs");
    for line in router.lines().filter(|l| l.trim_start().starts_with(".route(\"/")) {
        let route = line.split('"').nth(1).unwrap_or_default();
        if !["/", "/console.js", "/console.css"].contains(&route) {
            assert!(paths.contains(route), "{route} is not in openapi.json");
        }
    }

    // No token, a bad token, a malformed header: 401 with a reason and WWW-Authenticate.
    let r = client().get(s.url("/api/v1/findings")).send().expect("get");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
    let (status, body) = answer(client().get(s.url("/api/v1/findings")).bearer_auth("vgl_0000"));
    assert_eq!((status, body["error"].as_str()), (401, Some("unknown token")));
    let (status, body) = answer(client().get(s.url("/api/v1/findings")).header("Authorization", "Token abc"));
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("Bearer"));
    for path in ["/api/v1/rules", "/api/v1/reloads", "/api/v1/runbooks", "/api/v1/findings/1", "/metrics", "/api/v1/events"] {
        assert_eq!(client().get(s.url(path)).send().expect("get").status().as_u16(), 401, "{path}");
    }
    // Tokens never appear in what the server prints.
    for token in s.tokens.values() {
        assert!(s.seen.iter().all(|l| !l.contains(token.as_str())));
    }
    assert!(std::fs::read_to_string(s.dir.join("tokens.txt")).expect("tokens").lines().all(|l| !l.contains("vgl_")));
    assert!(s.terminate().success());
}

#[test]
fn findings_list_detail_lifecycle_and_conflicts() {
    let mut s = started("serve-life", &["--tick-interval", "1s"]);
    let (status, all) = s.get("ana", "/api/v1/findings?limit=1000");
    assert_eq!(status, 200, "{all}");
    let list = findings(&all);
    assert!(list.len() >= 5, "{all}");
    assert_eq!(all["total"].as_u64(), Some(list.len() as u64));
    assert!(list.iter().all(|f| f["tenant_id"] == "T000" && f["status"] == "NEW"));
    // Most urgent first: severity never rises down the list.
    let rank = |f: &Value| ["LOW", "MEDIUM", "HIGH", "CRITICAL"].iter().position(|s| f["severity"] == *s).unwrap_or(9);
    assert!(list.windows(2).all(|w| rank(&w[0]) >= rank(&w[1])), "{list:?}");
    // Filters and paging.
    let (_, crit) = s.get("ana", "/api/v1/findings?severity=critical");
    assert!(!findings(&crit).is_empty() && findings(&crit).iter().all(|f| f["severity"] == "CRITICAL"));
    let one = &list[0];
    let site = one["site_id"].as_str().unwrap_or_default();
    let (_, at_site) = s.get("ana", &format!("/api/v1/findings?site={site}"));
    assert!(findings(&at_site).iter().all(|f| f["site_id"] == site) && !findings(&at_site).is_empty());
    let ty = one["finding_type"].as_str().unwrap_or_default();
    let (_, of_type) = s.get("ana", &format!("/api/v1/findings?type={ty}&status=all"));
    assert!(findings(&of_type).iter().all(|f| f["finding_type"] == ty) && !findings(&of_type).is_empty());
    let (_, page) = s.get("ana", "/api/v1/findings?limit=3&offset=2");
    assert_eq!(ids_of(&findings(&page)), ids_of(&list[2..5]));
    let (_, future) = s.get("ana", "/api/v1/findings?since=2030-01-01T00:00:00Z");
    assert_eq!(future["total"], 0);
    for (query, field) in [
        ("status=closed", "status"),
        ("severity=urgent", "severity"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("since=yesterday", "since"),
        ("sort=random", "sort"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = s.get("ana", &format!("/api/v1/findings?{query}"));
        assert_eq!((status, body["field"].as_str()), (422, Some(field)), "{query}: {body}");
    }

    // One finding: evidence, runbook, history, provenance, version.
    let id = one["id"].as_i64().unwrap_or_default();
    let (status, d) = s.get("ana", &format!("/api/v1/findings/{id}"));
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["version"], 1);
    assert_eq!(d["history"][0]["event"], "raised");
    assert!(d["evidence"].is_object());
    assert!(d["runbook_detail"]["steps"].as_array().is_some_and(|s| !s.is_empty()), "{d}");
    assert_eq!(d["runbook_detail"]["escalate_after_minutes"], d["escalate_after_minutes"]);
    assert_eq!(d["provenance"]["rule"], d["rule"]);
    assert_eq!(d["provenance"]["rule_hash"].as_str().map(str::len), Some(16));
    let (status, body) = s.get("ana", "/api/v1/findings/abc");
    assert_eq!((status, body["field"].as_str()), (422, Some("id")));
    assert_eq!(s.get("ana", "/api/v1/findings/987654").0, 404);

    // Acknowledge: a note is required, viewers may not, the version must be current.
    let path = format!("/api/v1/findings/{id}/acknowledge");
    let (status, body) = s.post("ana", &path, json!({}));
    assert_eq!((status, body["field"].as_str()), (422, Some("note")), "{body}");
    let (status, body) = s.post("ana", &path, json!({ "note": "   " }));
    assert_eq!((status, body["field"].as_str()), (422, Some("note")));
    let (status, body) = s.post("ana", &path, json!({ "note": "x", "colour": 1 }));
    assert_eq!(status, 422, "{body}");
    assert_eq!(s.post("val", &path, json!({ "note": "looking" })).0, 403);
    let (status, acked) = s.post("ana", &path, json!({ "note": "called the guard", "version": 1 }));
    assert_eq!(status, 200, "{acked}");
    assert_eq!(
        (acked["status"].as_str(), acked["acknowledged_by"].as_str(), acked["version"].as_i64()),
        (Some("ACKNOWLEDGED"), Some("ana"), Some(2))
    );
    let last = acked["history"].as_array().and_then(|h| h.last()).cloned().unwrap_or_default();
    assert_eq!(
        (last["event"].as_str(), last["who"].as_str(), last["detail"].as_str()),
        (Some("acknowledged"), Some("ana"), Some("called the guard"))
    );
    // The virtual clock stamps the step.
    assert!(acked["acknowledged_at"].as_str().is_some_and(|t| t.starts_with("2025-10-04T")), "{acked}");
    // Again: refused, not lost.
    let (status, body) = s.post("ana", &path, json!({ "note": "again" }));
    assert_eq!(status, 409, "{body}");
    // A resolve decided on the stale version: 409, and the acknowledgement stands.
    let resolve = format!("/api/v1/findings/{id}/resolve");
    let (status, body) = s.post("ana", &resolve, json!({ "note": "done", "version": 1 }));
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("version 2, not 1"), "{body}");
    assert_eq!(s.get("ana", &format!("/api/v1/findings/{id}")).1["status"], "ACKNOWLEDGED");
    let (status, resolved) = s.post("ana", &resolve, json!({ "note": "guard reached the site", "version": 2 }));
    assert_eq!((status, resolved["status"].as_str(), resolved["resolved_by"].as_str()), (200, Some("RESOLVED"), Some("ana")));
    let (_, open) = s.get("ana", "/api/v1/findings?limit=1000");
    assert!(!ids_of(&findings(&open)).contains(&id), "resolved findings leave the open list");

    // Two operators resolving one finding at once: one wins, the other gets 409.
    let target = list[1]["id"].as_i64().unwrap_or_default();
    let url = s.url(&format!("/api/v1/findings/{target}/resolve"));
    let (t1, t2) = (s.tokens["ana"].clone(), s.tokens["mia"].clone());
    let racers: Vec<_> = [t1, t2]
        .into_iter()
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || answer(client().post(url).bearer_auth(t).json(&json!({ "note": "mine", "version": 1 }))).0)
        })
        .collect();
    let mut codes: Vec<u16> = racers.into_iter().map(|h| h.join().unwrap_or(0)).collect();
    codes.sort_unstable();
    assert_eq!(codes, vec![200, 409]);
    let (_, raced) = s.get("ana", &format!("/api/v1/findings/{target}"));
    assert_eq!(raced["history"].as_array().map(|h| h.iter().filter(|e| e["event"] == "resolved").count()), Some(1));

    // Bulk acknowledge: each id answers for itself.
    let (_, tom_list) = s.get("tom", "/api/v1/findings");
    let toms = findings(&tom_list)[0]["id"].as_i64().unwrap_or_default();
    let (a, b) = (list[2]["id"].as_i64().unwrap_or_default(), list[3]["id"].as_i64().unwrap_or_default());
    let (status, bulk) = s.post("ana", "/api/v1/findings/acknowledge", json!({ "ids": [a, b, toms, 987654], "note": "night round" }));
    assert_eq!(status, 200, "{bulk}");
    let results: Vec<(i64, bool, Option<u64>)> = bulk["results"]
        .as_array()
        .map(|r| r.iter().map(|x| (x["id"].as_i64().unwrap_or(0), x["ok"] == true, x["status"].as_u64())).collect())
        .unwrap_or_default();
    assert_eq!(results, vec![(a, true, None), (b, true, None), (toms, false, Some(404)), (987654, false, Some(404))]);
    assert_eq!(s.get("tom", &format!("/api/v1/findings/{toms}")).1["status"], "NEW", "another tenant's finding is untouched");

    // Bulk resolve, the same way: an already resolved one is a conflict, not a second step.
    let (status, bulk) = s.post("ana", "/api/v1/findings/resolve", json!({ "ids": [a, id, toms], "note": "cleared on site" }));
    assert_eq!(status, 200, "{bulk}");
    let results: Vec<(i64, bool, Option<u64>)> = bulk["results"]
        .as_array()
        .map(|r| r.iter().map(|x| (x["id"].as_i64().unwrap_or(0), x["ok"] == true, x["status"].as_u64())).collect())
        .unwrap_or_default();
    assert_eq!(results, vec![(a, true, None), (id, false, Some(409)), (toms, false, Some(404))]);
    let (_, resolved) = s.get("ana", &format!("/api/v1/findings/{a}"));
    assert_eq!(resolved["status"], "RESOLVED");
    let notes: Vec<&str> =
        resolved["history"].as_array().into_iter().flatten().filter(|e| e["who"] == "ana").filter_map(|e| e["detail"].as_str()).collect();
    assert_eq!(notes, vec!["night round", "cleared on site"]);
    let (status, err) = s.post("ana", "/api/v1/findings/resolve", json!({ "ids": [b], "note": " " }));
    assert_eq!((status, err["field"].as_str()), (422, Some("note")));
    assert_eq!(s.post("val", "/api/v1/findings/resolve", json!({ "ids": [b], "note": "viewer" })).0, 403);
    assert_eq!(s.get("ana", &format!("/api/v1/findings/{b}")).1["status"], "ACKNOWLEDGED");

    // What the API did is in the store, as the CLI reads it.
    let stored = vigil_engine::store::list(&s.dir.join("state.duckdb"), vigil_engine::store::Listing::All).expect("store");
    let by_id = |i: i64| stored.iter().find(|f| f.id == i).map(|f| (f.status.name(), f.acknowledged_by.clone()));
    assert_eq!(by_id(a), Some(("RESOLVED", Some("ana".to_string()))));
    assert_eq!(by_id(id).map(|x| x.0), Some("RESOLVED"));
    assert!(s.terminate().success());
}

#[test]
fn rules_runbooks_reload_and_metrics() {
    let mut s = started("serve-rules", &["--tick-interval", "1s"]);
    let (status, rules) = s.get("val", "/api/v1/rules");
    assert_eq!(status, 200);
    assert_eq!(rules["rules"].as_array().map(Vec::len), Some(31));
    let revision = rules["revision"].as_str().unwrap_or_default().to_string();
    assert_eq!(revision.len(), 16);
    let (status, rb) = s.get("val", "/api/v1/runbooks/GENERIC");
    assert_eq!(status, 200, "{rb}");
    assert!(rb["steps"].as_array().is_some_and(|s| !s.is_empty()) && rb["escalate_after_minutes"].as_i64().is_some());
    assert_eq!(s.get("val", "/api/v1/runbooks/NO_SUCH").0, 404);
    assert!(s.get("val", "/api/v1/runbooks").1["runbooks"].as_array().is_some_and(|r| r.len() > 5));

    // Reload: admins only; a broken file answers 422 with its diagnostics and the old set stays.
    assert_eq!(s.post("ana", "/api/v1/rules/reload", json!(null)).0, 403);
    std::fs::write(s.dir.join("rules/zz_broken.vigil"), "rule BROKEN {\n  when count(phone_event) > 1\n").expect("write");
    let (status, failed) = s.post("root", "/api/v1/rules/reload", json!(null));
    assert_eq!(status, 422, "{failed}");
    assert_eq!(failed["ok"], false);
    assert!(failed["diagnostics"].as_str().is_some_and(|d| d.contains("zz_broken.vigil")), "{failed}");
    assert_eq!(s.get("val", "/api/v1/rules").1["revision"], revision.as_str());
    std::fs::remove_file(s.dir.join("rules/zz_broken.vigil")).expect("rm");
    std::fs::write(
        s.dir.join("rules/zz_always.vigil"),
        "rule ZZ_ALWAYS {\n  finding ZZ_ALWAYS\n  title \"Always\"\n  severity LOW\n  for site\n  when true\n}\n",
    )
    .expect("write");
    // The file watcher may reload first; the endpoint then reports its own (identical) attempt.
    let (status, ok) = s.post("root", "/api/v1/rules/reload", json!(null));
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["ok"], true);
    let (_, reloads) = s.get("val", "/api/v1/reloads");
    let list = reloads["reloads"].as_array().cloned().unwrap_or_default();
    assert!(list.iter().any(|r| r["ok"] == false && r["diagnostics"].as_str().is_some_and(|d| d.contains("zz_broken"))));
    assert!(list.iter().any(|r| r["added"] == json!(["ZZ_ALWAYS"])), "{reloads}");
    assert_ne!(reloads["revision"], revision.as_str());

    // Metrics: only a token of every tenant; the text format with the named series.
    assert_eq!(s.as_("mia", Method::GET, "/metrics").send().expect("metrics").status().as_u16(), 403);
    let r = s.as_("root", Method::GET, "/metrics").send().expect("metrics");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap_or("").starts_with("text/plain; version=0.0.4"));
    let text = r.text().unwrap_or_default();
    for series in [
        "vigil_tick_duration_seconds_count{cadence=\"deep\"} ",
        "vigil_rules_evaluated_total ",
        "vigil_rules_failed_total 0",
        "vigil_findings_raised_total{finding_type=\"",
        "vigil_findings_open{severity=\"CRITICAL\"} ",
        "vigil_reloads_total{result=\"failed\"} ",
        "vigil_sse_clients 0",
        "vigil_last_tick_timestamp_seconds 1759",
    ] {
        assert!(text.lines().any(|l| l.starts_with(series)), "no {series} in\n{text}");
    }
    assert!(s.terminate().success());
}

#[test]
fn console_sessions_need_the_csrf_token_for_changes() {
    let mut s = started("serve-session", &["--tick-interval", "1s"]);
    // The page and its assets are served from the binary, with a strict CSP.
    let r = client().get(s.url("/")).send().expect("index");
    assert!(r.headers()["content-security-policy"].to_str().unwrap_or("").contains("script-src 'self'"));
    assert!(r.text().unwrap_or_default().contains("<script src=\"/console.js\""));
    for asset in ["/console.js", "/console.css"] {
        assert_eq!(client().get(s.url(asset)).send().expect("asset").status().as_u16(), 200);
    }
    let (status, _) = answer(client().post(s.url("/api/v1/session")).json(&json!({ "token": "nope" })));
    assert_eq!(status, 401);
    let r = client().post(s.url("/api/v1/session")).json(&json!({ "token": s.tokens["ana"] })).send().expect("login");
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap_or("").to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap_or("").to_string();
    let body: Value = r.json().expect("json");
    let csrf = body["csrf"].as_str().unwrap_or_default().to_string();
    assert_eq!(body["principal"]["name"], "ana");
    assert!(!body.to_string().contains(&s.tokens["ana"]), "the token is not echoed");

    let with_cookie = |m: Method, p: &str| client().request(m, s.url(p)).header("Cookie", session.clone());
    let (status, list) = answer(with_cookie(Method::GET, "/api/v1/findings"));
    assert_eq!(status, 200);
    let id = findings(&list)[0]["id"].as_i64().unwrap_or_default();
    let ack = format!("/api/v1/findings/{id}/acknowledge");
    let (status, body) = answer(with_cookie(Method::POST, &ack).json(&json!({ "note": "n" })));
    assert_eq!(status, 403, "a cookie alone cannot change anything: {body}");
    let (status, _) = answer(with_cookie(Method::POST, &ack).header("X-CSRF-Token", "forged").json(&json!({ "note": "n" })));
    assert_eq!(status, 403);
    let (status, body) = answer(with_cookie(Method::POST, &ack).header("X-CSRF-Token", &csrf).json(&json!({ "note": "n" })));
    assert_eq!(status, 200, "{body}");
    let (status, again) = answer(with_cookie(Method::GET, "/api/v1/session"));
    assert_eq!((status, again["csrf"].as_str()), (200, Some(csrf.as_str())));
    let r = with_cookie(Method::DELETE, "/api/v1/session").header("X-CSRF-Token", &csrf).send().expect("logout");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(answer(with_cookie(Method::GET, "/api/v1/findings")).0, 401);
    assert!(s.terminate().success());
}

#[test]
fn a_tenant_never_sees_counts_or_changes_another_tenants_findings() {
    let mut s = started("serve-tenants", &["--tick-interval", "1s"]);
    let (_, ana) = s.get("ana", "/api/v1/findings?limit=1000");
    let (_, tom) = s.get("tom", "/api/v1/findings?limit=1000");
    let (_, mia) = s.get("mia", "/api/v1/findings?limit=1000");
    let (ana, tom, mia) = (findings(&ana), findings(&tom), findings(&mia));
    assert!(ana.iter().all(|f| f["tenant_id"] == "T000") && tom.iter().all(|f| f["tenant_id"] == "T900"));
    // The twins collide on purpose: same sites, guards and finding types in both tenants.
    let key = |f: &Value| (f["finding_type"].to_string(), f["site_id"].to_string(), f["guard_id"].to_string(), f["entity_id"].to_string());
    let (ka, kt): (BTreeSet<_>, BTreeSet<_>) = (ana.iter().map(key).collect(), tom.iter().map(key).collect());
    assert!(!ka.is_empty());
    assert_eq!(ka, kt);
    assert_eq!(mia.len(), ana.len() + tom.len());
    let toms: Vec<i64> = ids_of(&tom);
    let site = tom[0]["site_id"].as_str().unwrap_or_default();

    // Filtering by a colliding site id stays inside the caller's tenant.
    let (_, at_site) = s.get("ana", &format!("/api/v1/findings?site={site}"));
    assert!(findings(&at_site).iter().all(|f| f["tenant_id"] == "T000"));
    // Every endpoint: another tenant's finding does not exist for this caller.
    for id in &toms {
        assert_eq!(s.get("ana", &format!("/api/v1/findings/{id}")).0, 404);
        assert_eq!(s.post("ana", &format!("/api/v1/findings/{id}/acknowledge"), json!({ "note": "x" })).0, 404);
        assert_eq!(s.post("ana", &format!("/api/v1/findings/{id}/resolve"), json!({ "note": "x" })).0, 404);
    }
    let (status, body) = s.get("ana", "/api/v1/findings?tenant=T900");
    assert_eq!(status, 403, "{body}");
    assert_eq!(s.get("ana", "/api/v1/findings?tenant=T000").0, 200);
    assert_eq!(s.as_("ana", Method::GET, "/metrics").send().expect("metrics").status().as_u16(), 403);
    let (_, bulk) = s.post("ana", "/api/v1/findings/acknowledge", json!({ "ids": toms, "note": "x" }));
    assert!(bulk["results"].as_array().is_some_and(|r| r.iter().all(|x| x["status"] == 404)), "{bulk}");
    let (_, tom_after) = s.get("tom", "/api/v1/findings?limit=1000");
    assert!(findings(&tom_after).iter().all(|f| f["status"] == "NEW"), "nothing of T900 changed");

    // The stream: ana's snapshot and events hold T000 only, while tom acts on T900.
    let feed = s.events("ana", None);
    let snap = feed.until(|e| e.kind == "snapshot");
    let snap = &snap[snap.len() - 1];
    let snap_findings = findings(&snap.data);
    let in_snapshot: HashSet<i64> = ids_of(&snap_findings).into_iter().collect();
    assert!(ids_of(&ana).iter().all(|id| in_snapshot.contains(id)), "the snapshot holds ana's open findings");
    assert!(snap_findings.iter().all(|f| f["tenant_id"] == "T000"));
    let all_feed = s.events("root", None);
    all_feed.until(|e| e.kind == "snapshot");
    let (status, _) = s.post("tom", &format!("/api/v1/findings/{}/acknowledge", toms[0]), json!({ "note": "tom's" }));
    assert_eq!(status, 200);
    // root sees tom's acknowledgement; ana's stream, open over the same time, does not.
    all_feed.until(|e| e.kind == "finding.acknowledged" && e.data["id"] == toms[0]);
    let (status, _) = s.post("ana", &format!("/api/v1/findings/{}/acknowledge", ana[0]["id"]), json!({ "note": "ana's" }));
    assert_eq!(status, 200);
    let seen = feed.until(|e| e.kind == "finding.acknowledged" && e.data["id"] == ana[0]["id"]);
    assert!(seen.iter().all(|e| e.data["tenant_id"].as_str().is_none_or(|t| t == "T000")), "{seen:?}");
    assert!(seen.iter().all(|e| e.data["id"] != toms[0]));
    // A reconnect replays only the caller's tenant too.
    let replay = s.events("ana", Some(snap.id));
    let replayed = replay.until(|e| e.kind == "finding.acknowledged" && e.data["id"] == ana[0]["id"]);
    assert!(replayed.iter().all(|e| e.kind != "snapshot" && e.data["tenant_id"].as_str().is_none_or(|t| t == "T000")));
    assert!(s.terminate().success());
}

#[test]
fn the_live_feed_pushes_commits_and_a_reconnect_loses_nothing() {
    let mut s = started("serve-feed", &["--tick-interval", "1500ms", "--heartbeat", "200ms"]);
    let a = s.events("root", None);
    assert_eq!(a.status, 200);
    let first = a.until(|e| e.kind == "snapshot");
    let snapshot = &first[first.len() - 1];
    assert!(!findings(&snapshot.data).is_empty());
    assert!(snapshot.data["revision"].as_str().is_some());

    // A tick that raises findings: they arrive pushed, each after its tick committed.
    let mut latencies = Vec::new();
    let raised = loop {
        let line = s.wait_for("tick ");
        let committed = Instant::now();
        if line.contains(" 0 new") || line.contains("no rule due") {
            continue;
        }
        let n: usize = line.split(", ").find(|p| p.ends_with(" new")).and_then(|p| p.split(' ').next()?.parse().ok()).unwrap_or(0);
        // (Events of the tick before the snapshot may arrive after it too: clients upsert by id.)
        let of_this_tick =
            |e: &common::server::Sse| e.kind == "finding.raised" && e.data["last_seen"].as_str().is_some_and(|t| line.contains(t));
        let got = a.until(of_this_tick);
        let raised: Vec<_> = got.iter().filter(|e| of_this_tick(e)).collect();
        latencies.extend(raised.iter().map(|e| e.at.saturating_duration_since(committed)));
        let more = a.drain(Duration::from_millis(300));
        assert_eq!(raised.len() + more.iter().filter(|e| of_this_tick(e)).count(), n, "one event per new finding: {line}");
        break n;
    };
    assert!(raised > 0);
    eprintln!("finding-to-client after the commit line was read: {latencies:?}");
    // Ids increase.
    let ids: Vec<u64> = a.drain(Duration::from_millis(10)).iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // Client B reads up to some id, drops, and reconnects with Last-Event-ID after
    // changes it missed: it receives exactly the events A received after that id.
    let b = s.events("root", None);
    let b_first = b.until(|e| e.kind == "snapshot");
    let last = b_first[b_first.len() - 1].id;
    drop(b);
    let (_, open) = s.get("root", "/api/v1/findings");
    let id = findings(&open)[0]["id"].as_i64().unwrap_or_default();
    assert_eq!(s.post("root", &format!("/api/v1/findings/{id}/acknowledge"), json!({ "note": "while B was away" })).0, 200);
    s.wait_for("tick ");
    s.wait_for("tick ");
    let a_after: Vec<(u64, String)> =
        a.drain(Duration::from_millis(500)).into_iter().filter(|e| e.id > last).map(|e| (e.id, e.kind)).collect();
    assert!(a_after.iter().any(|(_, k)| k == "finding.acknowledged"), "{a_after:?}");
    let b = s.events("root", Some(last));
    let until = a_after.last().map(|(i, _)| *i).unwrap_or(last);
    let b_after: Vec<(u64, String)> = b.until(|e| e.id >= until).into_iter().map(|e| (e.id, e.kind)).collect();
    assert_eq!(b_after, a_after, "the reconnected client got exactly what it missed");

    // An id too old (or from another run): a fresh snapshot instead.
    let c = s.events("root", Some(1));
    assert_eq!(c.next(Duration::from_secs(10)).map(|e| e.kind), Some("snapshot".to_string()));

    // Heartbeats keep an idle stream busy.
    assert!(a.comments.load(std::sync::atomic::Ordering::SeqCst) > 0, "no heartbeat comments");

    // SIGTERM: the streams end and the process exits 0 after its last tick.
    let status = s.terminate();
    assert!(status.success(), "{status}");
    assert!(s.seen.iter().any(|l| l == "watch: stopped"));
    let tail = a.drain(Duration::from_secs(2));
    let _ = tail;
    assert!(a.next(Duration::from_millis(200)).is_none());
    let stored = vigil_engine::store::list(&s.dir.join("state.duckdb"), vigil_engine::store::Listing::All).expect("store");
    let keys: HashSet<_> = stored
        .iter()
        .filter(|f| f.status.name() != "RESOLVED")
        .map(|f| (f.finding_type.clone(), f.tenant_id.clone(), f.site_id.clone(), f.guard_id.clone(), f.entity_id.clone()))
        .collect();
    assert_eq!(keys.len(), stored.iter().filter(|f| f.status.name() != "RESOLVED").count(), "no open finding twice");
}

/// Clients that connect within seconds of each other share one read of the open findings
/// (so clients coming and going cannot pile reads up behind the state's lock); whatever
/// happened after the shared snapshot follows it, so the later client loses nothing.
#[test]
fn a_shared_snapshot_is_followed_by_what_happened_after_it() {
    let s = started("serve-shared-snapshot", &["--tick-interval", "1h"]);
    let a = s.events("root", None);
    let snap_a = a.until(|e| e.kind == "snapshot").pop().expect("a snapshot");
    let (_, open) = s.get("root", "/api/v1/findings");
    let id = findings(&open)[0]["id"].as_i64().expect("an open finding");
    assert_eq!(s.post("root", &format!("/api/v1/findings/{id}/acknowledge"), json!({ "note": "between two clients" })).0, 200);
    let b = s.events("root", None);
    let got = b.until(|e| e.kind == "finding.acknowledged");
    assert_eq!(got[0].kind, "snapshot");
    assert_eq!(got[0].id, snap_a.id, "the second client shares the first one's snapshot");
    let shared: Vec<Value> = findings(&got[0].data).into_iter().filter(|f| f["id"].as_i64() == Some(id)).collect();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0]["status"], "NEW", "the shared snapshot is from before the acknowledgement");
    let ack = got.last().expect("the acknowledgement");
    assert_eq!(ack.data["id"].as_i64(), Some(id));
    assert!(ack.id > snap_a.id);
    // A third client long after (and after more than a snapshot's lifetime) reads afresh.
    std::thread::sleep(Duration::from_secs(6));
    let c = s.events("root", None);
    let snap_c = c.until(|e| e.kind == "snapshot").pop().expect("a snapshot");
    assert!(snap_c.id >= ack.id);
    let fresh: Vec<Value> = findings(&snap_c.data).into_iter().filter(|f| f["id"].as_i64() == Some(id)).collect();
    assert_eq!(fresh[0]["status"], "ACKNOWLEDGED");
}

#[test]
fn resolved_findings_leave_the_state_after_their_retention_and_open_ones_stay() {
    let mut s = started("serve-keep", &["--tick-interval", "150ms", "--keep-resolved", "1h"]);
    let (_, all) = s.get("ana", "/api/v1/findings?limit=1000");
    let list = findings(&all);
    assert!(list.len() >= 2, "{all}");
    let (gone, kept) = (list[0]["id"].as_i64().expect("id"), list[1]["id"].as_i64().expect("id"));
    let (status, body) = s.post("ana", &format!("/api/v1/findings/{gone}/resolve"), json!({ "note": "done" }));
    assert_eq!(status, 200, "{body}");
    let resolved_at = body["resolved_at"].as_str().expect("resolved_at").to_string();
    // The hourly retention pass that runs more than an hour (of the run's clock) after
    // the resolution removes it, with its history.
    let line = s.wait_for("retention removed 1 resolved finding(s)");
    assert!(line.contains("0 action(s)"), "{line}");
    let (status, _) = s.get("ana", &format!("/api/v1/findings/{gone}"));
    assert_eq!(status, 404, "resolved at {resolved_at}, then removed");
    let (status, open) = s.get("ana", &format!("/api/v1/findings/{kept}"));
    assert_eq!(status, 200, "an open finding stays: {open}");
    s.terminate();
}
