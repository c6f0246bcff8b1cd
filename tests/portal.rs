//! Client reports in `vigil serve`: the schedule builds each tenant's daily report at
//! 06:00 local (the run starts at 2025-10-04T10:00Z, past 06:00 in London and Berlin, so
//! the first tick builds 2025-10-03's), review holds a tenant's reports until an admin
//! approves them, and a client token sees its tenant's published reports and the portal,
//! and nothing else.

mod common;

use common::server::{answer, client, twins, Server};
use serde_json::{json, Value};

fn reports(s: &Server, who: &str) -> Vec<Value> {
    let (status, body) = s.get(who, "/api/v1/reports");
    assert_eq!(status, 200, "{body}");
    body["reports"].as_array().cloned().unwrap_or_default()
}

#[test]
fn scheduled_reports_review_and_a_clients_scope() {
    let dir = common::library("portal");
    let signals = twins("portal-signals");
    let mut s = Server::start(&dir, &signals, &["--tick-interval", "2s", "--report-schedule", "--report-review", "T900"]);
    s.wait_for("tick 2025-10-04T10:00:00Z");
    s.wait_for("serve: report RPT-T900-20251003-20251003-");

    // The client of T000 sees T000's daily report, published; not T900's (held for review,
    // and another tenant's anyway).
    let mine = reports(&s, "cleo");
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(
        (mine[0]["tenant"].as_str(), mine[0]["kind"].as_str(), mine[0]["from"].as_str()),
        (Some("T000"), Some("daily"), Some("2025-10-03"))
    );
    assert_eq!(mine[0]["status"], "published");
    let id = mine[0]["id"].as_str().expect("id").to_string();
    let pdf = client().get(s.url(&format!("/api/v1/reports/{id}/pdf"))).bearer_auth(&s.tokens["cleo"]).send().expect("pdf");
    assert_eq!(pdf.status().as_u16(), 200);
    assert_eq!(pdf.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/pdf"));
    assert!(pdf.bytes().expect("bytes").starts_with(b"%PDF-"));
    let html = client().get(s.url(&format!("/api/v1/reports/{id}/html"))).bearer_auth(&s.tokens["cleo"]).send().expect("html");
    assert!(html.text().expect("text").contains("Activity report"));

    // T900's report waits for review: its operator sees it pending; the T000 client never does.
    let theirs = reports(&s, "tom");
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["status"], "pending_review");
    let held = theirs[0]["id"].as_str().expect("id").to_string();
    let (status, _) = s.get("cleo", &format!("/api/v1/reports/{held}/pdf"));
    assert_eq!(status, 404, "another tenant's report does not exist for a client");
    let (status, _) = s.post("tom", &format!("/api/v1/reports/{held}/approve"), json!({ "note": "checked" }));
    assert_eq!(status, 403, "approving needs the admin (supervisor) role");
    let (status, body) =
        s.post("mia", &format!("/api/v1/reports/{held}/approve"), json!({ "note": "figures checked with the site manager" }));
    assert_eq!((status, body["status"].as_str(), body["approved_by"].as_str()), (200, Some("published"), Some("mia")), "{body}");
    let (status, _) = s.post("mia", &format!("/api/v1/reports/{held}/approve"), json!({ "note": "again" }));
    assert_eq!(status, 409);

    // A client token reads reports and the portal summary, and nothing else.
    for path in ["/api/v1/findings", "/api/v1/rules", "/api/v1/events", "/api/v1/actions", "/api/v1/silences", "/metrics"] {
        let (status, body) = s.get("cleo", path);
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, _) = s.post("cleo", "/api/v1/reports", json!({ "tenant": "T000", "from": "2025-10-04", "to": "2025-10-04" }));
    assert_eq!(status, 403, "clients do not build reports");
    let (status, summary) = s.get("cleo", "/api/v1/portal/summary");
    assert_eq!(status, 200);
    let tenants: Vec<&String> = summary["tenants"].as_object().expect("tenants").keys().collect();
    assert_eq!(tenants, ["T000"]);
    assert!(summary["tenants"]["T000"]["findings"].as_u64().is_some_and(|n| n > 0), "{summary}");
    let (status, page) = answer(client().get(s.url("/portal")));
    assert_eq!(status, 200, "{page}");

    // An operator builds one on demand; it is listed for the client at once.
    let (status, built) =
        s.post("ana", "/api/v1/reports", json!({ "tenant": "T000", "site": "S00012", "from": "2025-10-04", "to": "2025-10-04" }));
    assert_eq!(status, 201, "{built}");
    assert_eq!(
        (built["kind"].as_str(), built["built_by"].as_str(), built["site"].as_str()),
        (Some("on-demand"), Some("ana"), Some("S00012"))
    );
    assert_eq!(reports(&s, "cleo").len(), 2);
    let (status, body) = s.post("ana", "/api/v1/reports", json!({ "tenant": "T900", "from": "2025-10-04", "to": "2025-10-04" }));
    assert_eq!((status, body["field"].as_str()), (422, Some("tenant")), "not ana's tenant");
    let (status, body) = s.post("ana", "/api/v1/reports", json!({ "tenant": "T000", "from": "2025-10-05", "to": "2025-10-04" }));
    assert_eq!((status, body["field"].as_str()), (422, Some("to")));

    // A restart builds nothing twice.
    assert!(s.terminate().success());
    let before = std::fs::read_dir(dir.join("state.reports")).expect("dir").count();
    let mut s = Server::start(&dir, &signals, &["--tick-interval", "2s", "--report-schedule", "--report-review", "T900"]);
    s.wait_for("tick 2025-10-04T");
    s.wait_for("tick 2025-10-04T");
    assert_eq!(std::fs::read_dir(dir.join("state.reports")).expect("dir").count(), before);
    assert!(s.terminate().success());
}
