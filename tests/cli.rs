//! The CLI as a user runs it: exit codes, output formats, determinism.

mod common;

use common::{root, vigil, write_dir};

const AT: &str = "2025-10-04T12:00:00Z";

#[test]
fn check_passes_on_the_shipped_library() {
    let (code, out, err) = vigil(&["check"], &root());
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("ok: "), "{out}");
}

#[test]
fn check_reports_every_error_with_file_line_col_and_exits_1() {
    let dir = write_dir(
        "check-broken",
        &[(
            "bad.vigil",
            "rule BAD {\n  title \"x\"\n  severity HIGH\n  for site\n  when count(phone_event where ts in last 60m) == 0 and nope\n}\n",
        )],
    );
    let (code, out, _) = vigil(&["check", "--rules", dir.to_str().unwrap(), "--short"], &root());
    assert_eq!(code, 1);
    assert!(out.contains("bad.vigil:5:14: error[E0201]: unknown table `phone_event`"), "{out}");
    let (code, out, _) = vigil(&["check", "--rules", dir.to_str().unwrap()], &root());
    assert_eq!(code, 1);
    assert!(out.contains("did you mean `phone_events`?"), "{out}");
}

#[test]
fn audit_jsonl_has_every_contract_field_and_is_byte_identical_across_runs() {
    let signals = root().join("fixtures/demo");
    let args = ["audit", "--signals", signals.to_str().unwrap(), "--at", "2025-10-04T12:00:00Z", "--format", "jsonl"];
    let (code, first, err) = vigil(&args, &root());
    assert_eq!(code, 0, "{err}");
    let (_, second, _) = vigil(&args, &root());
    assert_eq!(first, second);
    assert!(first.lines().count() > 5, "the demo fixture should raise findings:\n{first}");
    for line in first.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        for field in [
            "finding_type",
            "rule",
            "tenant_id",
            "site_id",
            "guard_id",
            "entity_id",
            "category",
            "severity",
            "detected_at",
            "title",
            "evidence",
            "runbook",
            "suppressed",
        ] {
            assert!(v.get(field).is_some(), "missing {field} in {line}");
        }
        assert_eq!(v["detected_at"], "2025-10-04T12:00:00Z");
        assert!(!v["tenant_id"].is_null() && !v["site_id"].is_null());
    }
}

#[test]
fn a_bad_timestamp_is_refused_with_file_row_and_column() {
    let dir = write_dir(
        "bad-ts",
        &[(
            "tasks.csv",
            "tenant_id,site_id,task_id,assignee_id,priority,created_at,due_at,completed_at\n\
             T1,S1,K1,G1,HIGH,2025-10-04T10:00:00Z,2025-10-04T11:00:00Z,\n\
             T1,S1,K2,G1,HIGH,2025-10-04T10:00:00Z,2025-10-04T11:00:00,\n",
        )],
    );
    let (code, out, err) = vigil(&["audit", "--signals", dir.to_str().unwrap(), "--at", AT], &root());
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("tasks.csv:3: row 2, column `due_at`: timestamp `2025-10-04T11:00:00` has no zone"), "{err}");
}

#[test]
fn a_missing_column_is_refused() {
    let dir = write_dir("missing-col", &[("sites.csv", "tenant_id,site_id,name\nT1,S1,x\n")]);
    let (code, _, err) = vigil(&["audit", "--signals", dir.to_str().unwrap(), "--at", AT], &root());
    assert_eq!(code, 2);
    assert!(err.contains("sites.csv:1: column `timezone`: missing column `timezone`"), "{err}");
}

#[test]
fn unknown_files_are_ignored_with_a_warning() {
    let dir = write_dir("unknown-file", &[("notes.txt", "hello"), ("guards.csv", "a\n1\n")]);
    let (code, out, err) = vigil(&["audit", "--signals", dir.to_str().unwrap(), "--at", AT], &root());
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("guards.csv: ignored"), "{err}");
    assert_eq!(out, "no findings\n");
}

#[test]
fn explain_shows_the_rule_and_its_sql() {
    let (code, out, err) = vigil(&["explain", "CORRELATION_SILENT_SITE", "--at", AT], &root());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rule CORRELATION_SILENT_SITE"));
    assert!(out.contains("-- SQL as of 2025-10-04T12:00:00Z"));
    assert!(out.contains("SELECT unnest([TIMESTAMP '2025-10-04 12:00:00.000000']::TIMESTAMP[]) AS \"__tick\""), "one tick:\n{out}");
    // Activity is read 3h (the lookback) before each tick, and the scan is bounded by
    // constants from the ticks so Parquet can skip what no tick needs.
    assert!(out.contains("(\"r\".\"ts\" > (\"k\".\"__tick\" - to_microseconds(10800000000)))"), "{out}");
    assert!(out.contains("(\"r\".\"ts\" > TIMESTAMP '2025-10-04 09:00:00.000000')"), "{out}");
    let (code, _, err) = vigil(&["explain", "CORRELATION_SILENT_SIT"], &root());
    assert_eq!(code, 2);
    assert!(err.contains("did you mean `CORRELATION_SILENT_SITE`?"), "{err}");
}

#[test]
fn explain_with_signals_says_why_each_candidate_fires_or_not() {
    let signals = root().join("fixtures/demo");
    let (code, out, err) = vigil(&["explain", "CORRELATION_SILENT_SITE", "--at", AT, "--signals", signals.to_str().unwrap()], &root());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("fires=true") && out.contains("fires=false"), "{out}");

    // An anomaly rule shows the threshold the bucket is held to: ANOMALY_METRIC_BELOW is
    // `young widen`, so at 30 samples 2.5 becomes 2.5 x young_factor(2.5, 30) = 2.709973
    // (tools/anomaly_v2/reference.py). The snowstorm hour is the third in a row: it fires.
    let nyc = root().join("fixtures/nyc_taxi");
    let args = ["explain", "ANOMALY_METRIC_BELOW", "--at", "2015-01-27T08:00:00Z", "--signals", nyc.to_str().unwrap(), "--no-sql"];
    let (code, out, err) = vigil(&args, &root());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("level=hour_of_week  samples_per_level=30/210/5042"), "{out}");
    assert!(out.contains("threshold=2.709973  fires=true"), "{out}");
}

#[test]
fn bad_times_and_durations_exit_2() {
    let signals = root().join("fixtures/demo");
    let s = signals.to_str().unwrap();
    assert_eq!(vigil(&["audit", "--signals", s, "--at", "yesterday"], &root()).0, 2);
    assert_eq!(vigil(&["replay", "--signals", s, "--from", AT, "--to", AT, "--every", "5 minutes"], &root()).0, 2);
    assert_eq!(vigil(&["audit", "--signals", "/nonexistent/signals", "--at", AT], &root()).0, 2);
}

#[test]
fn demo_prints_a_table_of_findings() {
    let (code, out, err) = vigil(&["demo", "--sites", "30"], &root());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Vigil demo"));
    assert!(out.contains("CORRELATION_SILENT_SITE"), "{out}");
}

#[test]
fn generate_writes_every_table_and_audit_reads_it() {
    let dir = common::temp_dir("generate");
    let out_dir = dir.join("fleet");
    let (code, out, err) =
        vigil(&["generate", "--sites", "20", "--hours", "6", "--seed", "3", "--out", out_dir.to_str().unwrap()], &root());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("audit it at 2025-10-03T18:00:00Z"), "{out}");
    for t in [
        "sites",
        "shifts",
        "phone_events",
        "location_updates",
        "tasks",
        "tours",
        "checkpoint_scans",
        "alerts",
        "tickets",
        "panic_events",
        "reports",
        "metrics",
        "maintenance_windows",
    ] {
        assert!(out_dir.join(format!("{t}.parquet")).exists(), "{t}");
    }
    let (code, _, err) =
        vigil(&["audit", "--signals", out_dir.to_str().unwrap(), "--at", "2025-10-03T18:00:00Z", "--format", "jsonl"], &root());
    assert_eq!(code, 0, "{err}");
}

#[test]
fn categorize_applies_the_severity_adjustments_from_outside() {
    let cases = [("59", "MEDIUM"), ("60", "HIGH"), ("119", "HIGH"), ("120", "CRITICAL")];
    for (minutes, severity) in cases {
        let (code, out, err) = vigil(&["categorize", "TOUR_OVERDUE", "--context", &format!("overdue_minutes={minutes}")], &root());
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("category      SECURITY  (keyword TOUR)"), "{out}");
        assert!(out.contains(&format!("severity      {severity} ")), "{minutes} min: {out}");
    }
    let (_, out, _) = vigil(&["categorize", "SLA_BREACH", "--context", "priority=CRITICAL"], &root());
    assert!(out.contains("severity      CRITICAL"), "{out}");
    let (_, out, _) = vigil(&["categorize", "CORRELATION_GUARD_DISTRESS"], &root());
    assert!(out.contains("category      SAFETY  (keyword DISTRESS)"), "{out}");
}

#[test]
fn suppressed_findings_are_output_and_hidden_only_on_request() {
    let dir = write_dir(
        "suppressed",
        &[
            ("sites.csv", "tenant_id,site_id,name,timezone,lat,lon,geofence_m,active\nT1,S1,A,Europe/London,51.5,-0.12,200,true\nT1,S2,B,Europe/London,51.5,-0.12,200,true\n"),
            (
                "shifts.csv",
                "tenant_id,site_id,shift_id,guard_id,starts_at,ends_at,checked_in_at,checked_out_at\n\
                 T1,S1,SH1,G1,2025-10-04T11:00:00Z,2025-10-04T19:00:00Z,,\n\
                 T1,S2,SH2,G2,2025-10-04T11:00:00Z,2025-10-04T19:00:00Z,,\n",
            ),
            ("maintenance_windows.csv", "tenant_id,site_id,starts_at,ends_at,reason,finding_types\nT1,S1,2025-10-04T10:00:00Z,2025-10-04T14:00:00Z,works,ATTENDANCE_NO_SHOW\n"),
        ],
    );
    let base = ["audit", "--signals", dir.to_str().unwrap(), "--at", AT, "--format", "jsonl", "--rule", "ATTENDANCE_NO_SHOW"];
    let (code, out, err) = vigil(&base, &root());
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!((lines[0]["site_id"].as_str(), lines[0]["suppressed"].as_bool()), (Some("S1"), Some(true)));
    assert_eq!((lines[1]["site_id"].as_str(), lines[1]["suppressed"].as_bool()), (Some("S2"), Some(false)));
    let mut hidden = base.to_vec();
    hidden.push("--hide-suppressed");
    let (_, out, _) = vigil(&hidden, &root());
    assert_eq!(out.lines().count(), 1);
    assert!(out.contains("\"site_id\":\"S2\""), "{out}");
}

#[test]
fn vigil_test_reports_failing_cases_with_a_diff_and_exits_1() {
    let good = std::fs::read_to_string(root().join("tests/cases/silent_site_fires.case")).expect("case");
    let wrong = good.replace("severity=CRITICAL", "severity=HIGH");
    let snap = std::fs::read_to_string(root().join("tests/cases/silent_site_fires.case.snap")).expect("snapshot");
    let files = [("good.case", &good), ("wrong.case", &wrong), ("good.case.snap", &snap), ("wrong.case.snap", &snap)];
    let dir = write_dir("vigil-test", &files.map(|(n, t)| (n, t.as_str())));
    let (code, out, _) = vigil(&["test", dir.to_str().unwrap()], &root());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL"), "{out}");
    assert!(out.contains("expected CORRELATION_SILENT_SITE") && out.contains("severity=HIGH but no such finding"), "{out}");
    assert!(out.contains("unexpected finding: CORRELATION_SILENT_SITE tenant=T1 site=S1 guard=- entity=- severity=CRITICAL"), "{out}");
    assert!(out.trim_end().ends_with("1 passed, 1 failed"), "{out}");
    let (code, xml, _) = vigil(&["test", "--format", "junit", dir.to_str().unwrap()], &root());
    assert_eq!(code, 1);
    assert!(xml.contains("<testsuite name=\"vigil\" tests=\"2\" failures=\"1\">") && xml.contains("<failure message="), "{xml}");
}

#[test]
fn check_strict_passes_on_the_library_and_reports_json_for_editors() {
    let (code, out, err) = vigil(&["check", "--strict"], &root());
    assert_eq!(code, 0, "{out}{err}");
    let dir = write_dir(
        "strict",
        &[
            ("a.vigil", "rule UNTESTED {\n  title \"No case runs me\"\n  severity LOW\n  for site\n  when true\n}\n"),
            (
                "b.vigil",
                "rule UNTESTED_TOO {\n  finding UNTESTED\n  title \"Same type again\"\n  severity LOW\n  for site\n  when true\n}\n",
            ),
        ],
    );
    let (code, out, _) =
        vigil(&["check", "--strict", "--rules", dir.to_str().unwrap(), "--tests", dir.to_str().unwrap(), "--format", "json"], &root());
    assert_eq!(code, 1);
    let codes: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["code"].as_str().unwrap_or("").to_string())
        .collect();
    for expected in ["W0103", "W0104", "W0106", "W0107"] {
        assert!(codes.iter().any(|c| c == expected), "{expected} missing in {out}");
    }
}

#[test]
fn fmt_check_passes_on_the_shipped_files_and_fmt_fixes_a_messy_one() {
    let root = common::root();
    let (code, out, err) = common::vigil(&["fmt", "--check"], &root);
    assert_eq!(code, 0, "{out}{err}");
    let dir = common::write_dir(
        "fmt",
        &[("messy.vigil", "# keep me\nrule  X {\n\t\ttitle \"t\"   \n\n\n  severity LOW\n}\n\n\n\nmacro m = 1\n")],
    );
    let file = dir.join("messy.vigil");
    let (code, out, _) = common::vigil(&["fmt", "--check", file.to_str().expect("path")], &root);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not formatted"), "{out}");
    let (code, _, err) = common::vigil(&["fmt", file.to_str().expect("path")], &root);
    assert_eq!(code, 0, "{err}");
    let once = std::fs::read_to_string(&file).expect("read");
    assert_eq!(once, "# keep me\nrule  X {\n  title \"t\"\n\n  severity LOW\n}\n\nmacro m = 1\n");
    let (code, _, _) = common::vigil(&["fmt", "--check", file.to_str().expect("path")], &root);
    assert_eq!(code, 0, "formatting is idempotent");
}

#[test]
fn baseline_update_is_exactly_once_and_show_prints_168_slots() {
    let root = common::root();
    let state = common::temp_dir("cli-baseline").join("state.duckdb");
    let state = state.to_str().expect("path");
    let args = ["baseline", "update", "--signals", "fixtures/nyc_taxi", "--until", "2014-08-01T04:00:00Z", "--state", state];
    let (code, out, err) = common::vigil(&args, &root);
    assert_eq!(code, 0, "{err}");
    // July 2014 in New York: 31 days x 24 hours, every bucket has rows.
    assert!(out.contains("platform_metrics: folded 744 bucket(s) after the beginning up to 2014-08-01T04:00:00Z"), "{out}");
    let (_, again, _) = common::vigil(&args, &root);
    assert!(again.contains("platform_metrics: folded 0 bucket(s)"), "{again}");
    let (code, shown, err) =
        common::vigil(&["baseline", "show", "--site", "NYC-TAXI", "--metric", "platform_metrics", "--state", state], &root);
    assert_eq!(code, 0, "{err}");
    let slots: Vec<&str> = shown.lines().filter(|l| l.starts_with("passengers")).collect();
    assert_eq!(slots.len(), 168, "{shown}");
    // July 2014 has 4 Mondays (7, 14, 21, 28) and 5 Tuesdays (1, 8, 15, 22, 29).
    assert!(slots[0].starts_with("passengers Mon 00:00") && slots[0].split_whitespace().nth(3) == Some("4"), "{}", slots[0]);
    assert!(slots[24].starts_with("passengers Tue 00:00") && slots[24].split_whitespace().nth(3) == Some("5"), "{}", slots[24]);
}

#[test]
fn findings_store_upserts_by_identity_and_keeps_the_lifecycle() {
    let root = common::root();
    let state = common::temp_dir("cli-findings").join("state.duckdb");
    let st = state.to_str().expect("path");
    let audit = |at: &str| common::vigil(&["audit", "--signals", "fixtures/demo", "--at", at, "--state", st, "--format", "jsonl"], &root);
    let (code, first, err) = audit("2025-10-04T11:00:00Z");
    assert_eq!(code, 0, "{err}");
    let raised = first.lines().count();
    assert!(err.contains(&format!("{raised} new, 0 seen again")), "{err}");
    // The same time again, or an earlier one: nothing changes (a restart re-running a tick).
    let (_, _, err) = audit("2025-10-04T11:00:00Z");
    assert!(err.contains("is not after the last time written; nothing recorded"), "{err}");
    let (_, _, err) = audit("2025-10-04T10:00:00Z");
    assert!(err.contains("nothing recorded"), "{err}");
    let (_, later, err) = audit("2025-10-04T12:00:00Z");
    assert!(err.contains("seen again"), "{err}");

    let (code, listed, _) = common::vigil(&["findings", "list", "--state", st, "--format", "jsonl"], &root);
    assert_eq!(code, 0);
    let rows: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    // One row per identity: every finding of either audit appears exactly once.
    let mut identities = std::collections::BTreeSet::new();
    for line in first.lines().chain(later.lines()) {
        let f: serde_json::Value = serde_json::from_str(line).expect("json");
        identities.insert((f["finding_type"].to_string(), f["site_id"].to_string(), f["guard_id"].to_string(), f["entity_id"].to_string()));
    }
    assert_eq!(rows.len(), identities.len());
    let standing = rows.iter().find(|r| r["occurrences"] == 2).expect("a finding seen at both times");
    assert_eq!(
        (standing["first_seen"].as_str(), standing["last_seen"].as_str()),
        (Some("2025-10-04T11:00:00Z"), Some("2025-10-04T12:00:00Z"))
    );
    assert!(rows
        .iter()
        .all(|r| r["rule_hash"].as_str().is_some_and(|h| h.len() == 16) && r["sql_hash"].as_str().is_some_and(|h| h.len() == 16)));
    let id = standing["id"].to_string();

    // On a virtual clock the operator passes its time: one clock in the store.
    let (code, out, _) = common::vigil(&["findings", "ack", &id, "--by", "alice", "--at", "2025-10-04T12:01:00Z", "--state", st], &root);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("acknowledged by alice at 2025-10-04T12:01:00Z"), "{out}");
    let (code, _, err) = common::vigil(&["findings", "ack", &id, "--by", "alice", "--state", st], &root);
    assert_eq!(code, 2, "acknowledging twice is refused: {err}");
    let (code, _, _) = common::vigil(&["findings", "resolve", &id, "--by", "bob", "--note", "guard replaced", "--state", st], &root);
    assert_eq!(code, 0);
    let (_, shown, _) = common::vigil(&["findings", "show", &id, "--state", st], &root);
    assert!(
        shown.contains("(RESOLVED)") && shown.contains("acknowledged  by alice") && shown.contains("resolved  guard replaced  by bob"),
        "{shown}"
    );
    assert!(shown.contains("provenance   rule "), "{shown}");

    // Resolved: the same condition at a later time is a new finding.
    let key = |v: &serde_json::Value| {
        (v["finding_type"].to_string(), v["site_id"].to_string(), v["guard_id"].to_string(), v["entity_id"].to_string())
    };
    let (_, again, _) = audit("2025-10-04T12:05:00Z");
    assert!(again.lines().any(|l| key(&serde_json::from_str(l).expect("json")) == key(standing)), "the condition still holds at 12:05");
    let (_, open, _) = common::vigil(&["findings", "list", "--state", st, "--status", "new", "--format", "jsonl"], &root);
    let reraised: Vec<serde_json::Value> =
        open.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")).filter(|r| key(r) == key(standing)).collect();
    assert_eq!(reraised.len(), 1);
    assert_ne!(reraised[0]["id"], standing["id"]);
    assert_eq!(reraised[0]["first_seen"], "2025-10-04T12:05:00Z");
    let (_, resolved, _) = common::vigil(&["findings", "list", "--state", st, "--status", "resolved", "--format", "jsonl"], &root);
    assert_eq!(resolved.lines().count(), 1);
}

#[test]
fn test_snapshots_fail_on_a_difference_and_accept_refreshes_them() {
    let root = common::root();
    let case = std::fs::read_to_string(root.join("tests/cases/tour_overdue_snapshot.case")).expect("case");
    let snap = std::fs::read_to_string(root.join("tests/cases/tour_overdue_snapshot.case.snap")).expect("snapshot");
    let dir = common::write_dir("snap", &[("t.case", &case)]);
    let file = dir.join("t.case");
    let f = file.to_str().expect("path");
    let (code, out, _) = common::vigil(&["test", f], &root);
    assert_eq!(code, 1, "no snapshot yet: {out}");
    assert!(out.contains("no snapshot for 2025-10-04T10:15:00Z yet"), "{out}");
    // A stale snapshot (severity edited): the diff shows both sides.
    std::fs::write(dir.join("t.case.snap"), snap.replace("\"CRITICAL\"", "\"HIGH\"")).expect("write");
    let (code, out, _) = common::vigil(&["test", f], &root);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("differ from the snapshot") && out.contains("- {") && out.contains("\"severity\":\"HIGH\"") && out.contains("+ {"),
        "{out}"
    );
    let (code, _, err) = common::vigil(&["test", "--accept", f], &root);
    assert_eq!(code, 0);
    assert!(err.contains("accepted"), "{err}");
    let written = std::fs::read_to_string(dir.join("t.case.snap")).expect("snapshot");
    assert_eq!(
        written.lines().skip(1).collect::<Vec<_>>(),
        snap.lines().skip(1).collect::<Vec<_>>(),
        "same findings as the reviewed snapshot"
    );
    let (code, out, _) = common::vigil(&["test", f], &root);
    assert_eq!(code, 0, "{out}");
}

/// Typos in ids fail loudly (issue 11): they used to pass as "no findings" or "1 passed".
#[test]
fn unknown_rule_ids_and_finding_types_are_errors_with_did_you_mean() {
    // `--rule` with a typo: exit 2, not "no findings".
    let signals = root().join("fixtures/demo");
    let (code, out, err) =
        vigil(&["audit", "--signals", signals.to_str().unwrap(), "--at", AT, "--rule", "CORRELATION_SILENT_STE"], &root());
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--rule: no rule `CORRELATION_SILENT_STE` (did you mean `CORRELATION_SILENT_SITE`?)"), "{err}");

    // A case naming an unknown rule and finding type fails, with the lines.
    let good = std::fs::read_to_string(root().join("tests/cases/silent_site_fires.case")).expect("case");
    let typo = good.replace("rules CORRELATION_SILENT_SITE", "rules CORRELATION_SILENT_STE");
    assert_ne!(typo, good, "the case names its rule on a `rules` line");
    let typo = format!("{typo}\nexpect none CORRELATION_SILENT_SIT\n");
    let dir = write_dir("typo-case", &[("typo.case", &typo)]);
    let (code, out, _) = vigil(&["test", dir.to_str().unwrap()], &root());
    assert_eq!(code, 1, "{out}");
    let rules_line = typo.lines().position(|l| l.starts_with("rules ")).expect("rules line") + 1;
    let none_line = typo.lines().position(|l| l.starts_with("expect none CORRELATION_SILENT_SIT")).expect("expect line") + 1;
    assert!(
        out.contains(&format!(":{rules_line}: no rule `CORRELATION_SILENT_STE` in the rule set (did you mean `CORRELATION_SILENT_SITE`?)")),
        "{out}"
    );
    assert!(out.contains(&format!(":{none_line}: no finding type `CORRELATION_SILENT_SIT` in the rule set")), "{out}");
    assert!(out.trim_end().ends_with("0 passed, 1 failed"), "{out}");

    // A runbook matching a finding type no rule raises is an error at its `matches` line;
    // the rule's missing-runbook warning points at that runbook instead of asking for a new file.
    let lib = common::temp_dir("typo-runbook");
    for sub in ["rules", "runbooks"] {
        std::fs::create_dir_all(lib.join(sub)).expect("dir");
        for entry in std::fs::read_dir(root().join(sub)).expect("read") {
            let p = entry.expect("entry").path();
            let text = std::fs::read_to_string(&p).expect("read file");
            let text = text.replace("matches finding CORRELATION_SILENT_SITE\n", "matches finding CORRELATION_SILENT_STE\n");
            std::fs::write(lib.join(sub).join(p.file_name().expect("name")), text).expect("write");
        }
    }
    let (code, out, _) = vigil(&["check", "--rules", lib.join("rules").to_str().unwrap()], &root());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error[E0203]: runbook `CORRELATION_SILENT_SITE` matches finding `CORRELATION_SILENT_STE`, which no rule raises"),
        "{out}"
    );
    assert!(out.contains("correlation_silent_site.vigil:4:19"), "{out}");
    assert!(out.contains("did you mean `CORRELATION_SILENT_SITE`?"), "{out}");
    assert!(out.contains("does not match it: write `matches finding CORRELATION_SILENT_SITE` there"), "{out}");
}

/// Runaway nesting is a diagnostic, not a stack overflow (issue 11): 20,000 brackets,
/// 20,000 `not`s and 20,000 additions.
#[test]
fn deep_nesting_is_refused_with_a_diagnostic() {
    let head = "rule DEEP {\n  title \"deep\"\n  severity LOW\n  for site\n  when ";
    let cases = [
        (format!("{head}{}true{}\n}}\n", "(".repeat(20_000), ")".repeat(20_000)), "brackets nested more than 64 levels deep"),
        (format!("{head}{}true\n}}\n", "not ".repeat(20_000)), "this expression is more than 256 operators deep"),
        (format!("{head}{} > 0\n}}\n", vec!["1"; 20_000].join(" + ")), "this expression is more than 256 operators deep"),
    ];
    for (text, message) in cases {
        let dir = write_dir("deep", &[("deep.vigil", &text)]);
        let (code, out, err) = vigil(&["check", "--rules", dir.to_str().unwrap(), "--short"], &root());
        assert_eq!(code, 1, "{out}{err}");
        assert!(out.contains("deep.vigil:5:") && out.contains(message), "{out}");
    }
    // Nesting a real rule needs stays fine.
    let ok = format!("{head}{}true{}\n}}\n", "(".repeat(40), ")".repeat(40));
    let dir = write_dir("not-deep", &[("ok.vigil", &ok)]);
    let (_, out, _) = vigil(&["check", "--rules", dir.to_str().unwrap(), "--short"], &root());
    assert!(!out.contains("E0101"), "{out}");
}

/// Case files (issue 11): omitted columns read as null, a bad value is reported at the
/// case file's own line, and `-v` lists passing cases too.
#[test]
fn case_tables_may_omit_columns_and_errors_point_at_the_case_line() {
    let case = "case \"only the columns that matter\"\nrules CORRELATION_SILENT_SITE\ntable sites\ntenant_id,site_id,timezone\nT1,S1,Europe/London\nend\n\
                table phone_events\ntenant_id,site_id,guard_id,ts,kind\n# a comment line\nT1,S1,G1,yesterday,heartbeat\nend\n\
                at 2025-10-04T12:00:00Z\nexpect none CORRELATION_SILENT_SITE\n";
    let dir = write_dir("case-lines", &[("omit.case", case)]);
    let (code, out, _) = vigil(&["test", dir.to_str().unwrap()], &root());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("omit.case:10: table phone_events: column `ts`: `yesterday` is not an ISO-8601 timestamp"), "{out}");
    let fixed = case.replace("yesterday", "2025-10-04T11:30:00Z");
    let dir = write_dir("case-lines-ok", &[("omit.case", &fixed)]);
    let (code, out, _) = vigil(&["test", dir.to_str().unwrap()], &root());
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("ok   "), "{out}");
    let (code, out, _) = vigil(&["test", "-v", dir.to_str().unwrap()], &root());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok   ") && out.contains("omit.case (only the columns that matter)"), "{out}");
}

/// Shared flags go after subcommands too, and `findings list` shows the entity (issue 11).
#[test]
fn rules_flag_after_a_subcommand_and_the_entity_column() {
    let (code, out, err) = vigil(&["runbook", "match", "--type", "CORRELATION_SILENT_SITE", "--rules", "rules"], &root());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("-> CORRELATION_SILENT_SITE"), "{out}");
    let state = common::temp_dir("entity-column").join("state.duckdb");
    let signals = root().join("fixtures/demo");
    let (code, _, err) = vigil(&["audit", "--signals", signals.to_str().unwrap(), "--at", AT, "--state", state.to_str().unwrap()], &root());
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = vigil(&["findings", "list", "--state", state.to_str().unwrap()], &root());
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().expect("header");
    assert!(header.contains(" guard ") && header.contains(" entity "), "{header}");
    // Two SLA breaches of one guard differ by their task, now on screen.
    let breaches: Vec<&str> = out.lines().filter(|l| l.contains("SLA_BREACH")).collect();
    assert!(breaches.len() > 1, "{out}");
    let entities: std::collections::BTreeSet<&str> = breaches.iter().filter_map(|l| l.split_whitespace().nth(7)).collect();
    assert_eq!(entities.len(), breaches.len(), "{out}");
}

/// `explain` shows parameters as a rule writes them, with their overrides, and `--no-sql`
/// leaves the SQL out (issue 11: they printed as `Duration(3600000000)`).
#[test]
fn explain_shows_parameters_with_their_overrides_and_can_leave_out_the_sql() {
    let lib = common::temp_dir("explain-params");
    for sub in ["rules", "runbooks"] {
        std::fs::create_dir_all(lib.join(sub)).expect("dir");
        for entry in std::fs::read_dir(root().join(sub)).expect("read") {
            let p = entry.expect("entry").path();
            std::fs::copy(&p, lib.join(sub).join(p.file_name().expect("name"))).expect("copy");
        }
    }
    std::fs::write(
        lib.join("rules/zz_overrides.vigil"),
        "override tenant \"T000\" {\n  CORRELATION_SILENT_SITE.silence = 20m\n}\n\
         override tenant \"T000\" site \"S00003\" {\n  CORRELATION_SILENT_SITE.silence = 45m\n}\n",
    )
    .expect("write");
    let rules = lib.join("rules");
    let (code, out, err) = vigil(&["explain", "CORRELATION_SILENT_SITE", "--rules", rules.to_str().unwrap(), "--no-sql"], &root());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("  param        silence = 1h\n"), "{out}");
    assert!(out.contains("silence = 45m (override tenant \"T000\" site \"S00003\")\n"), "{out}");
    assert!(out.contains("silence = 20m (override tenant \"T000\")\n"), "{out}");
    assert!(!out.contains("Duration(") && !out.contains("-- SQL"), "{out}");
    let (_, with_sql, _) = vigil(&["explain", "CORRELATION_SILENT_SITE", "--rules", rules.to_str().unwrap()], &root());
    assert!(with_sql.contains("-- SQL as of"), "{with_sql}");
}

/// `explain --signals` says why and why not (issue 11): each `when` conjunct per candidate,
/// values in analyst units. One site where the rule fires, one where it does not.
#[test]
fn explain_says_which_condition_held_for_each_candidate() {
    let signals = root().join("fixtures/demo");
    for (site, label) in [("S00005", "fires"), ("S00000", "does_not_fire")] {
        let args = ["explain", "CORRELATION_SILENT_SITE", "--signals", signals.to_str().unwrap(), "--at", AT, "--no-sql", "--site", site];
        let (code, out, err) = vigil(&args, &root());
        assert_eq!(code, 0, "{err}");
        insta::assert_snapshot!(format!("explain_silent_site_{label}"), out);
    }
}

/// `explain --case FILE` evaluates a case file's rows, at its first `at` line or `--at`.
#[test]
fn explain_reads_a_case_file() {
    let case = root().join("tests/cases/tour_overdue_virtual_clock.case");
    let (code, out, err) = vigil(&["explain", "TOUR_OVERDUE", "--case", case.to_str().unwrap(), "--no-sql"], &root());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("candidates as of 2025-10-04T10:14:00Z"), "{out}");
    assert!(out.contains("entity_id=TR1  overdue_minutes=14  when[1]=false  when[2]=true  fires=false"), "{out}");
    let args = ["explain", "TOUR_OVERDUE", "--case", case.to_str().unwrap(), "--no-sql", "--at", "2025-10-04T11:00:00Z"];
    let (code, out, err) = vigil(&args, &root());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("entity_id=TR1  overdue_minutes=60  when[1]=true  when[2]=true  fires=true"), "{out}");
}

/// Severity steps are shown per candidate too (`severity[N]`), with their legend.
#[test]
fn explain_shows_each_severity_step() {
    let signals = root().join("fixtures/demo");
    let args = ["explain", "CHECKPOINT_COVERAGE_LOW", "--signals", signals.to_str().unwrap(), "--at", AT, "--no-sql", "--site", "S00005"];
    let (code, out, err) = vigil(&args, &root());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("severity steps (the first that holds wins; otherwise MEDIUM)"), "{out}");
    assert!(out.contains("  severity[1]  HIGH when coverage < 0.5"), "{out}");
    assert!(out.contains("scanned=0  coverage=0  when[1]=true  when[2]=true  when[3]=true  fires=true  severity[1]=true"), "{out}");
}

/// A case may take a table's rows from a file beside it (`table NAME from FILE`), CSV or Parquet.
#[test]
fn a_case_reads_tables_from_files_beside_it() {
    let dir = common::temp_dir("case-files");
    let fleet = dir.join("fleet");
    let (code, _, err) = vigil(&["generate", "--sites", "3", "--hours", "2", "--seed", "1", "--out", fleet.to_str().unwrap()], &root());
    assert_eq!(code, 0, "{err}");
    std::fs::copy(fleet.join("sites.parquet"), dir.join("sites.parquet")).expect("copy");
    let (code, _, err) =
        vigil(&["generate", "--sites", "3", "--hours", "2", "--seed", "1", "--format", "csv", "--out", fleet.to_str().unwrap()], &root());
    assert_eq!(code, 0, "{err}");
    std::fs::copy(fleet.join("phone_events.csv"), dir.join("phone_events.csv")).expect("copy");
    let case = "case \"rows from files beside the case\"\nrules CORRELATION_SILENT_SITE\n\
                table sites from sites.parquet\ntable phone_events from phone_events.csv\n\
                at 2025-10-03T14:00:00Z\nexpect none CORRELATION_SILENT_SITE\n";
    std::fs::write(dir.join("files.case"), case).expect("write");
    let (code, out, _) = vigil(&["test", "-v", dir.join("files.case").to_str().unwrap()], &root());
    assert_eq!(code, 0, "{out}");
    // The rows were read: every generated site is a candidate, with its phone events.
    let case_file = dir.join("files.case");
    let args = ["explain", "CORRELATION_SILENT_SITE", "--case", case_file.to_str().unwrap(), "--no-sql"];
    let (code, out, err) = vigil(&args, &root());
    assert_eq!(code, 0, "{err}");
    for site in ["S00000", "S00001", "S00002"] {
        assert!(out.contains(&format!("site_id={site}  guard_id=null  entity_id=null  guards_on_duty=0  recent_activity=24")), "{out}");
    }
    // A missing file is named.
    std::fs::write(dir.join("missing.case"), case.replace("phone_events.csv", "nope.csv")).expect("write");
    let (code, out, _) = vigil(&["test", dir.join("missing.case").to_str().unwrap()], &root());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("table phone_events: cannot read") && out.contains("nope.csv"), "{out}");
}

/// `vigil evaluate-anomalies` replays the anomaly rules over a labelled series and scores
/// them with NAB's scoring (issue 16): a three-hour spike in a flat series, labelled.
#[test]
fn evaluate_anomalies_scores_a_labelled_series() {
    let start = load_time("2025-01-06T00:00:00Z");
    let hour = 3_600_000_000i64;
    let mut series = String::from("timestamp,value\n");
    for i in 0..504i64 {
        let value = if (400..403).contains(&i) { 1000 } else { 100 + i % 7 };
        series.push_str(&format!("{},{value}\n", vigil_engine::exec::iso(start + i * hour)));
    }
    let labels = format!("start,end\n{},{}\n", vigil_engine::exec::iso(start + 395 * hour), vigil_engine::exec::iso(start + 410 * hour));
    let dir = write_dir("evaluate", &[("series.csv", &series), ("labels.csv", &labels)]);
    let (series_file, labels_file) = (dir.join("series.csv"), dir.join("labels.csv"));
    let args = ["evaluate-anomalies", "--series", series_file.to_str().unwrap(), "--labels", labels_file.to_str().unwrap()];
    let (code, out, err) = vigil(&args, &root());
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("504 points, 1 labelled window(s)"), "{out}");
    // The shipped rules confirm over 3 buckets: found at point 402 of the window 395..=410,
    // y = (402 - 410) / 15, sigma(y) = 0.870068, normalized 100 * (0.870068 + 1) / (0.986614 + 1) = 94.1.
    assert!(out.contains("| ANOMALY_METRIC_ABOVE | 1 | 1/1 | 0 | 0.00 | 94.1 |"), "{out}");
    assert!(out.contains("detected at 2025-01-22T18:00:00Z"), "{out}");
}

fn load_time(t: &str) -> i64 {
    vigil_engine::load::parse_timestamp(t).expect("time")
}
