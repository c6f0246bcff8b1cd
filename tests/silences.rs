//! Silences with an owner: a preview of what would be muted, scope and role checks,
//! the silenced finding still stored and shown, edits, lifting and expiry on the
//! findings' timelines, and the live feed.

mod common;

use common::server::{twins, Server};
use reqwest::Method;
use serde_json::{json, Value};

fn history_events(f: &Value) -> Vec<(String, Option<String>)> {
    f["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| (h["event"].as_str().unwrap_or_default().to_string(), h["who"].as_str().map(str::to_string)))
        .collect()
}

#[test]
fn silences_preview_mute_without_dropping_and_end_on_the_timeline() {
    let dir = common::library("silences");
    let signals = twins("silences-signals");
    let mut s = Server::start(&dir, &signals, &["--tick-interval", "500ms", "--silence-max", "4h"]);
    s.wait_for("tick 2025-10-04T10:00:00Z");
    let (_, open) = s.get("ana", "/api/v1/findings?limit=1000");
    let open = open["findings"].as_array().cloned().unwrap_or_default();
    let f = open.iter().find(|f| f["guard_id"].is_string()).cloned().expect("a finding about a guard");
    let (id, ty, site) = (f["id"].as_i64().unwrap_or(0), f["finding_type"].clone(), f["site_id"].clone());
    let matcher = json!({ "tenant_id": "T000", "finding_type": ty, "site_id": site });

    // Preview: what it would mute right now, counted by hand from the open list.
    let expected = open.iter().filter(|o| o["finding_type"] == ty && o["site_id"] == site).count();
    let (status, preview) = s.post("ana", "/api/v1/silences/preview", matcher.clone());
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["count"].as_u64(), Some(expected as u64));
    assert!(preview["findings"].as_array().is_some_and(|l| l.iter().any(|x| x["id"] == id)));

    // Scope and roles: another tenant 403, a whole tenant needs admin, viewers cannot.
    assert_eq!(s.post("ana", "/api/v1/silences/preview", json!({ "tenant_id": "T900", "site_id": site })).0, 403);
    let (status, body) = s.post("ana", "/api/v1/silences", json!({ "tenant_id": "T000", "reason": "x", "duration": "1h" }));
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("admin")));
    assert_eq!(s.post("mia", "/api/v1/silences/preview", json!({ "tenant_id": "T000" })).0, 200, "admins may preview a whole tenant");
    assert_eq!(s.post("val", "/api/v1/silences/preview", matcher.clone()).0, 403);
    // A reason and a bounded expiry are required.
    let with = |extra: Value| {
        let mut m = matcher.clone();
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            m[k] = v;
        }
        m
    };
    for (body, field) in [
        (with(json!({ "duration": "1h" })), "reason"),
        (with(json!({ "reason": " ", "duration": "1h" })), "reason"),
        (with(json!({ "reason": "works" })), "duration"),
        (with(json!({ "reason": "works", "duration": "5h" })), "duration"),
        (with(json!({ "reason": "works", "expires_at": "2025-10-04T09:00:00Z" })), "expires_at"),
        (with(json!({ "reason": "works", "duration": "soon" })), "duration"),
    ] {
        let (status, answer) = s.post("ana", "/api/v1/silences", body.clone());
        assert_eq!((status, answer["field"].as_str()), (422, Some(field)), "{body} -> {answer}");
    }

    // Create: owned by the caller; the finding is still stored and listed, marked silenced.
    let feed = s.events("root", None);
    feed.until(|e| e.kind == "snapshot");
    let (status, created) = s.post("ana", "/api/v1/silences", with(json!({ "reason": "planned works", "duration": "30m" })));
    assert_eq!(status, 201, "{created}");
    let silence = created["silence"].clone();
    let sid = silence["id"].as_i64().unwrap_or(0);
    assert_eq!((silence["owner"].as_str(), silence["reason"].as_str()), (Some("ana"), Some("planned works")));
    assert!(created["muted"].as_array().is_some_and(|m| m.len() == expected && m.contains(&json!(id))), "{created}");
    let (_, now_open) = s.get("ana", "/api/v1/findings?limit=1000");
    let listed = now_open["findings"].as_array().and_then(|l| l.iter().find(|x| x["id"] == id).cloned()).expect("still listed");
    assert_eq!(listed["silenced_by"].as_i64(), Some(sid));
    let (_, detail) = s.get("ana", &format!("/api/v1/findings/{id}"));
    assert!(history_events(&detail).contains(&("silenced".to_string(), Some("ana".to_string()))), "{detail}");
    let stored = vigil_engine::store::list(&s.dir.join("state.duckdb"), vigil_engine::store::Listing::Open).expect("store");
    assert!(stored.iter().any(|x| x.id == id), "a silenced finding stays in the store");
    feed.until(|e| e.kind == "silence.created" && e.data["id"] == sid);
    feed.until(|e| e.kind == "finding.changed" && e.data["id"] == id && e.data["silenced_by"] == sid);

    // Listing and editing: other tenants do not see it; only its owner or an admin edits it.
    let (_, toms) = s.get("tom", "/api/v1/silences");
    assert!(toms["silences"].as_array().is_some_and(|l| l.iter().all(|x| x["tenant_id"] == "T900")));
    let patch = |who: &str, body: Value| common::server::answer(s.as_(who, Method::PATCH, &format!("/api/v1/silences/{sid}")).json(&body));
    assert_eq!(patch("tom", json!({ "reason": "x" })).0, 404);
    assert_eq!(patch("val", json!({ "reason": "x" })).0, 403);
    assert_eq!(patch("mia", json!({ "reason": "" })).0, 422);
    let (status, edited) = patch("mia", json!({ "reason": "planned works, confirmed by the client" }));
    assert_eq!(status, 200, "{edited}");
    let (_, detail) = s.get("ana", &format!("/api/v1/findings/{id}"));
    assert!(history_events(&detail).contains(&("silence changed".to_string(), Some("mia".to_string()))));

    // Expiry: 30 minutes of the run's clock later it ends by itself, on the timeline.
    let (_, list) = s.get("ana", "/api/v1/silences");
    let until = list["silences"][0]["expires_at"].as_str().unwrap_or_default().to_string();
    s.wait_for(&format!("tick {until}"));
    feed.until(|e| e.kind == "silence.ended" && e.data["id"] == sid);
    let (_, detail) = s.get("ana", &format!("/api/v1/findings/{id}"));
    assert!(history_events(&detail).contains(&("silence expired".to_string(), None)), "{detail}");
    assert!(detail["silenced_by"].is_null());
    let (_, list) = s.get("ana", "/api/v1/silences");
    assert_eq!((list["silences"][0]["ended_how"].as_str(), list["silences"][0]["active"].as_bool()), (Some("expired"), Some(false)));

    // Lift: a silence of the whole site, lifted by its owner; lifting again is refused.
    let (status, created) =
        s.post("ana", "/api/v1/silences", json!({ "tenant_id": "T000", "site_id": site, "reason": "alarm test", "duration": "2h" }));
    assert_eq!(status, 201, "{created}");
    let sid2 = created["silence"]["id"].as_i64().unwrap_or(0);
    let lift = || common::server::answer(s.as_("ana", Method::DELETE, &format!("/api/v1/silences/{sid2}")));
    let (status, lifted) = lift();
    assert_eq!(
        (status, lifted["silence"]["ended_how"].as_str(), lifted["silence"]["ended_by"].as_str()),
        (200, Some("lifted"), Some("ana"))
    );
    assert_eq!(lift().0, 409);
    let (_, detail) = s.get("ana", &format!("/api/v1/findings/{id}"));
    assert!(history_events(&detail).contains(&("silence lifted".to_string(), Some("ana".to_string()))), "{detail}");
    assert!(detail["silenced_by"].is_null());
    assert!(s.terminate().success());
}
