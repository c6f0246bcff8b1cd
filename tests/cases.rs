//! Fixture cases: each `tests/cases/*.case` bundles signal rows, an evaluation
//! time and hand-checked expectations. The test checks the expectations and
//! snapshots the full findings for review.

mod common;

use std::collections::HashSet;

use vigil_engine::{case, exec, load};

#[test]
fn cases() {
    let rules = common::shipped_rules();
    let mut failures = Vec::new();
    insta::glob!("cases/*.case", |path| {
        let text = std::fs::read_to_string(path).expect("read case");
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("case").to_string();
        let c = match case::parse_case(&text) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                return;
            }
        };
        let dir = common::temp_dir(&name);
        case::write_tables(&c, &dir).expect("write tables");
        let signals = match load::load(&dir) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                return;
            }
        };
        let filter = exec::Filter { rules: c.rules.iter().cloned().collect::<HashSet<_>>(), ..Default::default() };
        let mut outcome = String::new();
        let stored = std::fs::read_to_string(case::snapshot_path(path)).ok().map(|t| case::parse_snapshot(&t));
        for check in &c.checks {
            let findings = exec::evaluate(&signals, &rules, check.at, &filter).expect("evaluate");
            for problem in case::compare(&c, check, &findings) {
                failures.push(format!("{name}: {problem}"));
            }
            if check.snapshot {
                for problem in case::compare_snapshot(stored.as_ref(), check.at, &case::snapshot_lines(&findings)) {
                    failures.push(format!("{name}: {problem}"));
                }
            }
            outcome.push_str(&common::jsonl(&findings));
        }
        insta::assert_snapshot!(outcome);
    });
    assert!(failures.is_empty(), "case failures:\n{}", failures.join("\n"));
}
