//! `inhibit A, B while C holds at the same site|guard` (issue 11): a silent site does not
//! also raise its phone- and GPS-silence findings as alarms of their own; they are still
//! computed, output with `inhibited_by` and stored, and `explain` names the inhibitor.

mod common;

use common::{root, vigil};
use vigil_engine::exec::{self, Filter};
use vigil_engine::{load, ruleset};

const AT: &str = "2025-10-04T12:00:00Z";

fn library_with(extra: &str) -> std::path::PathBuf {
    let lib = common::temp_dir("inhibit");
    for sub in ["rules", "runbooks"] {
        std::fs::create_dir_all(lib.join(sub)).expect("dir");
        for entry in std::fs::read_dir(root().join(sub)).expect("read") {
            let p = entry.expect("entry").path();
            std::fs::copy(&p, lib.join(sub).join(p.file_name().expect("name"))).expect("copy");
        }
    }
    std::fs::write(lib.join("rules/inhibit.vigil"), extra).expect("write");
    lib
}

const SAME_SITE: &str = "inhibit CRITICAL_SIGNAL_PHONE_EVENTS_LOW, CRITICAL_SIGNAL_LOCATION_UPDATES_LOW\n  while CORRELATION_SILENT_SITE holds at the same site\n";

#[test]
fn findings_at_a_silent_site_are_marked_and_others_are_not() {
    let lib = library_with(SAME_SITE);
    let set = ruleset::load_dirs(&lib.join("rules"), &lib.join("runbooks")).expect("rules check");
    let signals = load::load(&root().join("fixtures/demo")).expect("demo");
    let at = load::parse_timestamp(AT).expect("t");
    let found = exec::evaluate(&signals, &set, at, &Filter::default()).expect("audit");
    let about =
        |t: &str, site: &str| found.iter().find(|f| f.finding_type == t && f.site_id == site).unwrap_or_else(|| panic!("{t} at {site}"));
    // S00005 is silent: both of its signal findings are inhibited by the silent site.
    for t in ["CRITICAL_SIGNAL_PHONE_EVENTS_LOW", "CRITICAL_SIGNAL_LOCATION_UPDATES_LOW"] {
        assert_eq!(about(t, "S00005").inhibited_by.as_deref(), Some("CORRELATION_SILENT_SITE tenant=T001 site=S00005"));
    }
    // S00017's phone silence is not at a silent site; the silent site itself is not inhibited.
    assert_eq!(about("CRITICAL_SIGNAL_PHONE_EVENTS_LOW", "S00017").inhibited_by, None);
    assert_eq!(about("CORRELATION_SILENT_SITE", "S00005").inhibited_by, None);
    // Without the inhibit line nothing is marked, and the output has no such field at all.
    let plain = exec::evaluate(&signals, &common::shipped_rules(), at, &Filter::default()).expect("audit");
    assert!(plain.iter().all(|f| f.inhibited_by.is_none()));
    assert!(!common::jsonl(&plain).contains("inhibited_by"));
    assert_eq!(plain.len(), found.len(), "inhibited findings are still computed");
}

#[test]
fn inhibited_findings_are_stored_shown_and_explained() {
    let lib = library_with(SAME_SITE);
    let rules = lib.join("rules");
    let signals = root().join("fixtures/demo");
    let state = lib.join("state.duckdb");
    let args = ["audit", "--rules", rules.to_str().unwrap(), "--signals", signals.to_str().unwrap(), "--at", AT];
    let (code, out, err) = vigil(&[&args[..], &["--format", "jsonl", "--state", state.to_str().unwrap()]].concat(), &root());
    assert_eq!(code, 0, "{err}");
    let marked: Vec<&str> =
        out.lines().filter(|l| l.contains("\"inhibited_by\":\"CORRELATION_SILENT_SITE tenant=T001 site=S00005\"")).collect();
    assert_eq!(marked.len(), 2, "{out}");
    let (_, table, _) = vigil(&args, &root());
    assert!(
        table.lines().any(|l| l.contains("(inhibited)") && l.contains("CRITICAL_SIGNAL_PHONE_EVENTS_LOW") && l.contains("S00005")),
        "{table}"
    );
    // Stored with the mark.
    let (code, listed, err) = vigil(&["findings", "list", "--state", state.to_str().unwrap(), "--format", "jsonl"], &root());
    assert_eq!(code, 0, "{err}");
    let stored: Vec<&str> = listed.lines().filter(|l| l.contains("\"inhibited_by\":\"CORRELATION_SILENT_SITE")).collect();
    assert_eq!(stored.len(), 2, "{listed}");
    // explain names the inhibitor.
    let (_, explained, _) =
        vigil(&["explain", "CRITICAL_SIGNAL_PHONE_EVENTS_LOW", "--rules", rules.to_str().unwrap(), "--no-sql"], &root());
    assert!(
        explained.contains("inhibited    while CORRELATION_SILENT_SITE holds at the same site (") && explained.contains("inhibit.vigil:1)"),
        "{explained}"
    );
}

#[test]
fn inhibit_lines_are_checked() {
    let lib = library_with("inhibit CRITICAL_SIGNAL_PHONE_EVENTS_LO while CORRELATION_SILENT_SITE holds at the same guard\ninhibit TOUR_OVERDUE while TOUR_OVERDUE holds at the same site\n");
    let (code, out, _) = vigil(&["check", "--rules", lib.join("rules").to_str().unwrap()], &root());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no rule raises finding type `CRITICAL_SIGNAL_PHONE_EVENTS_LO`")
            && out.contains("did you mean `CRITICAL_SIGNAL_PHONE_EVENTS_LOW`?"),
        "{out}"
    );
    assert!(out.contains("`TOUR_OVERDUE` cannot inhibit itself"), "{out}");
    let (code, out, _) = vigil(&["check", "--rules", lib.join("rules").to_str().unwrap(), "--short"], &root());
    assert_eq!(code, 1);
    assert!(out.contains("inhibit.vigil:1:9"), "{out}");
}
