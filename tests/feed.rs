//! A tenant's pushed feed stops while its sites are staffed: one FEED_STALE
//! finding for that tenant, no silent-site storm, the other tenant unaffected;
//! when rows arrive again the feed recovers.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::server::Server;
use reqwest::Method;
use serde_json::Value;

const SITES: usize = 5;

fn csv(header: &str, rows: impl Iterator<Item = String>) -> String {
    let mut out = format!("{header}\n");
    for r in rows {
        out.push_str(&r);
        out.push('\n');
    }
    out
}

fn sites(tenant: &str) -> String {
    csv(
        "tenant_id,site_id,name,timezone,lat,lon,geofence_m,active",
        (1..=SITES).map(|i| format!("{tenant},S{i},Site {i},Europe/London,51.5,-0.1,200,true")),
    )
}

fn shifts(tenant: &str) -> String {
    csv(
        "tenant_id,site_id,shift_id,guard_id,starts_at,ends_at,checked_in_at,checked_out_at",
        (1..=SITES).map(|i| format!("{tenant},S{i},SH{i},G{i},2025-10-04T09:00:00Z,2025-10-04T18:00:00Z,2025-10-04T09:00:00Z,")),
    )
}

/// A phone event every minute from `from` to `to` (hours, whole) at each of `sites`.
fn phones(tenant: &str, sites: &[usize], from: u32, to: u32) -> String {
    let mut rows = Vec::new();
    for &i in sites {
        for m in from * 60..to * 60 {
            rows.push(format!("{tenant},S{i},G{i},D{i},2025-10-04T{:02}:{:02}:00Z,heartbeat", m / 60, m % 60));
        }
    }
    csv("tenant_id,site_id,guard_id,device_id,ts,kind", rows.into_iter())
}

fn push(s: &Server, who: &str, table: &str, body: &str) {
    let r = s.as_(who, Method::POST, &format!("/api/v1/signals/{table}")).header("Content-Type", "text/csv").body(body.to_string()).send();
    let status = r.map(|r| r.status().as_u16()).unwrap_or(0);
    assert_eq!(status, 201, "push {table} as {who}");
}

fn open_of(s: &Server, who: &str, query: &str) -> Vec<Value> {
    let (_, v) = s.get(who, &format!("/api/v1/findings?limit=1000&{query}"));
    v["findings"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_stale_feed_is_one_finding_not_a_silent_site_storm() {
    let dir = common::library("feed");
    let mut s = Server::start_with(&dir, None, &["--tick-interval", "300ms", "--feed-stale-after", "2s"]);
    s.wait_for("tick 2025-10-04T10:00:00Z");
    // T000: every site active all day but S5, which is staffed and silent (a real silent site).
    // (Activity first, then the sites: no tick sees a staffed site before its activity.)
    push(&s, "ana", "phone_events", &phones("T000", &[1, 2, 3, 4], 9, 14));
    push(&s, "ana", "shifts", &shifts("T000"));
    push(&s, "ana", "sites", &sites("T000"));
    // T900 (the same site ids): active until 09:59, then its platform stops pushing.
    push(&s, "tom", "phone_events", &phones("T900", &[1, 2, 3, 4, 5], 9, 10));
    push(&s, "tom", "shifts", &shifts("T900"));
    push(&s, "tom", "sites", &sites("T900"));
    // T000's platform keeps pushing (a row every 300 ms), so its feed stays fresh.
    let stop = Arc::new(AtomicBool::new(false));
    let keep_alive = {
        let (base, token, stop) = (s.base.clone(), s.tokens["ana"].clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            // (Rows of 23:00: fresh arrivals that no tick run so far is missing.)
            let body = phones("T000", &[1], 23, 24).lines().take(2).collect::<Vec<_>>().join("\n") + "\n";
            while !stop.load(Ordering::SeqCst) {
                let _ = common::server::client()
                    .post(format!("{base}/api/v1/signals/phone_events"))
                    .bearer_auth(&token)
                    .header("Content-Type", "text/csv")
                    .body(body.clone())
                    .send();
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let stale_event = s.events("mia", None);
    s.wait_for("tick 2025-10-04T12:00:00Z");

    // T900: one FEED_STALE finding, and not one silent site although every site has
    // been without activity since 09:59 (silent from 11:00 on, had the feed been fresh).
    let t900 = open_of(&s, "tom", "");
    let stale: Vec<&Value> = t900.iter().filter(|f| f["finding_type"] == "FEED_STALE").collect();
    assert_eq!(stale.len(), 1, "{t900:?}");
    assert_eq!((stale[0]["site_id"].as_str(), stale[0]["holding"].as_bool()), (Some("*"), Some(true)));
    assert!(stale[0]["title"].as_str().is_some_and(|t| t.contains("tenant T900") && t.contains("not a silent site")));
    assert!(t900.iter().all(|f| f["finding_type"] != "CORRELATION_SILENT_SITE"), "no silent-site storm: {t900:?}");
    // T000 is unaffected: its fresh feed still shows its one real silent site, and no FEED_STALE.
    let t000 = open_of(&s, "ana", "");
    let silent: Vec<&str> =
        t000.iter().filter(|f| f["finding_type"] == "CORRELATION_SILENT_SITE").filter_map(|f| f["site_id"].as_str()).collect();
    assert_eq!(silent, vec!["S5"], "{t000:?}");
    assert!(t000.iter().all(|f| f["finding_type"] != "FEED_STALE"));
    // The live feed said so, to T900's scope only.
    let got = stale_event.until(|e| e.kind == "feed.stale");
    assert_eq!(got[got.len() - 1].data["tenant_id"], "T900");
    let ana_feed = s.events("ana", None);
    let snapshot = ana_feed.until(|e| e.kind == "snapshot");
    assert!(snapshot[snapshot.len() - 1].data["findings"].as_array().is_some_and(|f| f.iter().all(|x| x["tenant_id"] == "T000")));

    // T900's platform is back: the feed recovers and the stale finding no longer holds.
    push(&s, "tom", "phone_events", &phones("T900", &[1, 2, 3, 4, 5], 11, 13));
    stale_event.until(|e| e.kind == "feed.recovered" && e.data["tenant_id"] == "T900");
    let t900 = open_of(&s, "tom", "type=FEED_STALE");
    assert_eq!(t900.iter().map(|f| f["holding"].as_bool()).collect::<Vec<_>>(), vec![Some(false)]);
    stop.store(true, Ordering::SeqCst);
    let _ = keep_alive.join();
    assert!(s.terminate().success());
}

#[test]
fn rows_that_arrive_late_are_evaluated_at_the_ticks_they_belong_to() {
    let dir = common::library("late");
    let mut s = Server::start_with(&dir, None, &["--tick-interval", "400ms"]);
    s.wait_for("tick 2025-10-04T10:00:00Z");
    push(&s, "ana", "phone_events", &phones("T000", &[1], 9, 12));
    push(&s, "ana", "shifts", &shifts("T000"));
    push(&s, "ana", "sites", &sites("T000"));
    // The ticks up to 10:40 have run when a panic of 10:07 arrives. PANIC_RAISED looks
    // 15 minutes back, so no tick from now on would see it: it belongs to 10:10 .. 10:20.
    s.wait_for("tick 2025-10-04T10:40:00Z");
    push(&s, "ana", "panic_events", "tenant_id,site_id,guard_id,ts,kind\nT000,S1,G1,2025-10-04T10:07:00Z,button\n");
    let line = s.wait_for("late finding(s)");
    // (The batch lands after the 10:40 tick, maybe after the next one too.)
    assert!(line.contains(" late finding(s) from rows that arrived after ticks 2025-10-04T10:10:00Z .. "), "{line}");
    // The panic and its unhandled escalation (no alert followed it), both at their own ticks.
    let late: Vec<(String, String)> = open_of(&s, "ana", "status=all")
        .iter()
        .filter(|x| x["late"] == true && x["first_seen"].as_str().is_some_and(|t| t >= "2025-10-04T10:10:00Z"))
        .map(|x| (x["finding_type"].as_str().unwrap_or("").to_string(), x["first_seen"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(late.iter().all(|(t, _)| t == "PANIC_RAISED" || t == "EMERGENCY_ESCALATION_DELAYED"), "{late:?}");
    let found = open_of(&s, "ana", "type=PANIC_RAISED&status=all");
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(
        (f["late"].as_bool(), f["first_seen"].as_str(), f["guard_id"].as_str()),
        (Some(true), Some("2025-10-04T10:10:00Z"), Some("G1"))
    );
    let (_, detail) = s.get("ana", &format!("/api/v1/findings/{}", f["id"]));
    assert_eq!(detail["history"][0]["event"], "raised late");
    // Nothing else after the start is late: the rows pushed at the start were late only
    // for the 10:00 and 10:05 ticks that had run before them.
    let after_start = open_of(&s, "ana", "status=all");
    let late_after: Vec<&Value> =
        after_start.iter().filter(|x| x["late"] == true && x["first_seen"].as_str().is_some_and(|t| t > "2025-10-04T10:05:00Z")).collect();
    assert!(late_after.iter().all(|x| x["finding_type"] == "PANIC_RAISED" || x["finding_type"] == "EMERGENCY_ESCALATION_DELAYED"));
    assert!(s.terminate().success());
}
