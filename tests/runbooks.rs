//! The runbook matching cascade: every (type, category, severity) resolves, the
//! step that matched is the right one, tenant runbooks come first, and the
//! cascade itself is data.

mod common;

use vigil_engine::diag::Sources;
use vigil_engine::ruleset::{self, RuleSet};
use vigil_engine::runbook::{match_runbook, FindingKey};
use vigil_engine::schema::{Category, Severity, Word};

fn resolve(set: &RuleSet, finding_type: &str, category: &str, severity: &str, tenant: &str) -> (String, String) {
    let category = Category::parse(category).expect("a category");
    let severity = Severity::parse(severity).expect("a severity");
    let key = FindingKey { finding_type, category, severity, tenant };
    let (book, step, _) = match_runbook(&set.runbooks, &set.cascade, &key);
    (book.map(|b| b.id.clone()).unwrap_or_else(|| "<none>".into()), step.name().to_string())
}

#[test]
fn every_type_category_and_severity_resolves_at_the_expected_step() {
    let set = common::shipped_rules();
    let mut types: Vec<String> = set.patterns().map(|r| r.header.finding_type.clone()).collect();
    types.extend(["ANOMALY_PHONE_EVENTS_BELOW", "ANOMALY_METRIC_ABOVE", "SOMETHING_NEW"].map(String::from));
    let mut checked = 0;
    for t in &types {
        for c in Category::ALL.iter().map(|c| c.name()) {
            for s in Severity::ALL.iter().map(|s| s.name()) {
                let (book, step) = resolve(&set, t, c, s, "T1");
                let expected = if t != "SOMETHING_NEW" {
                    (t.clone(), "finding_type")
                } else if c == "SAFETY" && s == "CRITICAL" {
                    ("SAFETY_CRITICAL".to_string(), "category+severity")
                } else {
                    (format!("CATEGORY_{c}"), "category")
                };
                assert_eq!((book.as_str(), step.as_str()), (expected.0.as_str(), expected.1), "{t} {c} {s}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, types.len() * 20);
}

fn set_with(extra: &str) -> RuleSet {
    let mut texts = Vec::new();
    for dir in ["rules", "runbooks"] {
        for p in ruleset::vigil_files(&common::root().join(dir)).expect("files") {
            texts.push((p.display().to_string(), std::fs::read_to_string(&p).expect("read")));
        }
    }
    texts.retain(|(name, _)| !(extra.contains("cascade {") && name.ends_with("cascade.vigil")));
    texts.push(("extra.vigil".into(), extra.to_string()));
    ruleset::load_texts(Sources::new(), texts).expect("checks")
}

#[test]
fn a_tenant_runbook_is_preferred_over_the_global_one_at_the_same_step() {
    let set = set_with(
        "runbook T1_SILENT_SITE {\n  title \"T1's own silent-site procedure\"\n  tenant \"T1\"\n  matches finding CORRELATION_SILENT_SITE\n  escalate_after 5m\n  step \"Call the T1 control room\"\n}\n",
    );
    assert_eq!(resolve(&set, "CORRELATION_SILENT_SITE", "OPERATIONAL", "CRITICAL", "T1"), ("T1_SILENT_SITE".into(), "finding_type".into()));
    assert_eq!(
        resolve(&set, "CORRELATION_SILENT_SITE", "OPERATIONAL", "CRITICAL", "T2"),
        ("CORRELATION_SILENT_SITE".into(), "finding_type".into())
    );
}

#[test]
fn with_only_a_generic_runbook_everything_falls_back_to_it() {
    let generic = std::fs::read_to_string(common::root().join("runbooks/generic.vigil")).expect("generic");
    let set = ruleset::load_texts(Sources::new(), vec![("generic.vigil".into(), generic)]).expect("checks");
    assert_eq!(resolve(&set, "TOUR_OVERDUE", "SECURITY", "HIGH", "T1"), ("GENERIC".into(), "otherwise".into()));
}

#[test]
fn the_cascade_is_data_reordering_it_changes_the_match() {
    let set = set_with("cascade {\n  step category\n  step finding\n  otherwise GENERIC\n}\n");
    assert_eq!(resolve(&set, "TOUR_OVERDUE", "SECURITY", "HIGH", "T1"), ("CATEGORY_SECURITY".into(), "category".into()));
}

#[test]
fn findings_carry_the_runbook_and_the_step() {
    let set = common::shipped_rules();
    let signals = vigil_engine::load::load(&common::root().join("fixtures/demo")).expect("load");
    let at = vigil_engine::load::parse_timestamp("2025-10-04T12:00:00Z").expect("t");
    let findings = vigil_engine::exec::evaluate(&signals, &set, at, &Default::default()).expect("audit");
    assert!(!findings.is_empty());
    for f in findings {
        assert_eq!((f.runbook.as_str(), f.runbook_match.name()), (f.finding_type.as_str(), "finding_type"));
    }
}
