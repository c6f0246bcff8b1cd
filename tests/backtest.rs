//! `vigil backtest`: a rule change's impact over history, checked by hand on a
//! small site, against independent per-tick audits on the demo fleet, and with a
//! baseline taken from a git revision.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use vigil_engine::exec::{self, Filter};
use vigil_engine::{backtest, load, ruleset};

/// One London site; guard G1 on duty 10:00-14:00 (checked in at 10:00); the last
/// sign of life is a phone event at 11:00.
fn quiet_site() -> PathBuf {
    common::write_dir(
        "backtest-quiet",
        &[
            ("sites.csv", "tenant_id,site_id,name,timezone,lat,lon,geofence_m,active\nT1,S1,Depot,Europe/London,51.5,-0.1,200,true\n"),
            (
                "shifts.csv",
                "tenant_id,site_id,shift_id,guard_id,starts_at,ends_at,checked_in_at,checked_out_at\n\
                 T1,S1,SH1,G1,2025-10-04T10:00:00Z,2025-10-04T14:00:00Z,2025-10-04T10:00:00Z,\n",
            ),
            ("phone_events.csv", "tenant_id,site_id,guard_id,device_id,ts,kind\nT1,S1,G1,D1,2025-10-04T11:00:00Z,app\n"),
        ],
    )
}

/// A copy of the shipped rules and runbooks, with `from` replaced by `to` in one rule file.
fn edited_rules(label: &str, file: &str, from: &str, to: &str) -> PathBuf {
    let dir = common::temp_dir(label);
    for sub in ["rules", "runbooks"] {
        std::fs::create_dir_all(dir.join(sub)).expect("dir");
        for f in ruleset::vigil_files(&common::root().join(sub)).expect("files") {
            let name = f.file_name().expect("name");
            let mut text = std::fs::read_to_string(&f).expect("read");
            if sub == "rules" && name == file {
                assert!(text.contains(from), "{file} contains `{from}`");
                text = text.replace(from, to);
            }
            std::fs::write(dir.join(sub).join(name), text).expect("write");
        }
    }
    dir
}

fn load_set(dir: &Path) -> vigil_engine::RuleSet {
    ruleset::load_dirs(&dir.join("rules"), &dir.join("runbooks")).unwrap_or_else(|f| panic!("{f:?}"))
}

fn t(s: &str) -> i64 {
    load::parse_timestamp(s).expect("time")
}

const FIVE_MINUTES: i64 = 5 * 60 * 1_000_000;

/// Silence 60m -> 45m: the silent site fires from T >= 11:45 instead of T >= 12:00
/// (no activity in (T - silence, T] after the 11:00 event). Over 11:00..12:30 every
/// 5 minutes that adds one finding, differing at 11:45, 11:50 and 11:55 (3 ticks),
/// and removes none; every other rule has the same plan and is not evaluated twice.
#[test]
fn a_shorter_silence_adds_exactly_the_ticks_between_45_and_60_minutes() {
    let current = load_set(&edited_rules("backtest-45", "correlation_silent_site.vigil", "param silence = 60m", "param silence = 45m"));
    let baseline = common::shipped_rules();
    let signals = load::load(&quiet_site()).expect("load");
    let ticks = exec::tick_series(t("2025-10-04T11:00:00Z"), t("2025-10-04T12:30:00Z"), FIVE_MINUTES);
    let (impact, failures) = backtest::backtest(&signals, &current, &baseline, &ticks, 3);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(impact.ticks, 19);
    let changed: Vec<_> = impact.rules.iter().filter(|r| r.differs()).collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    let silent = changed[0];
    assert_eq!((silent.rule.as_str(), silent.status), ("CORRELATION_SILENT_SITE", "changed"));
    assert_eq!((silent.added, silent.removed, silent.severity_changed), (1, 0, 0));
    assert_eq!(silent.first_difference.as_deref(), Some("2025-10-04T11:45:00Z"));
    let example = &silent.added_examples[0];
    assert_eq!((example.finding.site_id.as_str(), example.first_tick.as_str(), example.ticks), ("S1", "2025-10-04T11:45:00Z", 3));
    assert_eq!(example.finding.severity, "CRITICAL");
    for r in impact.rules.iter().filter(|r| r.rule != "CORRELATION_SILENT_SITE") {
        assert_eq!(r.status, "same_plan", "{}", r.rule);
    }

    // And the other way round: the baseline as current removes what it added.
    let (back, _) = backtest::backtest(&signals, &baseline, &current, &ticks, 3);
    let silent = back.rules.iter().find(|r| r.rule == "CORRELATION_SILENT_SITE").expect("rule");
    assert_eq!((silent.added, silent.removed), (0, 1));
    assert_eq!(silent.removed_examples[0].ticks, 3);
}

/// On the demo fleet, a changed window (checkpoint coverage looks at tours completed
/// in the last 30 minutes instead of 60) against per-tick audits of both sets,
/// diffed here independently: the backtest names exactly the findings that differ,
/// and the first tick.
#[test]
fn backtest_matches_independent_per_tick_audits_on_the_demo_fleet() {
    let current = load_set(&edited_rules("backtest-coverage", "checkpoint_coverage_low.vigil", "param window = 60m", "param window = 30m"));
    let baseline = common::shipped_rules();
    let signals = load::load(&common::root().join("fixtures/demo")).expect("load");
    let ticks = exec::tick_series(t("2025-10-04T08:00:00Z"), t("2025-10-04T12:00:00Z"), 15 * 60 * 1_000_000);
    let (impact, failures) = backtest::backtest(&signals, &current, &baseline, &ticks, 100);
    assert!(failures.is_empty(), "{failures:?}");

    let only = Filter { rules: ["CHECKPOINT_COVERAGE_LOW".to_string()].into_iter().collect(), ..Filter::default() };
    let at_ticks = |set: &vigil_engine::RuleSet| -> HashMap<i64, HashSet<exec::Identity>> {
        ticks
            .iter()
            .map(|tick| (*tick, exec::evaluate(&signals, set, *tick, &only).expect("audit").iter().map(|f| f.identity()).collect()))
            .collect()
    };
    let (now, base) = (at_ticks(&current), at_ticks(&baseline));
    let mut added: HashSet<exec::Identity> = HashSet::new();
    let mut removed: HashSet<exec::Identity> = HashSet::new();
    let mut first: Option<i64> = None;
    for tick in &ticks {
        for id in now[tick].difference(&base[tick]) {
            added.insert(id.clone());
            first = Some(first.map_or(*tick, |f: i64| f.min(*tick)));
        }
        for id in base[tick].difference(&now[tick]) {
            removed.insert(id.clone());
            first = Some(first.map_or(*tick, |f: i64| f.min(*tick)));
        }
    }
    assert!(!removed.is_empty(), "a shorter window drops coverage findings on the demo fleet");
    let coverage = impact.rules.iter().find(|r| r.rule == "CHECKPOINT_COVERAGE_LOW").expect("rule");
    assert_eq!((coverage.added, coverage.removed), (added.len(), removed.len()));
    let shown: HashSet<exec::Identity> = coverage.added_examples.iter().map(|e| e.finding.identity()).collect();
    assert_eq!(shown, added);
    let shown: HashSet<exec::Identity> = coverage.removed_examples.iter().map(|e| e.finding.identity()).collect();
    assert_eq!(shown, removed);
    assert_eq!(coverage.first_difference, first.map(exec::iso));
    assert_eq!(impact.rules.iter().filter(|r| r.differs()).count(), 1);
}

/// `--baseline-rev HEAD` in a git checkout: the committed rules are the baseline,
/// the working tree's edit is the change; `--fail-on-change` exits 1; JSON for CI.
#[test]
fn baseline_from_a_git_revision() {
    let repo = edited_rules("backtest-git", "correlation_silent_site.vigil", "", "");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=Vigil Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(&repo)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "rules", "runbooks"]);
    git(&["commit", "-q", "-m", "shipped rules"]);
    let file = repo.join("rules/correlation_silent_site.vigil");
    let text = std::fs::read_to_string(&file).expect("read").replace("param silence = 60m", "param silence = 45m");
    std::fs::write(&file, text).expect("write");

    let signals = quiet_site();
    let s = signals.to_str().expect("utf-8 path");
    let span = ["--from", "2025-10-04T11:00:00Z", "--to", "2025-10-04T12:30:00Z", "--every", "5m"];
    let mut args = vec!["backtest", "--rules", "rules", "--signals", s, "--baseline-rev", "HEAD"];
    args.extend(span);
    let (code, out, err) = common::vigil(&args, &repo);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("CORRELATION_SILENT_SITE: +1 added, -0 removed, 0 severity changed; first difference at 2025-10-04T11:45:00Z"),
        "{out}"
    );
    assert!(
        out.contains("+ CORRELATION_SILENT_SITE tenant=T1 site=S1 guard=- entity=- severity=CRITICAL from 2025-10-04T11:45:00Z (3 ticks)"),
        "{out}"
    );

    args.extend(["--format", "json", "--fail-on-change"]);
    let (code, out, _) = common::vigil(&args, &repo);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    let silent = json["rules"].as_array().expect("rules").iter().find(|r| r["rule"] == "CORRELATION_SILENT_SITE").expect("rule").clone();
    assert_eq!(silent["added"], 1);
    assert_eq!(silent["added_examples"][0]["ticks"], 3);

    // The same revision on both sides: nothing differs, --fail-on-change passes.
    let mut same = vec!["backtest", "--rules", "rules", "--signals", s, "--baseline-rules", "rules", "--fail-on-change"];
    same.extend(span);
    let (code, out, err) = common::vigil(&same, &repo);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no finding changes"), "{out}");

    let mut bad = vec!["backtest", "--rules", "rules", "--signals", s, "--baseline-rev", "no-such-revision"];
    bad.extend(span);
    let (code, _, err) = common::vigil(&bad, &repo);
    assert_eq!(code, 2);
    assert!(err.contains("--baseline-rev no-such-revision"), "{err}");
}
