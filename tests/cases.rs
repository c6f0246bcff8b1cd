//! Fixture cases: each `tests/cases/*.case` bundles signal rows, one or more
//! evaluation times and hand-checked expectations, and keeps the whole outcome in
//! its `.case.snap` beside it. This runs them through the engine's case runner, the
//! one `vigil test` uses: one runner and one snapshot system for case files.

mod common;

use vigil_engine::case;

#[test]
fn cases() {
    let rules = common::shipped_rules();
    let dir = common::root().join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "case"))
        .collect();
    files.sort();
    assert!(files.len() >= 190, "{} case files", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let outcome = case::run(&rules, path, false);
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("case");
        failures.extend(outcome.problems.iter().map(|p| format!("{name}: {p}")));
        assert!(path.with_extension("case.snap").exists(), "{name} keeps its outcome in a .case.snap");
    }
    assert!(failures.is_empty(), "case failures:\n{}", failures.join("\n"));
}
