//! `vigil serve` killed with SIGKILL during ticks and during ingestion, then
//! restarted on the same files: nothing acknowledged is lost, no batch is
//! half-stored, no finding is duplicated.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::server::{twins, Server};
use reqwest::Method;
use serde_json::{json, Value};

fn open_identities(s: &Server) -> Vec<String> {
    let (_, all) = s.get("root", "/api/v1/findings?limit=1000");
    all["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| format!("{}|{}|{}|{}|{}", f["finding_type"], f["tenant_id"], f["site_id"], f["guard_id"], f["entity_id"]))
        .collect()
}

#[test]
fn killed_during_ticks_nothing_acknowledged_is_lost_and_nothing_is_duplicated() {
    let dir = common::library("restart-tick");
    let signals = twins("restart-tick-signals");
    let mut acked: BTreeMap<i64, String> = BTreeMap::new();
    for round in 0..4u64 {
        let mut s = Server::start(&dir, &signals, &["--tick-interval", "150ms"]);
        s.wait_for("tick ");
        // Acknowledge one more finding each round, then kill in the middle of the ticks.
        let (_, open) = s.get("root", "/api/v1/findings?limit=1000&status=new");
        if let Some(f) = open["findings"].as_array().and_then(|f| f.first()) {
            let id = f["id"].as_i64().unwrap_or_default();
            let note = format!("round {round}");
            let (status, body) = s.post("root", &format!("/api/v1/findings/{id}/acknowledge"), json!({ "note": note }));
            assert_eq!(status, 200, "{body}");
            acked.insert(id, note);
        }
        std::thread::sleep(Duration::from_millis(170 + 97 * round));
        s.kill();
    }
    let mut s = Server::start(&dir, &signals, &["--tick-interval", "150ms"]);
    let resumed = s.wait_for("tick ");
    assert!(!resumed.contains("2025-10-04T10:00:00Z"), "a restart resumes after the last tick written: {resumed}");
    for (id, note) in &acked {
        let (status, f) = s.get("root", &format!("/api/v1/findings/{id}"));
        assert_eq!(status, 200);
        assert_eq!(f["status"], "ACKNOWLEDGED", "{f}");
        let history = f["history"].as_array().cloned().unwrap_or_default();
        assert_eq!(history.iter().filter(|h| h["event"] == "acknowledged" && h["detail"] == note.as_str()).count(), 1, "{f}");
    }
    let identities = open_identities(&s);
    let distinct: HashSet<&String> = identities.iter().collect();
    assert_eq!(distinct.len(), identities.len(), "no open finding twice");
    assert!(s.terminate().success());
}

fn batch(key: usize, rows: usize) -> String {
    (0..rows)
        .map(|i| {
            json!({
                "tenant_id": "T000", "site_id": "S00000", "guard_id": "G1", "device_id": format!("batch-{key}"),
                "ts": format!("2025-10-04T09:{:02}:{:02}Z", (i / 60) % 60, i % 60), "kind": "heartbeat"
            })
            .to_string()
                + "\n"
        })
        .collect()
}

fn push(s: &Server, key: usize) -> Option<u16> {
    s.as_("ana", Method::POST, "/api/v1/signals/phone_events")
        .header("Content-Type", "application/x-ndjson")
        .header("Idempotency-Key", format!("batch-{key}"))
        .body(batch(key, 400))
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

#[test]
fn killed_during_ingestion_no_batch_is_half_stored_and_a_retry_stores_once() {
    let dir = common::library("restart-ingest");
    let mut s = Server::start_with(&dir, None, &["--tick-interval", "300ms"]);
    s.wait_for("tick ");
    // Push batches from a thread and kill the server while they are arriving.
    let base = s.base.clone();
    let token = s.tokens["ana"].clone();
    let pusher = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
        let mut answered = Vec::new();
        for key in 0..40 {
            let r = client
                .post(format!("{base}/api/v1/signals/phone_events"))
                .bearer_auth(&token)
                .header("Content-Type", "application/x-ndjson")
                .header("Idempotency-Key", format!("batch-{key}"))
                .body(batch(key, 400))
                .send();
            match r {
                Ok(r) => answered.push((key, r.status().as_u16())),
                Err(_) => break,
            }
        }
        answered
    });
    std::thread::sleep(Duration::from_millis(700));
    s.kill();
    let answered = pusher.join().unwrap_or_default();
    assert!(!answered.is_empty() && answered.len() < 40, "the kill landed during ingestion: {answered:?}");
    assert!(answered.iter().all(|(_, status)| *status == 201));

    // After the restart every batch is whole or absent, and every answered one is there.
    let mut s = Server::start_with(&dir, None, &["--tick-interval", "300ms"]);
    s.wait_for("tick ");
    let per_batch = || -> BTreeMap<String, i64> {
        let conn = vigil_engine::load::open_database().expect("db");
        let path = dir.join("state.signals.duckdb");
        let _lock = vigil_engine::ingest::signals_lock();
        vigil_engine::store::attach_file(&conn, &path, "sig").expect("attach");
        let mut stmt = conn.prepare("SELECT device_id, count(*) FROM sig.phone_events GROUP BY device_id").expect("query");
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).expect("rows");
        let out = rows.map(|r| r.expect("row")).collect();
        let _ = conn.execute_batch("DETACH sig");
        out
    };
    let stored = per_batch();
    assert!(stored.values().all(|n| *n == 400), "a batch half-stored: {stored:?}");
    for (key, _) in &answered {
        assert_eq!(stored.get(&format!("batch-{key}")), Some(&400), "an acknowledged batch was lost");
    }
    // The platform re-sends everything it is not sure of: each batch ends up stored once.
    for key in 0..40 {
        let status = push(&s, key).unwrap_or(0);
        let expected = if stored.contains_key(&format!("batch-{key}")) { 200 } else { 201 };
        assert_eq!(status, expected, "batch {key}");
    }
    let after = per_batch();
    assert_eq!(after.len(), 40);
    assert!(after.values().all(|n| *n == 400), "{after:?}");
    let (_, feed) = s.get("ana", "/api/v1/feed");
    let rows: i64 = feed["feeds"].as_array().into_iter().flatten().filter_map(|f| f["rows"].as_i64()).sum();
    assert_eq!(rows, 40 * 400, "{feed:?}");
    let _: Value = feed;
    assert!(s.terminate().success());
}
