//! Pushed signals: `POST /api/v1/signals/{table}` validates as files are, stores a
//! batch all or nothing and once per Idempotency-Key, keeps rows by event time
//! for their retention, and ticks read the rows their rules' windows need.

mod common;

use std::collections::BTreeMap;

use common::server::Server;
use reqwest::Method;
use serde_json::{json, Value};
use vigil_engine::ingest;
use vigil_engine::load::{self, BatchFormat};
use vigil_engine::schema;

const PHONE_RULE: &str = "rule ZZ_PHONE_SEEN {
  finding ZZ_PHONE_SEEN
  title \"Phone events seen\"
  severity LOW
  for site
  let n = count(phone_events where ts in last 1h)
  when n >= 1
}
";

const SITES: &str = "tenant_id,site_id,name,timezone,lat,lon,geofence_m,active
T000,S1,North gate,Europe/London,51.5,-0.1,200,true
";

fn phone_lines(times: &[&str]) -> String {
    times
        .iter()
        .map(|t| {
            json!({ "tenant_id": "T000", "site_id": "S1", "guard_id": "G1", "device_id": "D1", "ts": t, "kind": "heartbeat" }).to_string()
                + "\n"
        })
        .collect()
}

fn push(s: &Server, who: &str, table: &str, csv: bool, body: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = s.as_(who, Method::POST, &format!("/api/v1/signals/{table}")).body(body.to_string());
    req = req.header("Content-Type", if csv { "text/csv" } else { "application/x-ndjson" });
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    common::server::answer(req)
}

fn feed_rows(s: &Server, who: &str, table: &str) -> i64 {
    let (_, feed) = s.get(who, "/api/v1/feed");
    feed["feeds"].as_array().into_iter().flatten().filter(|f| f["table"] == table).filter_map(|f| f["rows"].as_i64()).sum()
}

#[test]
fn pushed_rows_are_validated_stored_once_kept_for_their_retention_and_evaluated() {
    let dir = common::library("ingest");
    std::fs::write(dir.join("rules/zz_phone_seen.vigil"), PHONE_RULE).expect("write");
    let mut s = Server::start_with(&dir, None, &["--tick-interval", "400ms", "--retain", "phone_events=2d"]);
    s.wait_for("tick 2025-10-04T10:00:00Z");

    // A site (CSV), then phone events (JSON lines).
    let (status, body) = push(&s, "ana", "sites", true, SITES, None);
    assert_eq!((status, body["rows"].as_i64()), (201, Some(1)), "{body}");

    // A bad row refuses the whole batch, naming line, row and column as for files.
    let mut bad = phone_lines(&["2025-10-04T11:00:00Z", "2025-10-04T11:01:00Z"]);
    bad.push_str(&phone_lines(&["2025-10-04 11:02"]));
    let (status, body) = push(&s, "ana", "phone_events", false, &bad, None);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "ts");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.starts_with("POST /api/v1/signals/phone_events:3: row 3, column `ts`:"), "{message}");
    assert_eq!(feed_rows(&s, "ana", "phone_events"), 0, "nothing of a refused batch is stored");
    // A missing column and an unknown table.
    let (status, body) = push(&s, "ana", "sites", true, "tenant_id,site_id\nT000,S2\n", None);
    assert_eq!((status, body["field"].as_str()), (422, Some("name")), "{body}");
    assert_eq!(push(&s, "ana", "phones", false, "{}", None).0, 404);
    // Another tenant's rows: 403, nothing stored.
    let foreign = phone_lines(&["2025-10-04T11:00:00Z"]).replace("T000", "T900");
    let (status, body) = push(&s, "ana", "phone_events", false, &foreign, None);
    assert_eq!(status, 403, "{body}");
    assert_eq!(push(&s, "val", "phone_events", false, &phone_lines(&["2025-10-04T11:00:00Z"]), None).0, 403, "viewers cannot push");

    // The same batch twice with one key: stored once.
    let good = phone_lines(&["2025-10-04T11:00:00Z", "2025-10-04T11:01:00Z", "2025-09-01T00:00:00Z"]);
    let (status, body) = push(&s, "ana", "phone_events", false, &good, Some("batch-1"));
    assert_eq!((status, body["duplicate"].as_bool()), (201, Some(false)), "{body}");
    let (status, body) = push(&s, "ana", "phone_events", false, &good, Some("batch-1"));
    assert_eq!((status, body["duplicate"].as_bool(), body["rows"].as_i64()), (200, Some(true), Some(3)), "{body}");
    assert_eq!(feed_rows(&s, "ana", "phone_events"), 3);
    assert_eq!(feed_rows(&s, "tom", "phone_events"), 0, "another tenant's feed is not shown");

    // The tick at 11:00 reads the pushed rows: the rule fires for S1, then clears once
    // the events are more than an hour old.
    s.wait_for("tick 2025-10-04T11:00:00Z");
    let (_, found) = s.get("ana", "/api/v1/findings?type=ZZ_PHONE_SEEN");
    let f = &found["findings"][0];
    assert_eq!((f["site_id"].as_str(), f["first_seen"].as_str()), (Some("S1"), Some("2025-10-04T11:00:00Z")), "{found}");
    s.wait_for("tick 2025-10-04T12:15:00Z");
    let (_, found) = s.get("ana", "/api/v1/findings?type=ZZ_PHONE_SEEN");
    assert_eq!(found["findings"][0]["holding"], false, "an hour after the last event the rule no longer holds: {found}");

    // Retention (2 days for phone events): the row of 1 September went at the hourly pass.
    assert_eq!(feed_rows(&s, "ana", "phone_events"), 2);
    let text = s.as_("root", Method::GET, "/metrics").send().expect("metrics").text().unwrap_or_default();
    assert!(text.lines().any(|l| l == "vigil_ingest_rows_total{table=\"phone_events\"} 3"), "{text}");
    assert!(text.lines().any(|l| l == "vigil_ingest_rejected_total{table=\"phone_events\"} 2"), "{text}");
    assert!(s.terminate().success());
}

#[test]
fn a_tick_copies_only_the_rows_its_windows_read() {
    let dir = common::temp_dir("ingest-window");
    let db = dir.join("signals.duckdb");
    let phones = schema::table("phone_events").expect("table");
    let origin = std::path::Path::new("batch");
    let times = ["2025-10-04T08:59:00Z", "2025-10-04T09:30:00Z", "2025-10-04T10:00:00Z", "2025-10-04T10:05:00Z"];
    let rows = load::parse_batch(phones, BatchFormat::JsonLines, &phone_lines(&times), origin).expect("parses");
    ingest::store_batch(&db, phones, rows, Some("k"), Some(1)).expect("stored");
    let sites = schema::table("sites").expect("table");
    let rows = load::parse_batch(sites, BatchFormat::Csv, SITES, origin).expect("parses");
    ingest::store_batch(&db, sites, rows, None, Some(2)).expect("stored");
    let at = load::parse_timestamp("2025-10-04T10:00:00Z").expect("time");
    let count = |ranges: &BTreeMap<&'static str, Option<i64>>| {
        let sig = load::empty().expect("empty");
        ingest::copy_window(&db, &sig, at, ranges).expect("copied");
        (sig.count_rows(phones, None).expect("count"), sig.count_rows(sites, None).expect("count"))
    };
    // One hour back: (09:00, 10:00] holds 09:30 and 10:00.
    assert_eq!(count(&BTreeMap::from([("phone_events", Some(3_600_000_000)), ("sites", None)])), (2, 1));
    // No window: every row up to the tick.
    assert_eq!(count(&BTreeMap::from([("phone_events", None)])), (3, 0));
    // A table no rule reads is not copied.
    assert_eq!(count(&BTreeMap::new()), (0, 0));
    // The shipped rules' ranges: bounded for phone events, whole for sites.
    let ranges = common::shipped_rules().read_ranges();
    assert_eq!(ranges.get("sites"), Some(&None));
    assert!(ranges.contains_key("phone_events"));

    // Arrivals per tenant and table; retention by event time.
    let arrivals = ingest::arrivals(&db).expect("arrivals");
    let phone = arrivals.iter().find(|a| a.table == "phone_events").expect("phone arrivals");
    assert_eq!((phone.tenant.as_str(), phone.rows, phone.last_received), ("T000", 4, 1));
    assert_eq!(phone.last_event, load::parse_timestamp("2025-10-04T10:05:00Z").ok());
    let removed = ingest::prune(&db, at, &BTreeMap::from([("phone_events", 3_600_000_000)])).expect("prune");
    assert_eq!(removed.get("phone_events"), Some(&1), "only 08:59 is older than an hour before 10:00");
    // A repeated key stores nothing and answers with the first batch's size.
    let rows = load::parse_batch(phones, BatchFormat::JsonLines, &phone_lines(&times[..1]), origin).expect("parses");
    let again = ingest::store_batch(&db, phones, rows, Some("k"), Some(3)).expect("stored");
    assert_eq!((again.rows, again.duplicate), (4, true));
    assert_eq!(ingest::arrivals(&db).expect("arrivals").iter().find(|a| a.table == "phone_events").map(|a| a.rows), Some(3));
}

#[test]
fn ingest_is_limited_in_size_and_in_requests_per_token() {
    let dir = common::library("ingest-limits");
    let mut s = Server::start_with(&dir, None, &["--tick-interval", "400ms", "--ingest-rate", "3"]);
    s.wait_for("tick 2025-10-04T10:00:00Z");
    let one = phone_lines(&["2025-10-04T09:50:00Z"]);
    // Twelve requests at once: a burst of one second's worth (3) is taken, then 3 a
    // second; however slow the machine, the others are refused with 429 and Retry-After.
    let started = std::time::Instant::now();
    let answers: Vec<(u16, Option<u64>, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                let req = s.as_("ana", Method::POST, "/api/v1/signals/phone_events").body(one.clone());
                scope.spawn(move || {
                    let answer = req.send().expect("send");
                    let status = answer.status().as_u16();
                    let retry = answer.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
                    (status, retry, answer.text().unwrap_or_default())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("request thread")).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let taken = answers.iter().filter(|(status, _, _)| *status == 201).count();
    let refused: Vec<&(u16, Option<u64>, String)> = answers.iter().filter(|(status, _, _)| *status == 429).collect();
    assert_eq!(taken + refused.len(), 12, "{answers:?}");
    assert!(taken >= 3, "the burst is taken: {answers:?}");
    assert!(taken as f64 <= 3.0 + 3.0 * elapsed + 1.0, "{taken} taken in {elapsed:.2} s: {answers:?}");
    let (_, retry, body) = refused.first().expect("a refused request");
    assert!(retry.is_some_and(|r| (1..=2).contains(&r)), "Retry-After {retry:?}");
    assert!(body.contains("token `ana` is over its ingest rate (3 requests a second)"), "{body}");
    // Another token has a bucket of its own.
    let (status, body) = push(&s, "mia", "phone_events", false, &one, None);
    assert_eq!(status, 201, "{body}");
    // The bucket refills.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (status, body) = push(&s, "ana", "phone_events", false, &one, None);
    assert_eq!(status, 201, "{body}");
    // A body over 16 MiB is refused whole, before it is read into a batch.
    let huge = "x".repeat(16 * 1024 * 1024 + 1);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (status, _) = push(&s, "ana", "phone_events", false, &huge, None);
    assert_eq!(status, 413);
    s.terminate();
}
