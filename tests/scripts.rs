//! The Rhai escape hatch: hostile scripts are stopped with a clear error for
//! their rule, and every other rule still produces its findings.

mod common;

use vigil_engine::diag::Sources;
use vigil_engine::exec::{self, Filter};
use vigil_engine::{load, ruleset};

const HOSTILE: &str = r#"
rule SCRIPT_LOOPS_FOREVER {
  title "A script that never ends"
  severity LOW
  for site
  when script('loop { }')
}

rule SCRIPT_HUGE_STRING {
  title "A script that builds an enormous string"
  severity LOW
  for site
  when script('let s = "x"; loop { s += s; }')
}

rule SCRIPT_DEEP_RECURSION {
  title "A script that recurses without end"
  severity LOW
  for site
  evidence depth = script('fn down(n) { down(n + 1) } down(0)')
  when true
}
"#;

fn texts(extra: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in ["rules", "runbooks"] {
        for p in ruleset::vigil_files(&common::root().join(dir)).expect("files") {
            out.push((p.display().to_string(), std::fs::read_to_string(&p).expect("read")));
        }
    }
    out.push(("hostile.vigil".into(), extra.to_string()));
    out
}

#[test]
fn hostile_scripts_fail_their_rule_and_the_others_still_report() {
    let rules = ruleset::load_texts(Sources::new(), texts(HOSTILE)).expect("hostile scripts still check");
    let signals = load::load(&common::root().join("fixtures/demo")).expect("load");
    let at = load::parse_timestamp("2025-10-04T12:00:00Z").expect("t");
    let (findings, failures) = exec::evaluate_all(&signals, &rules, at, &Filter::default());

    let mut failed: Vec<(String, String)> = failures.iter().map(|f| (f.rule.clone(), f.message.clone())).collect();
    failed.sort();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert_eq!(failed[0].0, "SCRIPT_DEEP_RECURSION");
    assert!(
        failed[0].1.contains("hostile.vigil:") && (failed[0].1.contains("Stack overflow") || failed[0].1.contains("call")),
        "{}",
        failed[0].1
    );
    assert_eq!(failed[1].0, "SCRIPT_HUGE_STRING");
    assert!(failed[1].1.contains("Length of string"), "{}", failed[1].1);
    assert_eq!(failed[2].0, "SCRIPT_LOOPS_FOREVER");
    assert!(failed[2].1.contains("Too many operations"), "{}", failed[2].1);

    let shipped = exec::evaluate(&signals, &common::shipped_rules(), at, &Filter::default()).expect("shipped rules");
    assert!(!shipped.is_empty());
    assert_eq!(common::jsonl(&findings), common::jsonl(&shipped), "the other rules' findings are unchanged");
}

#[test]
fn the_cli_prints_the_other_findings_and_exits_3() {
    let dir = common::temp_dir("hostile-cli");
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).expect("dir");
    for (name, text) in texts(HOSTILE) {
        if name.contains("/rules/") || name == "hostile.vigil" {
            let file = std::path::Path::new(&name).file_name().expect("name").to_owned();
            std::fs::write(rules_dir.join(file), text).expect("write");
        }
    }
    let signals = common::root().join("fixtures/demo");
    let runbooks = common::root().join("runbooks");
    let (code, out, err) = common::vigil(
        &[
            "audit",
            "--rules",
            rules_dir.to_str().unwrap(),
            "--runbooks",
            runbooks.to_str().unwrap(),
            "--signals",
            signals.to_str().unwrap(),
            "--at",
            "2025-10-04T12:00:00Z",
            "--format",
            "jsonl",
        ],
        &common::root(),
    );
    assert_eq!(code, 3, "{err}");
    assert!(out.lines().count() > 5);
    assert!(err.contains("rule `SCRIPT_LOOPS_FOREVER` failed to evaluate: script at "), "{err}");
    assert!(err.contains("3 rule(s) failed"), "{err}");
}

#[test]
fn the_shipped_script_grades_urgency() {
    let signals = load::load(&common::root().join("fixtures/demo")).expect("load");
    let at = load::parse_timestamp("2025-10-04T12:00:00Z").expect("t");
    let findings = exec::evaluate(&signals, &common::shipped_rules(), at, &Filter::default()).expect("audit");
    let silent: Vec<_> = findings.iter().filter(|f| f.finding_type == "CORRELATION_SILENT_SITE").collect();
    assert!(!silent.is_empty());
    for f in silent {
        let urgency = f.evidence["urgency"].as_str().expect("a string");
        assert!(["dispatch a patrol now", "call every guard on duty", "call the guard"].contains(&urgency), "{urgency}");
    }
}

#[test]
fn a_script_file_beside_the_rule_is_compiled_and_run() {
    let dir = common::temp_dir("script-file");
    std::fs::write(
        dir.join("late_tours.vigil"),
        "rule LATE_TOUR_SCRIPTED {\n  title \"Tour late, graded by a script file\"\n  severity LOW\n  for tour\n  let late_minutes = minutes(now - scheduled_start)\n  when started_at is null\n  when script_file('grade.rhai')\n  evidence grade = script('if late_minutes >= 30 { \"very late\" } else { \"late\" }')\n}\n",
    )
    .expect("rule");
    std::fs::write(dir.join("grade.rhai"), "// fires once the tour is 20 minutes late\nlate_minutes >= 20\n").expect("script");
    let signals = common::write_dir(
        "script-file-signals",
        &[(
            "tours.csv",
            "tenant_id,site_id,tour_id,guard_id,scheduled_start,scheduled_end,started_at,completed_at,checkpoints_expected\n\
             T1,S1,TR1,G1,2025-10-04T11:25:00Z,2025-10-04T13:00:00Z,,,5\n\
             T1,S1,TR2,G1,2025-10-04T11:45:00Z,2025-10-04T13:00:00Z,,,5\n",
        )],
    );
    let rules = ruleset::load_dirs(&dir, &dir.join("no-runbooks")).expect("checks");
    let at = load::parse_timestamp("2025-10-04T12:00:00Z").expect("t");
    let findings = exec::evaluate(&load::load(&signals).expect("load"), &rules, at, &Filter::default()).expect("audit");
    // TR1 is 35 minutes late (fires, "very late"); TR2 is 15 minutes late (the script says no).
    assert_eq!(findings.len(), 1, "{}", common::jsonl(&findings));
    assert_eq!((findings[0].entity_id.as_deref(), findings[0].evidence["grade"].as_str()), (Some("TR1"), Some("very late")));

    std::fs::remove_file(dir.join("grade.rhai")).expect("remove");
    let failure = match ruleset::load_dirs(&dir, &dir.join("no-runbooks")) {
        Ok(_) => panic!("a missing script file must not load"),
        Err(f) => f,
    };
    assert!(failure.sources.render(&failure.diagnostics, false).contains("cannot read script `grade.rhai`"));
}
