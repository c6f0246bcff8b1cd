//! Fixture cases: each `tests/cases/*.case` bundles signal rows, one or more
//! evaluation times and hand-checked expectations. The engine's case runner (the
//! one `vigil test` uses) checks the expectations and the `.case.snap` snapshots;
//! the full findings are snapshotted here too, for review.

mod common;

use vigil_engine::case;

#[test]
fn cases() {
    let rules = common::shipped_rules();
    let mut failures = Vec::new();
    insta::glob!("cases/*.case", |path| {
        let outcome = case::run(&rules, path, false);
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("case");
        failures.extend(outcome.problems.iter().map(|p| format!("{name}: {p}")));
        let text: String = outcome.findings.iter().map(|(_, findings)| common::jsonl(findings)).collect();
        insta::assert_snapshot!(text);
    });
    assert!(failures.is_empty(), "case failures:\n{}", failures.join("\n"));
}
