//! Bounded resources (issue 15): a memory limit that spills instead of failing, a
//! per-rule time budget that stops one rule while the others still report, and the
//! flags' own errors.

mod common;

use common::{library, temp_dir, vigil};

/// A 100-site, 12-hour fleet and the arguments of a 5-minute replay over it.
fn fleet(label: &str) -> (std::path::PathBuf, Vec<String>) {
    let dir = temp_dir(label);
    let (code, _, err) = vigil(&["generate", "--sites", "100", "--hours", "12", "--out", "fleet"], &dir);
    assert_eq!(code, 0, "{err}");
    let args = ["replay", "--rules", "rules", "--signals", "fleet", "--from", "2025-10-03T12:00:00Z", "--to", "2025-10-04T00:00:00Z"];
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend(["--every", "5m", "--format", "jsonl"].map(String::from));
    (dir, args)
}

#[test]
fn a_memory_limit_spills_to_the_temp_dir_and_changes_no_finding() {
    let (dir, args) = fleet("spill");
    copy_shipped_rules(&dir);
    let run = |extra: &[&str]| {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        vigil(&all, &dir)
    };
    let (code, unbounded, err) = run(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(unbounded.lines().count() > 100, "the replay finds something to compare");
    let spill = dir.join("spill");
    // A small limit is too little for the replay's largest statements without spilling
    // (64 MiB: at 128 MiB whether two statements overlap decides it, and on a busy
    // machine they did not, so the run passed) ...
    let (code, _, err) = run(&["--memory-limit", "64MB", "--temp-dir", "none"]);
    assert_eq!(code, 3, "without a spill directory a rule runs out of memory: {err}");
    assert!(err.contains("Out of Memory"), "{err}");
    // ... and enough with it: every rule evaluates and the findings are the same bytes.
    let (code, bounded, err) = run(&["--memory-limit", "128MB", "--temp-dir", spill.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(bounded, unbounded);
    // Each database's spill directory is removed when the database closes.
    let left: Vec<_> = std::fs::read_dir(&spill).expect("spill dir").collect();
    assert!(left.is_empty(), "spill directories left behind: {left:?}");
}

#[test]
fn spill_directories_of_dead_processes_are_swept_at_start() {
    let dir = temp_dir("sweep");
    let spill = dir.join("spill");
    // pid 0 is never a process of ours; a live pid (this test's) is kept.
    let dead = spill.join("vigil-spill-4294967294-0");
    let live = spill.join(format!("vigil-spill-{}-0", std::process::id()));
    std::fs::create_dir_all(&dead).expect("mkdir");
    std::fs::create_dir_all(&live).expect("mkdir");
    std::fs::write(dead.join("duckdb_temp_storage-0.tmp"), b"x").expect("write");
    let (code, _, err) = vigil(&["check", "--rules", "rules", "--temp-dir", spill.to_str().expect("utf-8")], &common::root());
    assert_eq!(code, 0, "{err}");
    assert!(!dead.exists(), "the dead process's directory is gone");
    assert!(live.exists(), "a running process's directory is kept");
}

/// A rule whose cost grows with the square of a tenant's rows.
const QUADRATIC_RULE: &str = r#"# Every location update of a tenant against every other.
rule TENANT_WIDE_JUMPS {
  title "Every fix of the tenant against every other"
  severity LOW
  for guard in location_updates
  let near = count(location_updates as other match tenant where count(location_updates as b match tenant where b.ts < other.ts) > 0)
  when near > 0
}
"#;

#[test]
fn a_rule_over_its_time_budget_is_stopped_and_the_others_still_report() {
    let dir = temp_dir("budget");
    let (code, _, err) = vigil(&["generate", "--sites", "300", "--hours", "24", "--out", "fleet"], &dir);
    assert_eq!(code, 0, "{err}");
    copy_shipped_rules(&dir);
    let audit = ["audit", "--rules", "rules", "--signals", "fleet", "--at", "2025-10-04T11:00:00Z", "--format", "jsonl"];
    let (code, expected, err) = vigil(&audit, &dir);
    assert_eq!(code, 0, "{err}");
    assert!(expected.lines().count() > 20, "the other rules find something");
    // `check` warns before anything runs ...
    std::fs::write(dir.join("rules/slow.vigil"), QUADRATIC_RULE).expect("write");
    let (code, out, err) = vigil(&["check", "--rules", "rules"], &dir);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("warning[W0110]") && out.contains("rules/slow.vigil:6:65"), "{out}");
    // ... and at run time the budget stops it.
    let mut args = audit.to_vec();
    args.extend(["--rule-budget", "2s"]);
    let (code, found, err) = vigil(&args, &dir);
    assert_eq!(code, 3, "a failed rule is exit code 3: {err}");
    assert!(err.contains("rule `TENANT_WIDE_JUMPS` failed to evaluate: stopped at its time budget of 2s (1 tick"), "{err}");
    assert_eq!(err.matches("failed to evaluate").count(), 1, "only the slow rule failed: {err}");
    assert_eq!(found, expected, "the other rules' findings are all there");
}

#[test]
fn resource_flags_name_themselves_in_their_errors() {
    let root = common::root();
    let (code, _, err) = vigil(&["check", "--memory-limit", "lots"], &root);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--memory-limit: `lots` is not a memory size"), "{err}");
    let (code, _, err) = vigil(&["check", "--memory-limit", "1MB"], &root);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("below 16MB"), "{err}");
    let (code, _, err) = vigil(&["check", "--rule-budget", "soon"], &root);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--rule-budget: `soon` is not a duration"), "{err}");
    let (code, _, err) = vigil(&["check", "--temp-dir", "/proc/no-such/spill"], &root);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--temp-dir: cannot create the spill directory /proc/no-such/spill"), "{err}");
}

/// Copies the shipped rules and runbooks into `dir`.
fn copy_shipped_rules(dir: &std::path::Path) {
    let lib = library("limits-rules");
    for sub in ["rules", "runbooks"] {
        std::fs::rename(lib.join(sub), dir.join(sub)).expect("move");
    }
}
