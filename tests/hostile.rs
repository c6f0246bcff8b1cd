//! The hostile-input corpus (issue 15, `tests/hostile/README.md`): for each input a clear
//! error or correct handling, never a panic, never SQL made of data, never data of
//! another tenant.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::server::Server;
use common::{root, temp_dir, vigil};
use serde_json::Value;

const AT: &str = "2025-10-04T12:00:00Z";

fn hostile() -> std::path::PathBuf {
    root().join("tests/hostile")
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[test]
fn strings_full_of_sql_in_rules_and_data_stay_values() {
    let h = hostile();
    let (code, out, err) =
        vigil(&["audit", "--rules", "rules", "--runbooks", "runbooks", "--signals", "signals", "--at", AT, "--format", "jsonl"], &h);
    assert_eq!(code, 0, "{err}");
    let found = jsonl(&out);
    // Worked by hand from the files: S1 matches the name exactly and has one event whose
    // kind is not the needle; S"2 matches `/* x */`, and its override makes the needle
    // `x' OR '1'='1`, so both its events count; S'3 matches the backslash but its one
    // event's kind is the needle; S4 matches nothing.
    assert_eq!(found.len(), 2, "{out}");
    let by_site: BTreeMap<&str, &Value> = found.iter().map(|f| (f["site_id"].as_str().unwrap_or(""), f)).collect();
    let s1 = by_site["S1"];
    let s2 = by_site["S\"2"];
    for f in [s1, s2] {
        assert_eq!(f["tenant_id"], "T'; DROP TABLE sites; --");
        assert_eq!(f["title"], "Quote ' double \" semicolon ; comment -- block /* */ backslash \\ end");
        assert_eq!(f["recommended_actions"][0], "Say \"hi\"; then -- nothing");
        assert_eq!(f["runbook"], "HOSTILE_STRINGS");
        assert_eq!(f["category"], "OPERATIONAL");
    }
    assert_eq!(s1["evidence"]["events"], 1);
    assert_eq!(s1["evidence"]["needle"], "'); DELETE FROM phone_events; --");
    assert_eq!(s2["evidence"]["events"], 2);
    assert_eq!(s2["evidence"]["needle"], "x' OR '1'='1");
    // The runbook's text comes back as written.
    let (code, out, err) = vigil(&["runbook", "show", "HOSTILE_STRINGS", "--rules", "rules", "--runbooks", "runbooks"], &h);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("'; DROP TABLE findings; -- \"runbook\"") && out.contains("Call 'ops'; -- then /* nothing */"), "{out}");
}

#[test]
fn the_hostile_case_file_passes_and_formats_stably() {
    let h = hostile();
    let (code, out, err) = vigil(&["test", "--rules", "rules", "--runbooks", "runbooks", "hostile.case"], &h);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 passed, 0 failed") || err.contains("1 passed, 0 failed"), "{out}{err}");
    let (code, out, err) = vigil(&["fmt", "--check", "hostile.case", "rules", "runbooks"], &h);
    assert_eq!(code, 0, "{out}{err}");
}

/// Writes `value` as one CSV field.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[test]
fn hostile_tenant_and_site_ids_change_no_finding_of_the_demo_fleet() {
    // The demo fleet with every tenant id and site id replaced by hostile text (the demo's
    // files have no quoted fields, so a comma splits them).
    let tenants = [("T000", "T'; DROP TABLE sites; --"), ("T001", "T\"1 /* , */ \\ é")];
    let site = |s: &str| format!("{s}' OR '1'='1 --");
    let dir = temp_dir("hostile-demo");
    for entry in std::fs::read_dir(root().join("fixtures/demo")).expect("demo") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("");
        let columns: Vec<&str> = header.split(',').collect();
        let mut out = format!("{header}\n");
        for line in lines {
            let fields: Vec<String> = line
                .split(',')
                .zip(&columns)
                .map(|(v, c)| match *c {
                    "tenant_id" => tenants.iter().find(|(from, _)| *from == v).map_or(v.to_string(), |(_, to)| to.to_string()),
                    "site_id" if !v.is_empty() => site(v),
                    _ => v.to_string(),
                })
                .map(|v| csv_field(&v))
                .collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        std::fs::write(dir.join(path.file_name().expect("name")), out).expect("write");
    }
    let audit = |signals: &Path| {
        let s = signals.to_str().expect("utf-8");
        let (code, out, err) = vigil(&["audit", "--signals", s, "--at", "2025-10-04T11:00:00Z", "--format", "jsonl"], &root());
        assert_eq!(code, 0, "{err}");
        jsonl(&out)
    };
    let plain = audit(&root().join("fixtures/demo"));
    let renamed = audit(&dir);
    assert!(plain.len() > 10, "the demo fleet has findings to compare");
    // Mapped back, the findings are the same, and none mixes a tenant with another's site.
    let mut back: Vec<String> = renamed
        .into_iter()
        .map(|mut f| {
            let tenant = f["tenant_id"].as_str().unwrap_or("").to_string();
            let (plain_tenant, _) = tenants.iter().find(|(_, to)| *to == tenant).expect("a renamed tenant");
            f["tenant_id"] = Value::from(*plain_tenant);
            let s = f["site_id"].as_str().unwrap_or("").to_string();
            f["site_id"] = Value::from(s.strip_suffix("' OR '1'='1 --").expect("a renamed site"));
            f.to_string()
        })
        .collect();
    let mut want: Vec<String> = plain.iter().map(Value::to_string).collect();
    back.sort();
    want.sort();
    assert_eq!(back, want);
}

#[test]
fn rule_files_that_are_not_text_or_absurdly_large_get_clear_errors() {
    let dir = temp_dir("hostile-files");
    let check = |name: &str, bytes: &[u8]| -> (i32, String) {
        let rules = dir.join(name);
        std::fs::create_dir_all(&rules).expect("mkdir");
        std::fs::write(rules.join("r.vigil"), bytes).expect("write");
        let (code, out, err) = vigil(&["check", "--rules", name, "--runbooks", "none"], &dir);
        (code, out + err.as_str())
    };
    // Invalid UTF-8: the file, line and column of the first bad byte.
    let (code, out) = check("latin1", b"rule B {\n  title \"caf\xe9\"\n  for site\n  when 1 == 1\n}\n");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error[E0101]: rule files are UTF-8 text; this one is not") && out.contains("latin1/r.vigil:2:13"), "{out}");
    assert!(out.contains("byte 0xe9"), "{out}");
    // A NUL byte outside a string: a syntax error that shows it.
    let (code, out) = check("nul", b"rule N {\n  title \"n\"\n  for site\n  when 1 == 1\x00\n}\n");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("nul/r.vigil:4:14") && out.contains("found `\\u{0}`"), "{out}");
    // Brackets 10,000 deep: refused before the parser recurses.
    let deep = format!("rule D {{\n  title \"d\"\n  for site\n  when {}1 == 1{}\n}}\n", "(".repeat(10_000), ")".repeat(10_000));
    let (code, out) = check("deep", deep.as_bytes());
    assert_eq!(code, 1);
    assert!(out.contains("brackets nested more than 64 levels deep"), "{}", &out[..out.len().min(400)]);
    // A one-megabyte line (a title) is a title.
    let long = format!("rule L {{\n  title \"{}\"\n  severity LOW\n  for site\n  when 1 == 1\n}}\n", "x".repeat(1 << 20));
    let (code, out) = check("long", long.as_bytes());
    assert_eq!(code, 0, "{}", &out[..out.len().min(400)]);
}

#[test]
fn ten_thousand_rules_in_one_directory_check_and_five_hundred_run() {
    let dir = temp_dir("hostile-10k");
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("mkdir");
    for i in 0..10_000 {
        let text = format!(
            "rule R{i:05} {{\n  title \"rule {i}\"\n  severity LOW\n  for site\n  let n = count(phone_events where ts in last 15m)\n  when n > {i}\n}}\n"
        );
        std::fs::write(rules.join(format!("r{i:05}.vigil")), text).expect("write");
    }
    let (code, out, err) = vigil(&["check", "--rules", "rules", "--runbooks", "none", "--short"], &dir);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok: 10000 rules"), "{out}");
    // Each rule is a statement of its own (about 15 ms each here, so the 10,000 take
    // minutes: measured in the README); 500 of them run on the demo fleet, the first few fire.
    for i in 500..10_000 {
        std::fs::remove_file(rules.join(format!("r{i:05}.vigil"))).expect("remove");
    }
    let demo = root().join("fixtures/demo");
    let (code, out, err) = vigil(
        &[
            "audit",
            "--rules",
            "rules",
            "--runbooks",
            "none",
            "--signals",
            demo.to_str().expect("utf-8"),
            "--at",
            "2025-10-04T11:00:00Z",
            "--format",
            "jsonl",
        ],
        &dir,
    );
    assert_eq!(code, 0, "{err}");
    let found = jsonl(&out);
    assert!(!found.is_empty() && found.iter().all(|f| f["rule"].as_str().is_some_and(|r| r.starts_with('R'))));
}

#[test]
fn timestamps_at_the_edges_and_zones_that_do_not_exist() {
    let dir = temp_dir("hostile-time");
    let sites = "tenant_id,site_id,name,timezone,lat,lon,geofence_m,active\nT1,S1,x,Europe/London,51.5,-0.1,200,true\n";
    let run = |ts: &str, zone: Option<&str>| {
        let signals = dir.join("signals");
        let _ = std::fs::remove_dir_all(&signals);
        std::fs::create_dir_all(&signals).expect("mkdir");
        let sites = zone.map_or(sites.to_string(), |z| sites.replace("Europe/London", z));
        std::fs::write(signals.join("sites.csv"), sites).expect("write");
        let events = format!("tenant_id,site_id,guard_id,device_id,ts,kind\nT1,S1,G1,D1,{ts},heartbeat\n");
        std::fs::write(signals.join("phone_events.csv"), events).expect("write");
        let rules = root().join("rules");
        vigil(&["audit", "--rules", rules.to_str().expect("utf-8"), "--signals", "signals", "--at", AT], &dir)
    };
    // The edges chrono and DuckDB both represent are data like any other.
    for ts in ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1677-09-21T00:12:43Z", "2025-10-04T12:00:00+14:00"] {
        let (code, _, err) = run(ts, None);
        assert_eq!(code, 0, "{ts}: {err}");
    }
    // Beyond them, or not a date at all: the file, row and column.
    for ts in ["294247-01-10T04:00:55Z", "-0001-01-01T00:00:00Z", "2025-02-30T00:00:00Z", "2025-10-04T25:00:00Z"] {
        let (code, _, err) = run(ts, None);
        assert_eq!(code, 2, "{ts}: {err}");
        assert!(err.contains("phone_events.csv:2: row 1, column `ts`") && err.contains(ts), "{err}");
    }
    let (code, _, err) = run("2025-10-04T12:00:00", None);
    assert_eq!(code, 2);
    assert!(err.contains("has no zone"), "{err}");
    for zone in ["Mars/Olympus_Mons", "Europe/London'; --", "UTC+25"] {
        let (code, _, err) = run("2025-10-04T11:00:00Z", Some(zone));
        assert_eq!(code, 2, "{zone}: {err}");
        assert!(err.contains("sites.csv:2: row 1, column `timezone`") && err.contains("is not an IANA time zone"), "{err}");
    }
    // Evaluation times at the edges run; beyond them the flag is named.
    let demo = root().join("fixtures/demo");
    let demo = demo.to_str().expect("utf-8");
    for at in ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
        let (code, _, err) = vigil(&["audit", "--signals", demo, "--at", at], &root());
        assert_eq!(code, 0, "{at}: {err}");
    }
    let (code, _, err) = vigil(&["audit", "--signals", demo, "--at", "294247-01-10T04:00:55Z"], &root());
    assert_eq!(code, 2);
    assert!(err.contains("--at: `294247-01-10T04:00:55Z` is not an ISO-8601 timestamp"), "{err}");
    // A span of absurdly many ticks is refused before anything is built.
    let (code, _, err) =
        vigil(&["replay", "--signals", demo, "--from", "0001-01-01T00:00:00Z", "--to", "9999-12-31T23:59:59Z", "--every", "1s"], &root());
    assert_eq!(code, 2);
    assert!(err.contains("is 315537897600 ticks; at most 2000000 per run"), "{err}");
}

#[test]
fn hostile_api_parameters_get_4xx_and_never_another_tenants_data() {
    let h = hostile();
    let dir = temp_dir("hostile-api");
    for sub in ["rules", "runbooks", "signals"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        for f in std::fs::read_dir(h.join(sub)).expect("read") {
            let p = f.expect("entry").path();
            std::fs::copy(&p, dir.join(sub).join(p.file_name().expect("name"))).expect("copy");
        }
    }
    let mut s = Server::start(&dir, &dir.join("signals"), &["--tick-interval", "200ms"]);
    s.wait_for(&format!("tick {AT}"));
    let (status, all) = s.get("root", "/api/v1/findings");
    assert_eq!(status, 200, "{all}");
    let total = all["findings"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(total, 2, "{all}");
    // `ana` (tenant T000) sees none of them, whatever the parameters say.
    let hostile_values = [
        "' OR '1'='1",
        "T'; DROP TABLE sites; --",
        "T000' OR tenant_id LIKE '%",
        "%00",
        "%FF%FE",
        "\\",
        "%22%3B--",
        "18446744073709551616",
        "-1",
        "1e9",
        "../../etc/passwd",
    ];
    for key in ["tenant", "site", "type", "severity", "status", "since", "limit", "offset", "sort", "nonsense"] {
        for value in hostile_values {
            let path = format!("/api/v1/findings?{key}={value}");
            for who in ["ana", "root"] {
                let (status, body) = s.get(who, &path);
                assert!(status < 500, "{who} {path}: {status} {body}");
                if who == "ana" && status == 200 {
                    assert_eq!(body["findings"].as_array().map(Vec::len), Some(0), "ana saw another tenant: {path} {body}");
                }
            }
        }
    }
    for path in
        ["/api/v1/findings/1%20OR%201=1", "/api/v1/findings/-1", "/api/v1/findings/99999999999999999999", "/api/v1/runbooks/%27%3B--"]
    {
        let (status, body) = s.get("root", path);
        assert!((400..500).contains(&status), "{path}: {status} {body}");
    }
    // The findings of another tenant are not there to be acknowledged by id.
    let id = all["findings"][0]["id"].as_i64().expect("an id");
    let (status, _) =
        s.post("ana", &format!("/api/v1/findings/{id}/acknowledge"), serde_json::json!({ "note": "'; DROP TABLE findings; --" }));
    assert!(status == 403 || status == 404, "{status}");
    // A silence whose matcher is full of SQL is a value, and the store is intact.
    let silence = serde_json::json!({
        "tenant": "T000", "site": "S'; DROP TABLE findings; --", "finding_type": "X' OR '1'='1",
        "duration": "1h", "reason": "/* */ --"
    });
    let (status, body) = s.post("ana", "/api/v1/silences", silence);
    assert!(status < 500, "{status} {body}");
    let (status, again) = s.get("root", "/api/v1/findings");
    assert_eq!(status, 200);
    assert_eq!(again["findings"].as_array().map(Vec::len), Some(total), "{again}");
    s.terminate();
}
